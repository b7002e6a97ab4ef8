"""gust — write Gust functions in Python.

An HTTP function is a function marked ``@gust.http``; an event function one
marked ``@gust.event``. Bindings declared in gust.toml are reached through
the modules ``kv``, ``sql``, ``blob``, ``table``, ``queue``, ``topic``,
``stream``, ``variables`` and ``log``; ``outbound`` calls other HTTP services
(the destinations in the function's ``outbound_http``). See README.md.

    import gust
    from gust import kv

    @gust.http
    def handle(request: gust.Request) -> gust.Response:
        n = kv.open("counter").increment("calls")
        return gust.Response(f"hello, {request.query.get('name', 'world')}! (call #{n})")
"""

from typing import Callable

from .errors import GustError, Permanent, Retryable
from .event import Event
from .http import Request, Response

_handlers = {}


def http(handler: Callable[[Request], object]) -> Callable[[Request], object]:
    """Marks the HTTP handler of the function (one per function folder)."""
    _handlers["http"] = handler
    return handler


def event(handler: Callable[[Event], None]) -> Callable[[Event], None]:
    """Marks the event handler of the function (one per function folder)."""
    _handlers["event"] = handler
    return handler


def _handler(kind: str):
    return _handlers.get(kind)


__all__ = [
    "http",
    "event",
    "Request",
    "Response",
    "Event",
    "GustError",
    "Retryable",
    "Permanent",
]
