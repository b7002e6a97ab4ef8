/** What the SDK accepts as a payload: text (UTF-8), bytes, or a value sent as JSON. */
export type Body = string | Uint8Array | ArrayBuffer | object | number | boolean | null;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The bytes of `body`, and the media type it implies. */
export function encode(body: Body): { bytes: Uint8Array; contentType: string } {
  if (typeof body === "string") {
    return { bytes: encoder.encode(body), contentType: "text/plain; charset=utf-8" };
  }
  if (body instanceof Uint8Array) {
    return { bytes: body, contentType: "application/octet-stream" };
  }
  if (body instanceof ArrayBuffer) {
    return { bytes: new Uint8Array(body), contentType: "application/octet-stream" };
  }
  return { bytes: encoder.encode(JSON.stringify(body)), contentType: "application/json" };
}

/** UTF-8 text of `bytes`. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** A u64/s64 from the host as a number when it fits exactly, else a bigint. */
export function int(n: bigint): number {
  return Number(n);
}
