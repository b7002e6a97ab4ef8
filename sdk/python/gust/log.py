"""Writes to the host's function log (``gust logs``, ``.gust/logs/functions.log``).
``print`` output is captured too.

    from gust import log
    log.info(f"imported {n} rows")
"""

from wit_world.imports import logging as _logging

_Level = _logging.Level


def _write(level, message: str, context: str = "") -> None:
    _logging.log(level, context, str(message))


def trace(message: str, context: str = "") -> None:
    """Logs at level ``trace``."""
    _write(_Level.TRACE, message, context)


def debug(message: str, context: str = "") -> None:
    """Logs at level ``debug``."""
    _write(_Level.DEBUG, message, context)


def info(message: str, context: str = "") -> None:
    """Logs at level ``info``."""
    _write(_Level.INFO, message, context)


def warn(message: str, context: str = "") -> None:
    """Logs at level ``warn``."""
    _write(_Level.WARN, message, context)


def error(message: str, context: str = "") -> None:
    """Logs at level ``error``."""
    _write(_Level.ERROR, message, context)
