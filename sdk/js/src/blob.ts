/**
 * Blob containers the function declared, e.g.
 * `bindings = { files = { blob = "uploads" } }`. On the embedded backend a
 * container is the folder `.gust/blobs/<container>/`; a blob written here
 * starts blob-triggered functions watching it.
 *
 * ```ts
 * import { blob } from "@gust/sdk";
 * const files = blob.open("files");
 * files.write("reports/today.csv", csv);
 * ```
 * @module
 */
import * as hostBlob from "gust:function/blob@0.1.0";
import { type Body, encode, host, text } from "./internal";

/** An open blob container. */
export class Container {
  readonly binding: string;

  private constructor(binding: string) {
    this.binding = binding;
  }

  /** The container bound as `binding` (checked on first use). */
  static open(binding: string): Container {
    return new Container(binding);
  }

  /** The blob called `name` (`/`-separated), or `undefined`. */
  read(name: string): Uint8Array | undefined {
    return host(() => hostBlob.read(this.binding, name));
  }

  /** The blob called `name` as UTF-8 text, or `undefined`. */
  readText(name: string): string | undefined {
    const bytes = this.read(name);
    return bytes === undefined ? undefined : text(bytes);
  }

  /** Stores `data` as `name`, replacing it; complete and durable on return. */
  write(name: string, data: Body): void {
    const { bytes } = encode(data);
    host(() => hostBlob.write(this.binding, name, bytes));
  }

  /** Removes `name`; `false` if it did not exist. */
  delete(name: string): boolean {
    return host(() => hostBlob.delete(this.binding, name));
  }

  /** Up to `limit` blob names starting with `prefix`, in order. */
  list(prefix = "", limit = 1000): string[] {
    return host(() => hostBlob.list(this.binding, prefix, limit));
  }
}

/** The container bound as `binding` (same as {@link Container.open}). */
export function open(binding: string): Container {
  return Container.open(binding);
}
