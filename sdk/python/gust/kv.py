"""Key-value stores the function declared, e.g.
``bindings = { counts = { kv = "ad-counts" } }`` makes ``kv.open("counts")`` valid.

    from gust import kv
    store = kv.open("counts")
    n = store.increment("visits")
    store.set_json("last", {"page": "/"})
"""

import json
from typing import Any, List, Optional

from wit_world.imports import atomics, wasi_keyvalue_store as _store

from ._bytes import encode
from .errors import host


class Store:
    """An open key-value store."""

    def __init__(self, bucket):
        self._bucket = bucket

    def get(self, key: str) -> Optional[bytes]:
        """The value under ``key``, or ``None``."""
        return host(self._bucket.get, key)

    def get_text(self, key: str) -> Optional[str]:
        """The value under ``key`` as UTF-8 text, or ``None``."""
        value = self.get(key)
        return None if value is None else value.decode()

    def get_json(self, key: str) -> Any:
        """The value under ``key`` parsed as JSON, or ``None``."""
        value = self.get(key)
        return None if value is None else json.loads(value)

    def set(self, key: str, value: Any) -> None:
        """Stores ``value`` (``str`` as UTF-8, ``bytes`` as they are, anything else as JSON)."""
        host(self._bucket.set, key, encode(value)[0])

    def set_json(self, key: str, value: Any) -> None:
        """Stores ``value`` as JSON (also a string, unlike :meth:`set`)."""
        host(self._bucket.set, key, json.dumps(value).encode())

    def delete(self, key: str) -> None:
        """Removes ``key`` (no error when it is absent)."""
        host(self._bucket.delete, key)

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        return host(self._bucket.exists, key)

    def keys(self) -> List[str]:
        """Every key in the store."""
        keys: List[str] = []
        cursor = None
        while True:
            page = host(self._bucket.list_keys, cursor)
            keys.extend(page.keys)
            cursor = page.cursor
            if cursor is None:
                return keys

    def increment(self, key: str, delta: int = 1) -> int:
        """Adds ``delta`` to the counter under ``key`` atomically; returns the new value."""
        return host(atomics.increment, self._bucket, key, delta)


def open(binding: str) -> Store:
    """Opens the store bound as ``binding`` in gust.toml."""
    return Store(host(_store.open, binding))
