// Glue between a function module and the component exports; `gust build`
// generates an entry module that calls these (not part of the SDK's API).
import { GustEvent, type RawEvent } from "./event";

type Handler = (...args: unknown[]) => unknown;

/** `module.default.<name>` or `module.<name>`, bound to its object. */
function pick(module: Record<string, unknown>, name: string): Handler | undefined {
  const def = module.default as Record<string, unknown> | undefined;
  if (def && typeof def === "object" && typeof def[name] === "function") {
    return (def[name] as Handler).bind(def);
  }
  if (typeof module[name] === "function") return module[name] as Handler;
  return undefined;
}

function message(e: unknown): string {
  if (e instanceof Error) return e.stack ? `${e.message}\n${e.stack}` : e.message;
  return String(e);
}

declare function addEventListener(
  type: "fetch",
  listener: (event: { request: Request; respondWith(r: Response | Promise<Response>): void }) => void,
): void;

/** Serves HTTP requests with the module's `fetch` handler, if it has one. */
export function serveFetch(module: Record<string, unknown>): void {
  const handler = pick(module, "fetch");
  addEventListener("fetch", (event) => {
    if (!handler) {
      event.respondWith(
        new Response("this function exports no `fetch` handler\n", { status: 500 }),
      );
      return;
    }
    event.respondWith(
      (async () => {
        try {
          const response = await handler(event.request);
          if (!(response instanceof Response)) {
            throw new TypeError("the `fetch` handler must return a Response");
          }
          return response;
        } catch (e) {
          console.error(`fetch handler failed: ${message(e)}`);
          return new Response("internal error\n", { status: 500 });
        }
      })(),
    );
  });
}

/** The `gust:function/event-handler` export for the module's `handle`. */
export function eventHandler(module: Record<string, unknown>) {
  const handler = pick(module, "handle");
  return {
    // componentize-js awaits a promise an export returns, running the event
    // loop (fetch, timers) until it settles, so `handle` may be `async`.
    handle(raw: RawEvent): void | Promise<void> {
      if (!handler) {
        throw { message: "this function exports no `handle(event)`", retryable: false };
      }
      let outcome: unknown;
      try {
        outcome = handler(new GustEvent(raw));
      } catch (e) {
        throw failure(e);
      }
      if (isThenable(outcome)) {
        return Promise.resolve(outcome).then(
          () => undefined,
          (e: unknown) => {
            throw failure(e);
          },
        );
      }
    },
  };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

/** The `gust:function/types.error` for an exception. */
function failure(e: unknown): { message: string; retryable: boolean } {
  const retryable = !(e instanceof Error && (e as { retryable?: boolean }).retryable === false);
  const text = e instanceof Error ? e.message : String(e);
  if (retryable && !(e instanceof Error && e.name === "RetryableError")) {
    console.error(`handle failed: ${message(e)}`);
  }
  return { message: text, retryable };
}
