"""Shared fakeredis servers for ``fakeredis://NAME`` (imported only when that scheme is used)."""

from __future__ import annotations

import threading
from typing import Any

from ._errors import ConfigError

_servers: dict[str, Any] = {}
_lock = threading.Lock()


def fake_server(name: str | None) -> Any:
    """Return the process-wide fakeredis server ``name`` or a new private one.

    Raises:
        ConfigError: fakeredis is not installed (with the install hint).
    """
    try:
        import fakeredis
    except ImportError:
        raise ConfigError(
            "fakeredis:// needs fakeredis; install it with: pip install 'kvkit-sdk[fakeredis]'"
        ) from None
    if name is None:
        return fakeredis.FakeServer()
    with _lock:
        server = _servers.get(name)
        if server is None:
            server = _servers[name] = fakeredis.FakeServer()
        return server
