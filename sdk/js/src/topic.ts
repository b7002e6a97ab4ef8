/**
 * Publishes CloudEvents to topics the function declared, e.g.
 * `bindings = { events = { topic = "orders" } }`.
 *
 * ```ts
 * import { topic } from "@gust/sdk";
 * topic.publish("events", "order.created", { id: 42 }, { subject: "orders/42" });
 * ```
 * @module
 */
import { publish as hostPublish } from "gust:function/topic@0.1.0";
import { type Body, encode, host } from "./internal";

/** Options of {@link publish}. */
export interface PublishOptions {
  /** The event's subject. */
  subject?: string;
  /** The media type; by default implied by the data (text, bytes or JSON). */
  contentType?: string;
}

/**
 * Publishes an event of type `eventType` with `data` to the topic bound as
 * `binding`; returns its id once every subscription stored it.
 */
export function publish(
  binding: string,
  eventType: string,
  data: Body,
  options: PublishOptions = {},
): string {
  const { bytes, contentType } = encode(data);
  return host(() =>
    hostPublish(binding, eventType, options.subject, bytes, options.contentType ?? contentType),
  );
}
