/** A binding call the host refused or that failed (its message says why). */
export class GustError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GustError";
  }
}

/**
 * Thrown from an event handler: the event is delivered again later, under the
 * function's retry policy (any other exception counts as retryable too).
 */
export class RetryableError extends Error {
  readonly retryable = true;
  constructor(message: string) {
    super(message);
    this.name = "RetryableError";
  }
}

/**
 * Thrown from an event handler: trying again cannot help, so the event goes
 * straight to the dead-letter destination.
 */
export class PermanentError extends Error {
  readonly retryable = false;
  constructor(message: string) {
    super(message);
    this.name = "PermanentError";
  }
}

/** Runs a host call, turning its error payload into a {@link GustError}. */
export function host<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw new GustError(describe(e));
  }
}

/** A readable message from whatever a host call threw. */
export function describe(e: unknown): string {
  const payload = (e as { payload?: unknown })?.payload;
  const value = payload !== undefined ? payload : e;
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  const tagged = value as { tag?: string; val?: unknown };
  if (tagged && typeof tagged.tag === "string") {
    return tagged.val === undefined ? tagged.tag : `${tagged.tag}: ${String(tagged.val)}`;
  }
  return String(value);
}
