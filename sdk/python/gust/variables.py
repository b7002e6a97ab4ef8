"""The app's variables (``[variables]`` in gust.toml, ``GUST_VAR_<NAME>`` overrides).

    from gust import variables
    greeting = variables.get("greeting") or "hello"
"""

from typing import Dict, Optional

from wit_world.imports import wasi_config_store as _config

from .errors import host


def get(name: str) -> Optional[str]:
    """The value of variable ``name``, or ``None`` when it has none."""
    return host(_config.get, name)


def get_all() -> Dict[str, str]:
    """Every variable with a value."""
    return dict(host(_config.get_all))
