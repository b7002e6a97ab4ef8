// Helpers shared by the SDK's modules (not part of its API).
export { host, describe } from "./errors";
export { type Body, encode, text, int } from "./bytes";
