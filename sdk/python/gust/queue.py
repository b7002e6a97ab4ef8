"""Sends messages to queues the function declared, e.g.
``bindings = { jobs = { queue = "jobs" } }``.

    from gust import queue
    message_id = queue.send("jobs", {"order": 42})
"""

from typing import Any, Optional

from wit_world.imports import queue as _queue

from ._bytes import encode
from .errors import host


def send(binding: str, body: Any, content_type: Optional[str] = None) -> str:
    """Appends ``body`` to the queue bound as ``binding`` (durable on return)
    and returns the message id. ``str`` is sent as UTF-8, ``bytes`` as they
    are, anything else as JSON."""
    data, implied = encode(body)
    return host(_queue.send, binding, data, content_type or implied)
