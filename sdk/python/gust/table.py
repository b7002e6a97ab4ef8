"""Document tables the function declared, e.g.
``bindings = { contacts = { table = "contacts" } }``. Every write is reported
on the table's change feed (trigger ``changefeed``).

    from gust import table
    contacts = table.open("contacts")
    contacts.put("ada", {"name": "Ada"})
    ada = contacts.get("ada").json()
"""

import json
from dataclasses import dataclass
from typing import Any, List, Optional

from wit_world.imports import table as _table

from ._bytes import encode
from .errors import host


@dataclass
class Document:
    """A stored document."""

    key: str
    body: bytes
    version: int

    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Table:
    """An open document table."""

    def __init__(self, binding: str):
        self.binding = binding

    def get(self, key: str) -> Optional[Document]:
        """The document under ``key``, or ``None``."""
        doc = host(_table.get, self.binding, key)
        return None if doc is None else Document(doc.key, doc.body, doc.version)

    def put(self, key: str, body: Any) -> int:
        """Stores ``body`` under ``key`` (``str`` as UTF-8, ``bytes`` as they
        are, anything else as JSON); returns the change's sequence number."""
        return host(_table.put, self.binding, key, encode(body)[0])

    def delete(self, key: str) -> bool:
        """Removes ``key``; ``False`` if it did not exist."""
        return host(_table.delete, self.binding, key)

    def scan(self, prefix: str = "", after: Optional[str] = None, limit: int = 100) -> List[Document]:
        """Up to ``limit`` documents whose key starts with ``prefix``, in key
        order, after key ``after``."""
        docs = host(_table.scan, self.binding, prefix, after, limit)
        return [Document(d.key, d.body, d.version) for d in docs]


def open(binding: str) -> Table:
    """The table bound as ``binding`` (checked on first use)."""
    return Table(binding)
