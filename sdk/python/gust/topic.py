"""Publishes CloudEvents to topics the function declared, e.g.
``bindings = { events = { topic = "orders" } }``.

    from gust import topic
    topic.publish("events", "order.created", {"id": 42}, subject="orders/42")
"""

from typing import Any, Optional

from wit_world.imports import topic as _topic

from ._bytes import encode
from .errors import host


def publish(
    binding: str,
    event_type: str,
    data: Any,
    subject: Optional[str] = None,
    content_type: Optional[str] = None,
) -> str:
    """Publishes an event of type ``event_type`` to the topic bound as
    ``binding``; returns its id once every subscription stored it."""
    payload, implied = encode(data)
    return host(_topic.publish, binding, event_type, subject, payload, content_type or implied)
