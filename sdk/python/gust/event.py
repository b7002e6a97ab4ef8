"""Event functions: every non-HTTP trigger (timer, queue, topic, blob, change
feed, stream, MQTT) delivers a CloudEvents 1.0 :class:`Event`.

    import gust

    @gust.event
    def handle(event: gust.Event) -> None:
        job = event.json()
        if "id" not in job:
            raise gust.Permanent("a job needs an id")

Returning settles (acknowledges) the event. Raising :class:`gust.Permanent`
sends it straight to the dead-letter destination; any other exception
(including :class:`gust.Retryable`) asks for another delivery under the
function's retry policy.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass
class Event:
    """A CloudEvents 1.0 event delivered to a function."""

    id: str
    source: str
    type: str
    subject: Optional[str] = None
    time: Optional[str] = None
    datacontenttype: Optional[str] = None
    data: bytes = b""
    extensions: Dict[str, str] = field(default_factory=dict)
    attempt: int = 1

    def text(self) -> str:
        """The payload as UTF-8 text."""
        return self.data.decode()

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.data)

    def extension(self, name: str) -> Optional[str]:
        """One extension attribute (e.g. ``traceparent``, a blob's ``name``)."""
        return self.extensions.get(name)
