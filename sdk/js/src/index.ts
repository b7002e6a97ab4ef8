/**
 * # @gust/sdk — write Gust functions in JavaScript or TypeScript
 *
 * An HTTP function exports a Fetch API handler; an event function exports
 * `handle(event)`. Bindings declared in gust.toml are reached through the
 * modules below. See README.md.
 * @module
 */
export * as kv from "./kv";
export * as sql from "./sql";
export * as blob from "./blob";
export * as table from "./table";
export * as queue from "./queue";
export * as topic from "./topic";
export * as stream from "./stream";
export * as variables from "./variables";
export * as log from "./log";
export { GustEvent, type RawEvent } from "./event";
export { GustError, RetryableError, PermanentError } from "./errors";
export { params, route, functionName } from "./http";
export type { Body } from "./bytes";
export type { SqlValue, Row } from "./sql";
