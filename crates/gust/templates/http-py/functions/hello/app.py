"""GET /hello?name=Ada → `hello, Ada! (call #1)`."""

import gust
from gust import kv, variables


@gust.http
def handle(request: gust.Request) -> gust.Response:
    name = request.query.get("name") or "world"
    greeting = variables.get("greeting") or "hello"
    calls = kv.open("counter").increment("calls")
    return gust.Response(f"{greeting}, {name}! (call #{calls})")
