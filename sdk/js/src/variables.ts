/**
 * The app's variables (`[variables]` in gust.toml, `GUST_VAR_<NAME>` overrides).
 *
 * ```ts
 * import { variables } from "@gust/sdk";
 * const greeting = variables.get("greeting") ?? "hello";
 * ```
 * @module
 */
import * as config from "wasi:config/store@0.2.0-rc.1";
import { host } from "./internal";

/** The value of variable `name`, or `undefined` when it has none. */
export function get(name: string): string | undefined {
  return host(() => config.get(name));
}

/** Every variable with a value. */
export function getAll(): Record<string, string> {
  return Object.fromEntries(host(() => config.getAll()));
}
