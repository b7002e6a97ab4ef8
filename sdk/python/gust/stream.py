"""Appends records to streams the function declared, e.g.
``bindings = { out = { stream = "telemetry" } }``.

    from gust import stream
    position = stream.append("out", device_id, reading)
"""

from dataclasses import dataclass
from typing import Any, Optional

from wit_world.imports import stream as _stream

from ._bytes import encode
from .errors import host


@dataclass
class Position:
    """Where a record was stored."""

    partition: int
    offset: int


def append(binding: str, key: str, data: Any, content_type: Optional[str] = None) -> Position:
    """Appends ``data`` under ``key`` (records with one key keep their
    order); durable on return."""
    payload, implied = encode(data)
    at = host(_stream.append, binding, key, payload, content_type or implied)
    return Position(at.partition, at.offset)
