"""Payload encoding shared by the bindings."""

import json
from typing import Any, Tuple


def encode(body: Any) -> Tuple[bytes, str]:
    """The bytes of ``body`` and the media type it implies: ``str`` as UTF-8
    text, ``bytes`` as they are, anything else as JSON."""
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), "application/octet-stream"
    return json.dumps(body).encode(), "application/json"
