// GET /hello?name=Ada → `hello, Ada! (call #1)`.
import { kv, variables } from "@gust/sdk";

export default {
  fetch(request) {
    const name = new URL(request.url).searchParams.get("name") || "world";
    const greeting = variables.get("greeting") ?? "hello";
    const calls = kv.open("counter").increment("calls");
    return new Response(`${greeting}, ${name}! (call #${calls})`);
  },
};
