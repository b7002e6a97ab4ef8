"""Glue between a function module and the component exports (used by the
entry module ``gust build`` generates; not part of the SDK's API)."""

import sys
import traceback

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import gust_function_types as _types
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _http

import gust
from gust.event import Event
from gust.http import Request, Response, to_response

_CHUNK = 4096


def _method(m) -> str:
    if isinstance(m, _http.Method_Other):
        return m.value
    return type(m).__name__.split("_", 1)[1].upper()


def _read_request(request) -> Request:
    headers = {}
    for name, value in request.headers().entries():
        headers[name.lower()] = value.decode("latin-1")
    scheme = request.scheme()
    if isinstance(scheme, _http.Scheme_Https):
        scheme_text = "https"
    elif isinstance(scheme, _http.Scheme_Other):
        scheme_text = scheme.value
    else:
        scheme_text = "http"
    authority = request.authority() or headers.get("host", "localhost")
    url = f"{scheme_text}://{authority}{request.path_with_query() or '/'}"
    body = bytearray()
    incoming = request.consume()
    stream = incoming.stream()
    while True:
        try:
            chunk = stream.blocking_read(65536)
        except Err as e:
            if isinstance(e.value, _streams.StreamError_Closed):
                break
            raise
        body.extend(chunk)
    stream.__exit__(None, None, None)
    _http.IncomingBody.finish(incoming)
    return Request(_method(request.method()), url, headers, bytes(body))


def _send(response_out, response: Response) -> None:
    status, headers, body = response.encoded()
    outgoing = _http.OutgoingResponse(_http.Fields.from_list(headers))
    outgoing.set_status_code(status)
    out_body = outgoing.body()
    _http.ResponseOutparam.set(response_out, Ok(outgoing))
    stream = out_body.write()
    for start in range(0, len(body), _CHUNK):
        stream.blocking_write_and_flush(body[start : start + _CHUNK])
    stream.__exit__(None, None, None)
    _http.OutgoingBody.finish(out_body, None)


class IncomingHandler(exports.IncomingHandler):
    """The `wasi:http/incoming-handler` export."""

    def handle(self, request, response_out) -> None:
        handler = gust._handler("http")
        if handler is None:
            _send(response_out, Response("this function has no @gust.http handler\n", 500))
            return
        try:
            response = to_response(handler(_read_request(request)))
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = Response("internal error\n", 500)
        _send(response_out, response)


class EventHandler(exports.EventHandler):
    """The `gust:function/event-handler` export."""

    def handle(self, event) -> None:
        handler = gust._handler("event")
        if handler is None:
            raise Err(_types.Error("this function has no @gust.event handler", False))
        wrapped = Event(
            id=event.id,
            source=event.source,
            type=event.type,
            subject=event.subject,
            time=event.time,
            datacontenttype=event.datacontenttype,
            data=bytes(event.data),
            extensions=dict(event.extensions),
            attempt=event.attempt,
        )
        try:
            handler(wrapped)
        except Exception as e:
            retryable = getattr(e, "retryable", True) is not False
            if not isinstance(e, (gust.Retryable, gust.Permanent)):
                traceback.print_exc(file=sys.stderr)
            raise Err(_types.Error(str(e) or type(e).__name__, retryable)) from None
