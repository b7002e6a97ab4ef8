/**
 * Writes to the host's function log (`gust logs`, `.gust/logs/functions.log`).
 * `console.log` and `console.error` lines are captured too.
 *
 * ```ts
 * import { log } from "@gust/sdk";
 * log.info(`imported ${n} rows`);
 * ```
 * @module
 */
import { log as write, type Level } from "wasi:logging/logging@0.1.0-draft";

function at(level: Level) {
  return (message: string, context = ""): void => write(level, context, message);
}

/** Logs at level `trace`. */
export const trace = at("trace");
/** Logs at level `debug`. */
export const debug = at("debug");
/** Logs at level `info`. */
export const info = at("info");
/** Logs at level `warn`. */
export const warn = at("warn");
/** Logs at level `error`. */
export const error = at("error");
