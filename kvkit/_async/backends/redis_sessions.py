"""Session primitives on Redis: one Lua script (or one plain command) per operation.

The session service names the keys and sets the policy (id rules, idle TTL, absolute
deadline: see :mod:`kvkit._async.sessions`); this module decides how a session and a
user's index are stored in Redis.

Storage
-------
With the default prefix ``kvkit`` (``P`` = ``kvkit:session:``)::

    P{TAG}SECRET          hash: one session (the id is TAG + SECRET)
    P{TAG}user:USER_ID    sorted set: the user's index, TAG = tag of USER_ID

The session hash holds ``d:<name>`` → the encoded value of each data item, and metadata
fields ``_t`` (idle TTL in ms, ``0``: none), ``_x`` (absolute deadline, server ms since
the epoch, ``0``: none), ``_i`` (the full key of the owner's index, absent without a
user), ``_c`` (creation, server ms), ``_s`` (last use: the last script that slid the
expiry, server ms) and ``_m`` (the encoded ``meta`` of ``create``, absent without one).
Data fields all start with ``d:`` and metadata with ``_``, so they never collide.
Sessions written before ``_c``/``_s`` existed still read; the first script that slides
one records both (its creation time is then that first use), and ``details`` estimates
them until then (see ``details.lua``).

The index's members are the full session keys, each scored with that session's expiry
(server ms; ``2**53 - 1`` for no expiry). Every script that changes a session's expiry
updates its score in the same step, prunes members whose score has passed, and sets the
index key's own expiry to its highest score, so an index never outlives its sessions and
never grows with dead ones. ``user_sessions`` additionally drops members whose key
vanished some other way (``DEL`` by hand, eviction).

Atomicity
---------
Every operation is one Lua script (or one plain command). Because the tag is in braces,
a session key, its rotated successor and its user's index are always in one hash slot,
so each script touches a single slot and the same scripts run unchanged on Redis
Cluster. (Scripts reach the index and member keys through names stored in the data, not
only through ``KEYS``; Redis Cluster allows that for keys of the script's own slot.)
``update`` is ``HSET``/``HDEL`` of the named fields inside a script that first checks the
session exists, so concurrent updates of different fields all survive and an unknown id
is never created. ``rotate`` is a ``RENAME`` plus the index update in one script: the
old id is invalid the instant the new one is valid. ``delete_user`` deletes every
session of the index and the index in one script, so a concurrent ``create`` for that
user is either deleted too or starts after it. Times come from the server's ``TIME`` so
that every client agrees on expiry regardless of its own clock.
"""

from __future__ import annotations

from typing import Any

from ..._redis_sessions_base import (
    CREATE,
    DELETE,
    DELETE_MEMBERS,
    DETAILS,
    GET,
    MEMBERS,
    REPLACE,
    ROTATE,
    TOUCH,
    UPDATE,
    data_fields,
    field_pairs,
    hash_field,
    records,
)
from ..._sessions_base import SessionRecord
from .base import AsyncSessionDriver
from .redis_runner import AsyncRedisRunner

__all__ = ["AsyncRedisSessionDriver"]


class AsyncRedisSessionDriver(AsyncSessionDriver):
    """Session primitives as Lua scripts run through :meth:`AsyncRedisBackend.run`.

    Every operation is safe to retry after a lost reply (see the notes on ``_CREATE`` and
    ``_ROTATE``), so all of them are run as idempotent.
    """

    def __init__(self, backend: AsyncRedisRunner) -> None:
        self._b = backend

    async def create(
        self,
        key: str,
        fields: dict[str, bytes],
        idle_ms: int | None,
        max_age_ms: int | None,
        index: str | None,
        meta: bytes | None = None,
    ) -> None:
        args: list[Any] = [idle_ms or 0, max_age_ms or 0, index or "", meta or b""]
        args.extend(field_pairs(fields))
        await self._b.eval(CREATE, [key], args, idempotent=True)

    async def get(self, key: str) -> dict[str, bytes] | None:
        flat = await self._b.eval(GET, [key], [], idempotent=True)
        return None if flat is None else data_fields(flat)

    async def replace(self, key: str, fields: dict[str, bytes]) -> bool:
        return bool(await self._b.eval(REPLACE, [key], field_pairs(fields), idempotent=True))

    async def update(
        self, key: str, fields: dict[str, bytes], remove: list[str]
    ) -> dict[str, bytes] | None:
        args: list[Any] = [len(remove), *(hash_field(n) for n in remove)]
        args.extend(field_pairs(fields))
        flat = await self._b.eval(UPDATE, [key], args, idempotent=True)
        return None if flat is None else data_fields(flat)

    async def delete(self, key: str) -> bool:
        return bool(await self._b.eval(DELETE, [key], [], idempotent=True))

    async def touch(self, key: str, idle_ms: int | None, change: bool) -> bool:
        arg = (idle_ms or 0) if change else -1
        return bool(await self._b.eval(TOUCH, [key], [arg], idempotent=True))

    async def rotate(self, old: str, new: str) -> bool:
        return bool(await self._b.eval(ROTATE, [old, new], [], idempotent=True))

    async def pttl(self, key: str) -> int | None:
        value = int(await self._b.run(lambda r: r.pttl(key), idempotent=True))
        return None if value == -2 else value

    async def exists(self, key: str) -> bool:
        return bool(await self._b.run(lambda r: r.exists(key), idempotent=True))

    async def members(self, index: str) -> list[str]:
        keys = await self._b.eval(MEMBERS, [index], [], idempotent=True)
        return [k.decode("utf-8", "replace") for k in keys]

    async def delete_members(self, index: str) -> int:
        return int(await self._b.eval(DELETE_MEMBERS, [index], [], idempotent=True))

    async def details(self, index: str) -> list[SessionRecord]:
        return records(await self._b.eval(DETAILS, [index], [], idempotent=True))
