/**
 * Sends messages to queues the function declared, e.g.
 * `bindings = { jobs = { queue = "jobs" } }`.
 *
 * ```ts
 * import { queue } from "@gust/sdk";
 * const id = queue.send("jobs", { order: 42 });
 * ```
 * @module
 */
import { send as hostSend } from "gust:function/queue@0.1.0";
import { type Body, encode, host } from "./internal";

/** Options of {@link send}. */
export interface SendOptions {
  /** The media type; by default implied by the body (text, bytes or JSON). */
  contentType?: string;
}

/**
 * Appends `body` to the queue bound as `binding` (durable on return) and
 * returns the message id. Text is sent as UTF-8, bytes as they are, anything
 * else as JSON.
 */
export function send(binding: string, body: Body, options: SendOptions = {}): string {
  const { bytes, contentType } = encode(body);
  return host(() => hostSend(binding, bytes, options.contentType ?? contentType));
}
