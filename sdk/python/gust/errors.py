"""Errors of binding calls and event handlers."""


class GustError(Exception):
    """A binding call the host refused or that failed (the message says why)."""


class Retryable(Exception):
    """Raised from an event handler: deliver the event again later, under the
    function's retry policy. Any other exception counts as retryable too."""

    retryable = True


class Permanent(Exception):
    """Raised from an event handler: trying again cannot help, so the event
    goes straight to the dead-letter destination."""

    retryable = False


def host(call, *args):
    """Runs a host call, turning its error into a :class:`GustError`."""
    from componentize_py_types import Err

    try:
        return call(*args)
    except Err as e:
        raise GustError(describe(e.value)) from None


def describe(value) -> str:
    """A readable message from a host error value."""
    if isinstance(value, str):
        return value
    inner = getattr(value, "value", None)
    name = type(value).__name__.split("_", 1)[-1]
    if inner is None:
        return name
    return f"{name}: {inner}"
