/**
 * HTTP functions use the standard Fetch API: export a `fetch` handler taking
 * a `Request` and returning a `Response` (or a promise of one).
 *
 * ```ts
 * import { params } from "@gust/sdk";
 *
 * export default {
 *   async fetch(request: Request): Promise<Response> {
 *     const { id } = params(request); // route "/api/items/{id}"
 *     return Response.json({ id });
 *   },
 * };
 * ```
 *
 * Outbound calls use the global `fetch`, to the destinations the function's
 * `outbound_http` rules allow.
 * @module
 */

/** The route parameters Gust matched (from the `x-gust-params` header). */
export function params(request: Request): Record<string, string> {
  const raw = request.headers.get("x-gust-params") ?? "";
  return Object.fromEntries(new URLSearchParams(raw));
}

/** The route template that matched, e.g. `/api/items/{id}`. */
export function route(request: Request): string | undefined {
  return request.headers.get("x-gust-route") ?? undefined;
}

/** The name of the function (in gust.toml) serving the request. */
export function functionName(request: Request): string | undefined {
  return request.headers.get("x-gust-function") ?? undefined;
}
