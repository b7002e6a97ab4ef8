"""HTTP functions: a handler taking a :class:`Request` and returning a
:class:`Response` (or ``str``, ``bytes``, a ``dict``/``list`` sent as JSON).

    import gust

    @gust.http
    def handle(request: gust.Request) -> gust.Response:
        name = request.query.get("name", "world")
        return gust.Response(f"hello, {name}!")
"""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    """An HTTP request, read whole."""

    method: str
    url: str
    headers: Dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        """The path, e.g. ``/api/items/42``."""
        return urlsplit(self.url).path

    @property
    def query(self) -> Dict[str, str]:
        """The query parameters (the last value of a repeated name)."""
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    @property
    def params(self) -> Dict[str, str]:
        """The route parameters Gust matched, e.g. ``{"id": "42"}`` for ``/api/items/{id}``."""
        return dict(parse_qsl(self.headers.get("x-gust-params", ""), keep_blank_values=True))

    def header(self, name: str) -> Optional[str]:
        """One header (case-insensitive)."""
        return self.headers.get(name.lower())

    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Response:
    """An HTTP response."""

    body: Any = b""
    status: int = 200
    headers: Dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(value: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> "Response":
        """A JSON response."""
        return Response(
            json.dumps(value).encode(),
            status,
            {"content-type": "application/json", **(headers or {})},
        )

    def encoded(self) -> Tuple[int, List[Tuple[str, bytes]], bytes]:
        """Status, headers and body bytes (a content type implied by the body when not given)."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self.body
        if isinstance(body, str):
            body = body.encode()
            headers.setdefault("content-type", "text/plain; charset=utf-8")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            body = bytes(body)
        else:
            body = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        return self.status, [(k, v.encode()) for k, v in headers.items()], body


def to_response(value: Any) -> Response:
    """What a handler returned, as a :class:`Response`."""
    if isinstance(value, Response):
        return value
    if value is None:
        return Response(b"", 204)
    return Response(value)
