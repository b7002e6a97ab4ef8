"""Outbound HTTP calls (``wasi:http/outgoing-handler``) to the destinations
the function declares in gust.toml::

    outbound_http = ["https://hooks.example.com", "http://127.0.0.1:*"]

Calls block until the whole answer is read (a handler is synchronous)::

    from gust import outbound

    reply = outbound.post("https://hooks.example.com/done", json={"id": 7})
    if not reply.ok:
        log.warn(f"hook answered {reply.status}")
    quote = outbound.get("https://api.example.com/quote", timeout=2.0).json()

A destination no rule allows raises :class:`Denied` before any connection is
made (and the host logs which rules there are); no answer in time raises
:class:`Timeout`; any other failure :class:`OutboundError`. A call never
outlives the function's own timeout.
"""

import json as _json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _http

from .errors import GustError, describe

#: Largest response body read (a bigger one raises :class:`OutboundError`).
MAX_RESPONSE = 16 << 20

_CHUNK = 4096
_READ = 64 * 1024

Headers = Union[Mapping[str, Union[str, bytes]], List[Tuple[str, Union[str, bytes]]], None]


class OutboundError(GustError):
    """An outbound call failed: the connection, the exchange or a body.

    ``transient`` says whether trying again later may help; escaping an
    event handler, a transient error is retried and any other goes to the
    dead letters at once."""

    transient = True
    retryable = True


class Denied(OutboundError):
    """No ``outbound_http`` rule of the function allows the destination."""

    transient = False
    retryable = False

    def __init__(self, url: str):
        super().__init__(
            f"outbound HTTP to {url} was denied: add a matching rule to the "
            "function's `outbound_http` in gust.toml"
        )
        self.url = url


class Timeout(OutboundError):
    """No answer in time (the call's own ``timeout``, or the function's)."""


class InvalidUrl(OutboundError, ValueError):
    """The URL is not ``http(s)://host[:port][/path]``."""

    transient = False
    retryable = False


@dataclass
class Response:
    """An answer, read whole."""

    status: int
    #: Header names in lower case (repeated headers joined with ``, ``).
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        """One header (case-insensitive)."""
        return self.headers.get(name.lower())

    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    def raise_for_status(self) -> "Response":
        """Raises :class:`OutboundError` unless the status is 2xx; returns ``self``."""
        if not self.ok:
            raise OutboundError(f"outbound HTTP answered {self.status}: {self.body[:200]!r}")
        return self


def request(
    method: str,
    url: str,
    *,
    headers: Headers = None,
    body: Any = None,
    json: Any = None,
    timeout: Optional[float] = None,
) -> Response:
    """Sends a request and reads the whole answer.

    ``body`` is ``str`` (sent as UTF-8), ``bytes``, or anything else (sent as
    JSON); ``json=`` sends a value as JSON. A content type is set from the
    body unless ``headers`` has one. ``timeout`` (seconds) bounds the
    connection and each wait for data; the function's timeout bounds all."""
    https, authority, path = _split(url)
    shown = url.split("?", 1)[0]
    pairs = _header_pairs(headers)
    data, implied = _body(body, json)
    names = {name.lower() for name, _ in pairs}
    if implied and "content-type" not in names:
        pairs.append(("content-type", implied.encode()))
    method = method.upper()
    if data or method in ("POST", "PUT", "PATCH"):
        pairs = [(n, v) for n, v in pairs if n.lower() != "content-length"]
        pairs.append(("content-length", str(len(data)).encode()))
    return _send(method, https, authority, path, pairs, data, timeout, shown)


def get(url: str, *, headers: Headers = None, timeout: Optional[float] = None) -> Response:
    """``GET url``."""
    return request("GET", url, headers=headers, timeout=timeout)


def post(
    url: str,
    body: Any = None,
    *,
    json: Any = None,
    headers: Headers = None,
    timeout: Optional[float] = None,
) -> Response:
    """``POST url`` with ``body`` (or ``json=``)."""
    return request("POST", url, headers=headers, body=body, json=json, timeout=timeout)


def put(
    url: str,
    body: Any = None,
    *,
    json: Any = None,
    headers: Headers = None,
    timeout: Optional[float] = None,
) -> Response:
    """``PUT url`` with ``body`` (or ``json=``)."""
    return request("PUT", url, headers=headers, body=body, json=json, timeout=timeout)


def delete(url: str, *, headers: Headers = None, timeout: Optional[float] = None) -> Response:
    """``DELETE url``."""
    return request("DELETE", url, headers=headers, timeout=timeout)


def _split(url: str) -> Tuple[bool, str, str]:
    """Scheme, authority and path-with-query of an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InvalidUrl(f"invalid URL `{url}`: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidUrl(f"invalid URL `{url}`: write http://... or https://...")
    if not parts.netloc or "@" in parts.netloc or any(c.isspace() for c in parts.netloc):
        raise InvalidUrl(f"invalid URL `{url}`: missing or malformed host")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme == "https", parts.netloc, path


def _header_pairs(headers: Headers) -> List[Tuple[str, bytes]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(n), v if isinstance(v, bytes) else str(v).encode()) for n, v in items]


def _body(body: Any, value: Any) -> Tuple[bytes, Optional[str]]:
    if value is not None:
        return _json.dumps(value).encode(), "application/json"
    if body is None:
        return b"", None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), None
    return _json.dumps(body).encode(), "application/json"


def _error(code, url: str) -> OutboundError:
    """The exception for a ``wasi:http`` error code."""
    name = type(code).__name__.split("_", 1)[-1]
    if name == "HttpRequestDenied":
        return Denied(url)
    if name in (
        "ConnectionTimeout",
        "ConnectionReadTimeout",
        "ConnectionWriteTimeout",
        "HttpResponseTimeout",
        "DnsTimeout",
    ):
        return Timeout(f"outbound HTTP to {url} timed out ({name})")
    if name == "HttpRequestUriInvalid":
        return InvalidUrl(f"invalid URL `{url}`")
    detail = getattr(code, "value", None)
    suffix = f": {detail}" if detail not in (None, "") else ""
    return OutboundError(f"outbound HTTP to {url} failed: {name}{suffix}")


def _send(method, https, authority, path, pairs, data, timeout, shown) -> Response:
    try:
        fields = _http.Fields.from_list(pairs)
    except Err as e:
        raise OutboundError(f"outbound HTTP to {shown}: bad header ({_describe(e.value)})") from None
    outgoing = _http.OutgoingRequest(fields)
    try:
        outgoing.set_method(_method(method))
        outgoing.set_scheme(_http.Scheme_Https() if https else _http.Scheme_Http())
        outgoing.set_authority(authority)
        outgoing.set_path_with_query(path)
    except Err:
        raise InvalidUrl(f"invalid request {method} {shown}") from None
    body = outgoing.body()
    options = None
    if timeout is not None:
        nanos = max(int(timeout * 1e9), 1)
        options = _http.RequestOptions()
        for setter in (
            options.set_connect_timeout,
            options.set_first_byte_timeout,
            options.set_between_bytes_timeout,
        ):
            try:
                setter(nanos)
            except Err:
                pass
    try:
        pending = outgoing_handler.handle(outgoing, options)
    except Err as e:
        raise _error(e.value, shown) from None
    # Write the body; a refused request shows up as a write error too, so the
    # response's own error (below) is reported first.
    written = _write_body(body, data)
    pollable = pending.subscribe()
    pollable.block()
    pollable.__exit__(None, None, None)
    result = pending.get()
    pending.__exit__(None, None, None)
    if result is None or isinstance(result, Err):
        raise OutboundError(f"outbound HTTP to {shown} failed: no response")
    inner = result.value if isinstance(result, Ok) else result
    if isinstance(inner, Err):
        raise _error(inner.value, shown)
    if written is not None:
        raise OutboundError(f"outbound HTTP to {shown}: writing the request body: {written}")
    incoming = inner.value if isinstance(inner, Ok) else inner
    status = incoming.status()
    headers: Dict[str, str] = {}
    with incoming.headers() as fields_in:
        for name, value in fields_in.entries():
            name = name.lower()
            text = value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
    incoming_body = incoming.consume()
    stream = incoming_body.stream()
    content = bytearray()
    try:
        while True:
            try:
                chunk = stream.blocking_read(_READ)
            except Err as e:
                if isinstance(e.value, _streams.StreamError_Closed):
                    break
                raise OutboundError(
                    f"outbound HTTP to {shown}: reading the answer: {_describe(e.value)}"
                ) from None
            content.extend(chunk)
            if len(content) > MAX_RESPONSE:
                raise OutboundError(
                    f"outbound HTTP to {shown}: answer larger than {MAX_RESPONSE} bytes"
                )
    finally:
        stream.__exit__(None, None, None)
        trailers = _http.IncomingBody.finish(incoming_body)
        trailers.__exit__(None, None, None)
        incoming.__exit__(None, None, None)
    return Response(status, headers, bytes(content))


def _write_body(body, data: bytes) -> Optional[str]:
    """Writes and finishes the request body; a failure's description, or None."""
    stream = body.write()
    try:
        for start in range(0, len(data), _CHUNK):
            stream.blocking_write_and_flush(data[start : start + _CHUNK])
    except Err as e:
        stream.__exit__(None, None, None)
        return _describe(e.value)
    stream.__exit__(None, None, None)
    try:
        _http.OutgoingBody.finish(body, None)
    except Err as e:
        return _describe(e.value)
    return None


def _method(name: str):
    known = {
        "GET": _http.Method_Get,
        "HEAD": _http.Method_Head,
        "POST": _http.Method_Post,
        "PUT": _http.Method_Put,
        "DELETE": _http.Method_Delete,
        "PATCH": _http.Method_Patch,
        "OPTIONS": _http.Method_Options,
        "CONNECT": _http.Method_Connect,
        "TRACE": _http.Method_Trace,
    }
    if name in known:
        return known[name]()
    return _http.Method_Other(name)


def _describe(value) -> str:
    to_text = getattr(getattr(value, "value", None), "to_debug_string", None)
    if to_text is not None:
        return f"{type(value).__name__.split('_', 1)[-1]}: {to_text()}"
    return describe(value)
