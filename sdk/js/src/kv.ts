/**
 * Key-value stores the function declared, e.g. `bindings = { counts = { kv = "ad-counts" } }`
 * makes `kv.open("counts")` valid.
 *
 * ```ts
 * import { kv } from "@gust/sdk";
 * const store = kv.open("counts");
 * const n = store.increment("visits");
 * store.setJson("last", { at: Date.now() });
 * ```
 * @module
 */
import * as store from "wasi:keyvalue/store@0.2.0-draft";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft";
import { type Body, encode, host, text } from "./internal";

/** An open key-value store. */
export class Store {
  readonly #bucket: store.Bucket;

  private constructor(bucket: store.Bucket) {
    this.#bucket = bucket;
  }

  /** Opens the store bound as `binding` in gust.toml. */
  static open(binding: string): Store {
    return new Store(host(() => store.open(binding)));
  }

  /** The value under `key`, or `undefined`. */
  get(key: string): Uint8Array | undefined {
    return host(() => this.#bucket.get(key));
  }

  /** The value under `key` as UTF-8 text, or `undefined`. */
  getText(key: string): string | undefined {
    const v = this.get(key);
    return v === undefined ? undefined : text(v);
  }

  /** The value under `key` parsed as JSON, or `undefined`. */
  getJson<T = unknown>(key: string): T | undefined {
    const v = this.getText(key);
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }

  /** Stores `value` (text as UTF-8, bytes as they are, anything else as JSON). */
  set(key: string, value: Body): void {
    const { bytes } = encode(value);
    host(() => this.#bucket.set(key, bytes));
  }

  /** Stores `value` as JSON (also a string, unlike {@link set}). */
  setJson(key: string, value: unknown): void {
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    host(() => this.#bucket.set(key, bytes));
  }

  /** Removes `key` (no error when it is absent). */
  delete(key: string): void {
    host(() => this.#bucket.delete(key));
  }

  /** Whether `key` holds a value. */
  exists(key: string): boolean {
    return host(() => this.#bucket.exists(key));
  }

  /** Every key in the store. */
  keys(): string[] {
    const keys: string[] = [];
    let cursor: bigint | undefined = undefined;
    do {
      const page: { keys: string[]; cursor?: bigint } = host(() => this.#bucket.listKeys(cursor));
      keys.push(...page.keys);
      cursor = page.cursor;
    } while (cursor !== undefined);
    return keys;
  }

  /** Adds `delta` to the counter under `key` atomically and returns the new value. */
  increment(key: string, delta = 1): number {
    return Number(host(() => increment(this.#bucket, key, BigInt(delta))));
  }
}

/** Opens the store bound as `binding` (same as {@link Store.open}). */
export function open(binding: string): Store {
  return Store.open(binding);
}
