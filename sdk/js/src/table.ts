/**
 * Document tables the function declared, e.g. `bindings = { contacts = { table = "contacts" } }`.
 * Every write is reported on the table's change feed (trigger `changefeed`).
 *
 * ```ts
 * import { table } from "@gust/sdk";
 * const contacts = table.open("contacts");
 * contacts.put("ada", { name: "Ada" });
 * const ada = contacts.get("ada")?.json();
 * ```
 * @module
 */
import * as hostTable from "gust:function/table@0.1.0";
import { type Body, encode, host, text } from "./internal";

/** A stored document. */
export class Document {
  /** Its key. */
  readonly key: string;
  /** Its bytes (JSON by convention). */
  readonly body: Uint8Array;
  /** The change-feed sequence number of the write that produced it. */
  readonly version: number;

  constructor(doc: hostTable.Document) {
    this.key = doc.key;
    this.body = doc.body;
    this.version = Number(doc.version);
  }

  /** The body as UTF-8 text. */
  text(): string {
    return text(this.body);
  }

  /** The body parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

/** An open document table. */
export class Table {
  readonly binding: string;

  private constructor(binding: string) {
    this.binding = binding;
  }

  /** The table bound as `binding` (checked on first use). */
  static open(binding: string): Table {
    return new Table(binding);
  }

  /** The document under `key`, or `undefined`. */
  get(key: string): Document | undefined {
    const doc = host(() => hostTable.get(this.binding, key));
    return doc === undefined ? undefined : new Document(doc);
  }

  /**
   * Stores `body` under `key` (text as UTF-8, bytes as they are, anything else
   * as JSON); returns the change's sequence number.
   */
  put(key: string, body: Body): number {
    const { bytes } = encode(body);
    return Number(host(() => hostTable.put(this.binding, key, bytes)));
  }

  /** Removes `key`; `false` if it did not exist. */
  delete(key: string): boolean {
    return host(() => hostTable.delete(this.binding, key));
  }

  /** Up to `limit` documents whose key starts with `prefix`, in key order, after key `after`. */
  scan(prefix = "", options: { after?: string; limit?: number } = {}): Document[] {
    return host(() =>
      hostTable.scan(this.binding, prefix, options.after, options.limit ?? 100),
    ).map((d) => new Document(d));
  }
}

/** The table bound as `binding` (same as {@link Table.open}). */
export function open(binding: string): Table {
  return Table.open(binding);
}
