/**
 * Appends records to streams the function declared, e.g.
 * `bindings = { out = { stream = "telemetry" } }`.
 *
 * ```ts
 * import { stream } from "@gust/sdk";
 * const { partition, offset } = stream.append("out", deviceId, reading);
 * ```
 * @module
 */
import { append as hostAppend } from "gust:function/stream@0.1.0";
import { type Body, encode, host } from "./internal";

/** Where a record was stored. */
export interface Position {
  /** The partition (a stable hash of the key). */
  partition: number;
  /** The record's offset within its partition. */
  offset: number;
}

/** Options of {@link append}. */
export interface AppendOptions {
  /** The media type; by default implied by the data (text, bytes or JSON). */
  contentType?: string;
}

/**
 * Appends `data` under `key` to the stream bound as `binding` (records with
 * one key keep their order); durable on return.
 */
export function append(
  binding: string,
  key: string,
  data: Body,
  options: AppendOptions = {},
): Position {
  const { bytes, contentType } = encode(data);
  const at = host(() => hostAppend(binding, key, bytes, options.contentType ?? contentType));
  return { partition: at.partition, offset: Number(at.offset) };
}
