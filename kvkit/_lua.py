"""Lua scripts run by the Redis drivers, kept as ``.lua`` package data.

The scripts live in ``kvkit/_resources/lua/<family>/<name>.lua`` (one file per script, so
they can be read, linted and diffed as Lua), are read once at import time and are shared
by the sync and async drivers. A line ``--! include <file>.lua`` is replaced by that file
of the same folder: several scripts share helper functions, and Redis runs each script
in isolation, so the helpers have to be part of every script's own source.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

__all__ = ["LuaScript", "lua_source"]

_INCLUDE = re.compile(r"^--! include (\S+\.lua)[ \t]*$", re.MULTILINE)


def lua_source(name: str) -> str:
    """Return the source of the script ``<family>/<name>``, includes expanded.

    Args:
        name: The script's path below ``kvkit/_resources/lua`` without ``.lua``,
            e.g. ``"queue/push"``.

    Returns:
        The Lua source.
    """
    family, _, _ = name.rpartition("/")
    folder = resources.files("kvkit") / "_resources" / "lua"
    for part in family.split("/"):
        folder = folder / part

    def read(file: str, seen: tuple[str, ...]) -> str:
        if file in seen:
            raise RuntimeError(f"Lua include cycle: {' -> '.join((*seen, file))}")
        text = folder.joinpath(file).read_text(encoding="utf-8")
        return _INCLUDE.sub(lambda m: read(m.group(1), (*seen, file)), text)

    return read(name.rpartition("/")[2] + ".lua", ())


class LuaScript:
    """A Lua script and its SHA1, run with EVALSHA and loaded on demand (NOSCRIPT).

    Args:
        source: The script's Lua source.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    @classmethod
    def load(cls, name: str) -> LuaScript:
        """Load the packaged script ``<family>/<name>`` (see :func:`lua_source`).

        Args:
            name: E.g. ``"queue/push"``.

        Returns:
            The script.
        """
        return cls(lua_source(name))

    def __repr__(self) -> str:
        return f"<LuaScript {self.sha[:12]}>"
