/**
 * Event functions: every non-HTTP trigger (timer, queue, topic, blob, change
 * feed, stream, MQTT) delivers a CloudEvents 1.0 event.
 *
 * ```ts
 * import { type GustEvent, PermanentError } from "@gust/sdk";
 *
 * export function handle(event: GustEvent): void {
 *   const job = event.json<{ id: number }>();
 *   if (!job.id) throw new PermanentError("a job needs an id");
 * }
 * ```
 *
 * Returning settles (acknowledges) the event. Throwing {@link PermanentError}
 * sends it straight to the dead-letter destination; any other exception
 * (including {@link RetryableError}) asks for another delivery under the
 * function's retry policy.
 * @module
 */
import { text } from "./internal";

/** The event as the host hands it over (`gust:function/types.event`). */
export interface RawEvent {
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype?: string;
  data: Uint8Array;
  extensions: [string, string][];
  attempt: number;
}

/** A CloudEvents 1.0 event delivered to a function. */
export class GustEvent {
  /** Unique per `source`. */
  readonly id: string;
  /** Where it comes from, e.g. `/gust/queue/orders`. */
  readonly source: string;
  /** What happened, e.g. `gust.queue.message`. */
  readonly type: string;
  /** What it is about, e.g. a blob path. */
  readonly subject?: string;
  /** RFC 3339 time of the occurrence. */
  readonly time?: string;
  /** Media type of {@link data}. */
  readonly dataContentType?: string;
  /** The payload. */
  readonly data: Uint8Array;
  /** CloudEvents extension attributes (includes `traceparent`, trigger attributes such as `name`). */
  readonly extensions: Record<string, string>;
  /** 1 for the first delivery, 2 for the first retry, ... */
  readonly attempt: number;

  constructor(raw: RawEvent) {
    this.id = raw.id;
    this.source = raw.source;
    this.type = raw.type;
    this.subject = raw.subject;
    this.time = raw.time;
    this.dataContentType = raw.datacontenttype;
    this.data = raw.data;
    this.extensions = Object.fromEntries(raw.extensions);
    this.attempt = raw.attempt;
  }

  /** The payload as UTF-8 text. */
  text(): string {
    return text(this.data);
  }

  /** The payload parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }

  /** One extension attribute. */
  extension(name: string): string | undefined {
    return this.extensions[name];
  }
}
