"""Blob containers the function declared, e.g.
``bindings = { files = { blob = "uploads" } }``. On the embedded backend a
container is the folder ``.gust/blobs/<container>/``; a blob written here
starts blob-triggered functions watching it.

    from gust import blob
    files = blob.open("files")
    files.write("reports/today.csv", text)
"""

from typing import Any, List, Optional

from wit_world.imports import blob as _blob

from ._bytes import encode
from .errors import host


class Container:
    """An open blob container."""

    def __init__(self, binding: str):
        self.binding = binding

    def read(self, name: str) -> Optional[bytes]:
        """The blob called ``name`` (``/``-separated), or ``None``."""
        return host(_blob.read, self.binding, name)

    def read_text(self, name: str) -> Optional[str]:
        """The blob called ``name`` as UTF-8 text, or ``None``."""
        data = self.read(name)
        return None if data is None else data.decode()

    def write(self, name: str, data: Any) -> None:
        """Stores ``data`` as ``name``, replacing it; complete and durable on return."""
        host(_blob.write, self.binding, name, encode(data)[0])

    def delete(self, name: str) -> bool:
        """Removes ``name``; ``False`` if it did not exist."""
        return host(_blob.delete, self.binding, name)

    def list(self, prefix: str = "", limit: int = 1000) -> List[str]:
        """Up to ``limit`` names starting with ``prefix``, in order."""
        return host(_blob.list, self.binding, prefix, limit)


def open(binding: str) -> Container:
    """The container bound as ``binding`` (checked on first use)."""
    return Container(binding)
