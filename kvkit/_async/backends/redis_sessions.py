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
the epoch, ``0``: none) and ``_i`` (the full key of the owner's index, absent without a
user). Data fields all start with ``d:`` and metadata with ``_``, so they never collide.

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

from ..._errors import DecodeError
from ..._lua import LuaScript
from .base import AsyncSessionDriver
from .redis_runner import AsyncRedisRunner

__all__ = ["AsyncRedisSessionDriver"]

# Shared Lua helpers, prepended to every script.
_LIB = """
local unpack = unpack or table.unpack
-- Score of a session without expiry; far beyond any ms timestamp, exact as a double.
local FOREVER = 9007199254740991

local function num(n) return string.format('%.0f', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The metadata of a session hash: idle TTL ms, deadline ms, index key (or false).
local function meta(key)
  local m = redis.call('HMGET', key, '_t', '_x', '_i')
  return tonumber(m[1]) or 0, tonumber(m[2]) or 0, m[3]
end

-- Prune an index of members whose expiry has passed and let the index key live exactly
-- as long as its longest-lived member (so it never outlives its sessions).
local function fix_index(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. num(now))
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if #top == 0 then return end
  local at = tonumber(top[2])
  if at >= FOREVER then redis.call('PERSIST', index)
  else redis.call('PEXPIREAT', index, num(at)) end
end

-- Expire the session at min(now + idle, deadline) and file that expiry as its score in
-- its user's index. When the deadline has passed, delete it instead and return false.
local function slide(key, idle, deadline, index, now)
  local at = FOREVER
  if idle > 0 then at = now + idle end
  if deadline > 0 and deadline < at then at = deadline end
  if at <= now then
    redis.call('DEL', key)
    if index then
      redis.call('ZREM', index, key)
      fix_index(index, now)
    end
    return false
  end
  if at >= FOREVER then redis.call('PERSIST', key)
  else redis.call('PEXPIREAT', key, num(at)) end
  if index then
    redis.call('ZADD', index, num(at), key)
    fix_index(index, now)
  end
  return true
end

-- HSET the field/value pairs argv[first..] in batches (Lua's unpack has a stack limit).
local function hset_from(key, argv, first)
  local batch = {}
  for i = first, #argv, 2 do
    batch[#batch + 1] = argv[i]
    batch[#batch + 1] = argv[i + 1]
    if #batch >= 256 then
      redis.call('HSET', key, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('HSET', key, unpack(batch)) end
end

local function hdel_all(key, fields)
  for i = 1, #fields, 256 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 255, #fields)))
  end
end
"""

# KEYS: session. ARGV: idle ms (0: none), max age ms (0: none), index key ('': none),
# then field/value pairs. Replaces whatever is under the (fresh, random) key, so a retry
# after a lost reply just writes the same session again.
_CREATE = LuaScript(
    _LIB
    + """
local key = KEYS[1]
local now = now_ms()
local idle = tonumber(ARGV[1])
local deadline = 0
if tonumber(ARGV[2]) > 0 then deadline = now + tonumber(ARGV[2]) end
local index = ARGV[3]
if index == '' then index = false end
redis.call('DEL', key)
redis.call('HSET', key, '_t', ARGV[1], '_x', num(deadline))
if index then redis.call('HSET', key, '_i', index) end
hset_from(key, ARGV, 4)
slide(key, idle, deadline, index, now)
return 1
"""
)

# KEYS: session. Returns the flat HGETALL (after sliding) or nil.
_GET = LuaScript(
    _LIB
    + """
local key = KEYS[1]
local h = redis.call('HGETALL', key)
if #h == 0 then return false end
local idle, deadline, index = 0, 0, false
for i = 1, #h, 2 do
  local f = h[i]
  if f == '_t' then idle = tonumber(h[i + 1])
  elseif f == '_x' then deadline = tonumber(h[i + 1])
  elseif f == '_i' then index = h[i + 1] end
end
if not slide(key, idle, deadline, index, now_ms()) then return false end
return h
"""
)

# KEYS: session. ARGV: field/value pairs replacing every data field. Returns 1/0.
_REPLACE = LuaScript(
    _LIB
    + """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local idle, deadline, index = meta(key)
if not slide(key, idle, deadline, index, now_ms()) then return 0 end
local old = {}
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, 2) == 'd:' then old[#old + 1] = f end
end
hdel_all(key, old)
hset_from(key, ARGV, 1)
return 1
"""
)

# KEYS: session. ARGV: n, n field names to delete, then field/value pairs to set.
# Returns the flat HGETALL after the change, or nil when the session does not exist
# (checked first: HSET must never create a session).
_UPDATE = LuaScript(
    _LIB
    + """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return false end
local idle, deadline, index = meta(key)
if not slide(key, idle, deadline, index, now_ms()) then return false end
local n = tonumber(ARGV[1])
if n > 0 then
  local names = {}
  for i = 2, n + 1 do names[#names + 1] = ARGV[i] end
  hdel_all(key, names)
end
hset_from(key, ARGV, n + 2)
return redis.call('HGETALL', key)
"""
)

# KEYS: session. Returns how many sessions were deleted (0/1).
_DELETE = LuaScript(
    _LIB
    + """
local key = KEYS[1]
local index = redis.call('HGET', key, '_i')
local n = redis.call('DEL', key)
if index then
  redis.call('ZREM', index, key)
  fix_index(index, now_ms())
end
return n
"""
)

# KEYS: session. ARGV: new idle ms ('-1': keep the stored one; '0': none). Returns 1/0.
_TOUCH = LuaScript(
    _LIB
    + """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local idle, deadline, index = meta(key)
if ARGV[1] ~= '-1' then
  idle = tonumber(ARGV[1])
  redis.call('HSET', key, '_t', ARGV[1])
end
if slide(key, idle, deadline, index, now_ms()) then return 1 end
return 0
"""
)

# KEYS: old session, new session (same slot: same tag). Returns 1 when the session is
# under the new key afterwards. The new key is fresh and random, so finding it already
# there means this very call ran before and its reply was lost: report success again.
_ROTATE = LuaScript(
    _LIB
    + """
local old, new = KEYS[1], KEYS[2]
if redis.call('EXISTS', new) == 1 then return 1 end
if redis.call('EXISTS', old) == 0 then return 0 end
redis.call('RENAME', old, new)
local idle, deadline, index = meta(new)
if index then redis.call('ZREM', index, old) end
if slide(new, idle, deadline, index, now_ms()) then return 1 end
return 0
"""
)

# KEYS: user index. Returns the keys of the live sessions, pruning dead members (expired,
# or deleted behind kvkit's back).
_MEMBERS = LuaScript(
    _LIB
    + """
local index = KEYS[1]
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. num(now))
local live = {}
for _, key in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if redis.call('EXISTS', key) == 1 then live[#live + 1] = key
  else redis.call('ZREM', index, key) end
end
fix_index(index, now)
return live
"""
)

# KEYS: user index. Deletes every session in it and the index; returns how many existed.
_DELETE_MEMBERS = LuaScript(
    _LIB
    + """
local index = KEYS[1]
local n = 0
for _, key in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  n = n + redis.call('DEL', key)
end
redis.call('DEL', index)
return n
"""
)


def _pairs(fields: dict[str, bytes]) -> list[bytes]:
    """Flatten data fields to ``d:<name>``/value pairs (the hash layout)."""
    out: list[bytes] = []
    for name, value in fields.items():
        out.append(b"d:" + name.encode("utf-8"))
        out.append(value)
    return out


def _data(flat: list[bytes]) -> dict[str, bytes]:
    """The data fields of a flat ``HGETALL`` reply (metadata fields skipped)."""
    out: dict[str, bytes] = {}
    items = iter(flat)
    for field, value in zip(items, items, strict=False):  # pairs of one iterator
        if field[:2] == b"d:":
            try:
                out[field[2:].decode("utf-8")] = value
            except UnicodeDecodeError as exc:
                # No key in the message: it contains the session id, a bearer secret (the
                # service adds the id's hash).
                raise DecodeError("a field name of the session is not UTF-8") from exc
    return out


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
    ) -> None:
        args: list[Any] = [idle_ms or 0, max_age_ms or 0, index or "", *_pairs(fields)]
        await self._b.eval(_CREATE, [key], args, idempotent=True)

    async def get(self, key: str) -> dict[str, bytes] | None:
        flat = await self._b.eval(_GET, [key], [], idempotent=True)
        return None if flat is None else _data(flat)

    async def replace(self, key: str, fields: dict[str, bytes]) -> bool:
        return bool(await self._b.eval(_REPLACE, [key], _pairs(fields), idempotent=True))

    async def update(
        self, key: str, fields: dict[str, bytes], remove: list[str]
    ) -> dict[str, bytes] | None:
        args: list[Any] = [len(remove), *(b"d:" + n.encode("utf-8") for n in remove)]
        args.extend(_pairs(fields))
        flat = await self._b.eval(_UPDATE, [key], args, idempotent=True)
        return None if flat is None else _data(flat)

    async def delete(self, key: str) -> bool:
        return bool(await self._b.eval(_DELETE, [key], [], idempotent=True))

    async def touch(self, key: str, idle_ms: int | None, change: bool) -> bool:
        arg = (idle_ms or 0) if change else -1
        return bool(await self._b.eval(_TOUCH, [key], [arg], idempotent=True))

    async def rotate(self, old: str, new: str) -> bool:
        return bool(await self._b.eval(_ROTATE, [old, new], [], idempotent=True))

    async def pttl(self, key: str) -> int | None:
        value = int(await self._b.run(lambda r: r.pttl(key), idempotent=True))
        return None if value == -2 else value

    async def exists(self, key: str) -> bool:
        return bool(await self._b.run(lambda r: r.exists(key), idempotent=True))

    async def members(self, index: str) -> list[str]:
        keys = await self._b.eval(_MEMBERS, [index], [], idempotent=True)
        return [k.decode("utf-8", "replace") for k in keys]

    async def delete_members(self, index: str) -> int:
        return int(await self._b.eval(_DELETE_MEMBERS, [index], [], idempotent=True))
