// The guest contract (wit/gust.wit and the WASI interfaces it uses) as seen
// from JavaScript once componentize-js binds it: results become return values
// (an `err` is thrown), `option` is `undefined`, `list<u8>` a `Uint8Array`,
// `u64`/`s64` a `bigint`.

declare module "wasi:keyvalue/store@0.2.0-draft" {
  export interface Bucket {
    get(key: string): Uint8Array | undefined;
    set(key: string, value: Uint8Array): void;
    delete(key: string): void;
    exists(key: string): boolean;
    listKeys(cursor: bigint | undefined): { keys: string[]; cursor?: bigint };
  }
  export function open(identifier: string): Bucket;
}

declare module "wasi:keyvalue/atomics@0.2.0-draft" {
  import type { Bucket } from "wasi:keyvalue/store@0.2.0-draft";
  export function increment(bucket: Bucket, key: string, delta: bigint): bigint;
}

declare module "wasi:config/store@0.2.0-rc.1" {
  export function get(key: string): string | undefined;
  export function getAll(): [string, string][];
}

declare module "wasi:logging/logging@0.1.0-draft" {
  export type Level = "trace" | "debug" | "info" | "warn" | "error" | "critical";
  export function log(level: Level, context: string, message: string): void;
}

declare module "gust:function/queue@0.1.0" {
  export function send(binding: string, body: Uint8Array, contentType: string | undefined): string;
}

declare module "gust:function/topic@0.1.0" {
  export function publish(
    binding: string,
    eventType: string,
    subject: string | undefined,
    data: Uint8Array,
    contentType: string | undefined,
  ): string;
}

declare module "gust:function/stream@0.1.0" {
  export function append(
    binding: string,
    key: string,
    data: Uint8Array,
    contentType: string | undefined,
  ): { partition: number; offset: bigint };
}

declare module "gust:function/sql@0.1.0" {
  export type Value =
    | { tag: "null" }
    | { tag: "integer"; val: bigint }
    | { tag: "real"; val: number }
    | { tag: "text"; val: string }
    | { tag: "blob"; val: Uint8Array };
  export interface Rows {
    columns: string[];
    rows: Value[][];
  }
  export function query(binding: string, sql: string, params: Value[]): Rows;
  export function execute(binding: string, sql: string, params: Value[]): bigint;
  export function transaction(
    binding: string,
    statements: { sql: string; params: Value[] }[],
  ): bigint[];
  export function executeScript(binding: string, script: string): void;
}

declare module "gust:function/table@0.1.0" {
  export interface Document {
    key: string;
    body: Uint8Array;
    version: bigint;
  }
  export function get(binding: string, key: string): Document | undefined;
  export function put(binding: string, key: string, body: Uint8Array): bigint;
  function del(binding: string, key: string): boolean;
  export { del as delete };
  export function scan(
    binding: string,
    prefix: string,
    after: string | undefined,
    limit: number,
  ): Document[];
}

declare module "gust:function/blob@0.1.0" {
  export function read(binding: string, name: string): Uint8Array | undefined;
  export function write(binding: string, name: string, data: Uint8Array): void;
  function del(binding: string, name: string): boolean;
  export { del as delete };
  export function list(binding: string, prefix: string, limit: number): string[];
}
