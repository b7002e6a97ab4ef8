/**
 * SQL databases the function declared, e.g. `bindings = { db = { sql = "analytics" } }`
 * (SQLite on the embedded backend). Placeholders are `?`, `?1`, `?2`, ...
 *
 * ```ts
 * import { sql } from "@gust/sdk";
 * const db = sql.open("db");
 * db.execute("INSERT INTO sales (region, amount) VALUES (?, ?)", ["north", 12.5]);
 * const rows = db.query("SELECT region, SUM(amount) AS total FROM sales GROUP BY region");
 * // [{ region: "north", total: 12.5 }]
 * ```
 * @module
 */
import * as hostSql from "gust:function/sql@0.1.0";
import { host } from "./internal";

/** A value sent to or read from SQL. Integers outside ±2^53 come back as `bigint`. */
export type SqlValue = null | number | bigint | string | boolean | Uint8Array;

/** One row, by column name. */
export type Row = Record<string, SqlValue>;

/** A statement of a {@link Database.transaction}: SQL and its parameters. */
export type Statement = [sql: string, params?: SqlValue[]];

function toHost(v: SqlValue | undefined): hostSql.Value {
  if (v === null || v === undefined) return { tag: "null" };
  if (typeof v === "bigint") return { tag: "integer", val: v };
  if (typeof v === "boolean") return { tag: "integer", val: v ? 1n : 0n };
  if (typeof v === "number") {
    return Number.isSafeInteger(v) ? { tag: "integer", val: BigInt(v) } : { tag: "real", val: v };
  }
  if (typeof v === "string") return { tag: "text", val: v };
  if (v instanceof Uint8Array) return { tag: "blob", val: v };
  throw new TypeError(`cannot send ${typeof v} to SQL; use a number, string, boolean, bytes or null`);
}

function fromHost(v: hostSql.Value): SqlValue {
  switch (v.tag) {
    case "null":
      return null;
    case "integer":
      return v.val >= BigInt(Number.MIN_SAFE_INTEGER) && v.val <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(v.val)
        : v.val;
    default:
      return v.val;
  }
}

/** An open SQL database. */
export class Database {
  readonly binding: string;

  private constructor(binding: string) {
    this.binding = binding;
  }

  /** The database bound as `binding` (checked on first use). */
  static open(binding: string): Database {
    return new Database(binding);
  }

  /** Runs a statement that returns rows; one object per row, keyed by column. */
  query(sql: string, params: SqlValue[] = []): Row[] {
    const { columns, rows } = this.queryRaw(sql, params);
    return rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i]])));
  }

  /** Runs a statement that returns rows; column names and rows as arrays. */
  queryRaw(sql: string, params: SqlValue[] = []): { columns: string[]; rows: SqlValue[][] } {
    const result = host(() => hostSql.query(this.binding, sql, params.map(toHost)));
    return { columns: result.columns, rows: result.rows.map((r) => r.map(fromHost)) };
  }

  /** Runs a statement; returns the number of rows it changed (durable on return). */
  execute(sql: string, params: SqlValue[] = []): number {
    return Number(host(() => hostSql.execute(this.binding, sql, params.map(toHost))));
  }

  /** Runs statements in one transaction (all or nothing); returns the rows each changed. */
  transaction(statements: Statement[]): number[] {
    const list = statements.map(([sql, params = []]) => ({ sql, params: params.map(toHost) }));
    return host(() => hostSql.transaction(this.binding, list)).map(Number);
  }

  /** Runs `;`-separated statements without parameters in one transaction (schema set-up). */
  executeScript(script: string): void {
    host(() => hostSql.executeScript(this.binding, script));
  }
}

/** The database bound as `binding` (same as {@link Database.open}). */
export function open(binding: string): Database {
  return Database.open(binding);
}
