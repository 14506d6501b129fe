"""A third-party backend built on the public extension point (kvkit.backends) only.

``dictkv://`` stores everything in a plain dict per URL host: its backend and drivers
subclass the public base classes, its scheme is registered with
``kvkit.backends.register_scheme``, and both ``kvkit.Client`` and ``kvkit.AsyncClient``
use it through the ordinary API. Only the fixture reaches into kvkit (to unregister
the scheme after each test: the public registry has no way to remove one).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

import pytest

import kvkit
from kvkit import backends

_INT64 = 2**63


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _until(ttl_ms: int | None) -> int | None:
    return None if ttl_ms is None else _now_ms() + ttl_ms


def _epoch_ms() -> int:
    return int(time.time() * 1000)


def _left(deadline: int | None) -> int:
    return -1 if deadline is None else max(deadline - _now_ms(), 0)


class Store:
    """What a third party's client library would be: a dict server, no I/O, one per host."""

    servers: dict[str, Store] = {}

    def __init__(self) -> None:
        self.cache: dict[str, tuple[bytes, int | None]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.indexes: dict[str, set[str]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.receipts = itertools.count(1)

    # -- cache ----------------------------------------------------------------------------------
    def live(self, key: str) -> tuple[bytes, int | None] | None:
        entry = self.cache.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= _now_ms():
            del self.cache[key]
            return None
        return entry

    # -- sessions -------------------------------------------------------------------------------
    def session(self, key: str) -> dict[str, Any] | None:
        entry = self.sessions.get(key)
        if entry is not None and entry["expires"] is not None and entry["expires"] <= _now_ms():
            del self.sessions[key]
            return None
        return entry

    @staticmethod
    def slide(entry: dict[str, Any]) -> None:
        ends = [t for t in (_until(entry["idle"]), entry["deadline"]) if t is not None]
        entry["expires"] = min(ends) if ends else None
        entry["seen"] = _epoch_ms()

    def queue(self, key: str) -> dict[str, Any]:
        return self.queues.setdefault(key, {"ready": deque(), "leased": {}, "dead": []})


class DictCacheDriver(backends.CacheDriver):
    """Cache primitives on a Store."""

    def __init__(self, store: Store) -> None:
        self.s = store

    def get(self, key: str) -> bytes | None:
        entry = self.s.live(key)
        return None if entry is None else entry[0]

    def set(self, key: str, value: bytes, ttl_ms: int | None) -> None:
        self.s.cache[key] = (value, _until(ttl_ms))

    def add(self, key: str, value: bytes, ttl_ms: int | None) -> bool:
        if self.s.live(key) is not None:
            return False
        self.set(key, value, ttl_ms)
        return True

    def delete(self, key: str) -> bool:
        return self.s.live(key) is not None and self.s.cache.pop(key) is not None

    def exists(self, key: str) -> bool:
        return self.s.live(key) is not None

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set_many(self, items: list[tuple[str, bytes]], ttl_ms: int | None) -> None:
        for key, value in items:
            self.set(key, value, ttl_ms)

    def delete_many(self, keys: list[str]) -> int:
        return sum(self.delete(key) for key in keys)

    def incr(self, key: str, delta: int, ttl_ms: int | None) -> int:
        entry = self.s.live(key)
        try:
            value = 0 if entry is None else int(entry[0])
        except ValueError:
            raise backends.IncrRefused(overflow=False) from None
        if not -_INT64 <= value + delta < _INT64:
            raise backends.IncrRefused(overflow=True)
        deadline = _until(ttl_ms) if entry is None else entry[1]
        self.s.cache[key] = (str(value + delta).encode(), deadline)
        return value + delta

    def pttl(self, key: str) -> int | None:
        entry = self.s.live(key)
        return None if entry is None else _left(entry[1])

    def expire(self, key: str, ttl_ms: int | None) -> bool:
        entry = self.s.live(key)
        if entry is not None:
            self.s.cache[key] = (entry[0], _until(ttl_ms))
        return entry is not None

    def clear(self, prefix: str) -> int:
        return self.delete_many([key for key in list(self.s.cache) if key.startswith(prefix)])

    def delete_if_equal(self, key: str, value: bytes) -> bool:
        return self.get(key) == value and self.delete(key)


class DictSessionDriver(backends.SessionDriver):
    """Session primitives on a Store: expiry is min(now + idle, deadline), slid on use."""

    def __init__(self, store: Store) -> None:
        self.s = store

    def create(self, key, fields, idle_ms, max_age_ms, index, meta=None) -> None:
        entry = {"fields": dict(fields), "idle": idle_ms, "deadline": _until(max_age_ms)}
        entry.update(index=index, meta=meta, created=_epoch_ms())
        self.s.slide(entry)
        self.s.sessions[key] = entry
        if index is not None:
            self.s.indexes.setdefault(index, set()).add(key)

    def _used(self, key: str) -> dict[str, Any] | None:
        entry = self.s.session(key)
        if entry is not None:
            self.s.slide(entry)
        return entry

    def get(self, key: str) -> dict[str, bytes] | None:
        entry = self._used(key)
        return None if entry is None else dict(entry["fields"])

    def replace(self, key: str, fields: dict[str, bytes]) -> bool:
        entry = self._used(key)
        if entry is not None:
            entry["fields"] = dict(fields)
        return entry is not None

    def update(self, key, fields, remove) -> dict[str, bytes] | None:
        entry = self._used(key)
        if entry is None:
            return None
        for name in remove:
            entry["fields"].pop(name, None)
        entry["fields"].update(fields)
        return dict(entry["fields"])

    def delete(self, key: str) -> bool:
        entry = self.s.session(key)
        if entry is None:
            return False
        del self.s.sessions[key]
        self.s.indexes.get(entry["index"], set()).discard(key)
        return True

    def touch(self, key: str, idle_ms: int | None, change: bool) -> bool:
        entry = self.s.session(key)
        if entry is not None:
            if change:
                entry["idle"] = idle_ms
            self.s.slide(entry)
        return entry is not None

    def rotate(self, old: str, new: str) -> bool:
        entry = self.s.session(old)
        if entry is None:
            return False
        self.s.sessions[new] = self.s.sessions.pop(old)
        index = self.s.indexes.get(entry["index"], set())
        index.discard(old)
        if entry["index"] is not None:
            index.add(new)
        self.s.slide(entry)
        return True

    def pttl(self, key: str) -> int | None:
        entry = self.s.session(key)
        return None if entry is None else _left(entry["expires"])

    def exists(self, key: str) -> bool:
        return self.s.session(key) is not None

    def members(self, index: str) -> list[str]:
        keys = self.s.indexes.get(index, set())
        keys.intersection_update(k for k in list(keys) if self.s.session(k) is not None)
        return sorted(keys)

    def delete_members(self, index: str) -> int:
        return sum(self.delete(key) for key in self.members(index))

    def details(self, index: str) -> list[backends.SessionRecord]:
        return [
            backends.SessionRecord(key, entry["created"], entry["seen"], entry["meta"])
            for key in self.members(index)
            if (entry := self.s.sessions[key])
        ]


class DictQueueDriver(backends.QueueDriver):
    """Queue primitives on a Store: a deque of ready messages and a dict of leases."""

    def __init__(self, store: Store) -> None:
        self.s = store

    def push(self, key, items, delay_ms, dedupe, dedupe_ms, maxlen) -> str | None:
        if delay_ms:
            raise NotImplementedError("dictkv:// has no delayed messages")
        ready = self.s.queue(key)["ready"]
        ready.extend((id, payload, int(time.time() * 1000), 0) for id, payload in items)
        while maxlen is not None and len(ready) > maxlen:
            ready.popleft()
        return None

    def pop(self, key, group, consumer, count, visibility_ms, max_deliveries, maxlen, timeout):
        queue, out = self.s.queue(key), []
        for receipt, (message, until) in list(queue["leased"].items()):  # expired leases first
            if len(out) < count and until <= _now_ms():
                del queue["leased"][receipt]
                queue["ready"].appendleft(message)
        while queue["ready"] and len(out) < count:
            id, payload, enqueued, deliveries = queue["ready"].popleft()
            message, receipt = (id, payload, enqueued, deliveries + 1), str(next(self.s.receipts))
            queue["leased"][receipt] = (message, _now_ms() + visibility_ms)
            out.append(backends.RawMessage(receipt, id, payload, enqueued, deliveries + 1))
        return out

    def ack(self, key, group, items) -> int:
        leased, acked = self.s.queue(key)["leased"], 0
        for id, receipt in items:
            for held in [r for r, (m, _) in leased.items() if m[0] == id and receipt in (None, r)]:
                del leased[held]
                acked += 1
        return acked

    def stats(self, key, group, consumer_idle_ms, maxlen):
        queue = self.s.queue(key)
        return (len(queue["ready"]), len(queue["leased"]), 0, len(queue["dead"]), 0, None)

    def purge(self, key: str, group: str, dead: bool) -> int:
        queue = self.s.queue(key)
        count = len(queue["ready"]) + len(queue["leased"]) + (len(queue["dead"]) if dead else 0)
        queue["ready"].clear()
        queue["leased"].clear()
        if dead:
            queue["dead"].clear()
        return count

    def gc(self, key: str, group: str, consumer_idle_ms: int) -> None:
        return None

    def expire(self, key: str, ttl_ms: int, message_ids: list[str]) -> None:
        return None  # an in-process store: its queues end with the process

    # Not needed by this test: a real backend implements them (see the conformance suite).
    def nack(self, key, group, **kwargs) -> int:
        raise NotImplementedError

    def extend(self, key, group, id, receipt, lease, idle_ms) -> bool:
        raise NotImplementedError

    def dead_letter(self, key, group, receipt, reason) -> bool:
        raise NotImplementedError

    def dead_letters(self, key, count):
        raise NotImplementedError

    def requeue_dead(self, key, ids, maxlen) -> int:
        raise NotImplementedError


class DictBackend(backends.Backend):
    """``dictkv://NAME``: one Store per name, shared by every client in the process."""

    kind = "dictkv"

    def __init__(self, url: backends.ParsedURL, settings: kvkit.Settings) -> None:
        super().__init__(url, settings)
        self.store = Store.servers.setdefault(url.host, Store())

    def ping(self) -> None:
        return None

    def server_version(self) -> str | None:
        return "dictkv 1.0"

    def cache_driver(self) -> backends.CacheDriver:
        return DictCacheDriver(self.store)

    def session_driver(self) -> backends.SessionDriver:
        return DictSessionDriver(self.store)

    def queue_driver(self) -> backends.QueueDriver:
        return DictQueueDriver(self.store)

    def close(self) -> None:
        return None


def _async_twin(sync_class: type, async_base: type) -> type:
    """An ``async_base`` subclass whose coroutines run ``sync_class``'s methods.

    The store does no I/O, so the async drivers only wrap the sync ones (a backend that
    talks to a server would write the async code and derive the sync one instead).
    """

    def wrap(name: str) -> Any:
        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.sync, name)(*args, **kwargs)

        method.__name__ = name
        return method

    def init(self: Any, *args: Any) -> None:
        self.sync = sync_class(*args)

    namespace: dict[str, Any] = {"__init__": init}
    namespace.update({name: wrap(name) for name in async_base.__abstractmethods__})
    return type("Async" + sync_class.__name__, (async_base,), namespace)


AsyncDictCacheDriver = _async_twin(DictCacheDriver, backends.AsyncCacheDriver)
AsyncDictSessionDriver = _async_twin(DictSessionDriver, backends.AsyncSessionDriver)
AsyncDictQueueDriver = _async_twin(DictQueueDriver, backends.AsyncQueueDriver)


class AsyncDictBackend(backends.AsyncBackend):
    """The async ``dictkv://`` backend: the same Store as the sync one."""

    kind = "dictkv"

    def __init__(self, url: backends.ParsedURL, settings: kvkit.Settings) -> None:
        super().__init__(url, settings)
        self.store = Store.servers.setdefault(url.host, Store())

    async def ping(self) -> None:
        return None

    async def server_version(self) -> str | None:
        return "dictkv 1.0"

    def cache_driver(self) -> backends.AsyncCacheDriver:
        return AsyncDictCacheDriver(self.store)

    def session_driver(self) -> backends.AsyncSessionDriver:
        return AsyncDictSessionDriver(self.store)

    def queue_driver(self) -> backends.AsyncQueueDriver:
        return AsyncDictQueueDriver(self.store)

    async def aclose(self) -> None:
        return None


def _label(name: str, raw: str) -> str:
    if not raw.isidentifier():
        raise kvkit.ConfigError(f"option {name!r} must be an identifier")
    return raw


@pytest.fixture
def dictkv():
    """Register dictkv:// for one test (by class, not by 'module:attr'); remove it after."""
    spec = backends.SchemeSpec(
        scheme="dictkv",
        family="custom",
        options={"label": _label},
        sync_factory=DictBackend,
        async_factory=AsyncDictBackend,
        description="dictkv://NAME — a dict per NAME (test backend)",
    )
    backends.register_scheme(spec)
    yield spec
    from kvkit import _urls  # the registry has no public unregister: tidy up by hand

    _urls._REGISTRY.pop("dictkv", None)
    Store.servers.clear()


def test_sync_client_on_a_third_party_backend(dictkv):
    """kvkit.Client runs the cache, sessions and a queue on dictkv:// drivers."""
    assert "dictkv" in backends.schemes()
    with kvkit.Client("dictkv://one?label=web") as client:
        backend = client.backend()
        assert isinstance(backend, DictBackend) and backend.url.options == {"label": "web"}
        cache = client.cache
        cache.set("user", {"name": "Ada"}, ttl=60)
        assert cache.get("user") == {"name": "Ada"}
        assert 0 < cache.ttl("user") <= 60
        assert cache.incr("hits", 2) == 2 and cache.incr("hits") == 3
        with pytest.raises(kvkit.InvalidArgument):
            cache.incr("user")
        assert cache.get_many(["user", "hits", "nope"]) == {"user": {"name": "Ada"}, "hits": 3}
        assert cache.get_or_set("report", lambda: [1, 2]) == [1, 2]
        sid = client.sessions.create({"cart": []}, user_id="ada", meta={"device": "phone"})
        assert client.sessions.update(sid, {"cart": ["book"]}) == {"cart": ["book"]}
        new_sid = client.sessions.rotate(sid)
        assert client.sessions.user_sessions("ada") == [new_sid]
        (info,) = client.sessions.user_sessions("ada", details=True)
        assert info.meta == {"device": "phone"} and info.created <= info.last_seen
        assert client.sessions.get(sid) is None
        queue = client.queue("emails")
        ids = queue.push_many(["a", "b"])
        message = queue.pop()
        assert (message.id, message.payload, message.deliveries) == (ids[0], "a", 1)
        assert queue.ack(message) == 1
        assert (queue.stats().ready, queue.stats().pending) == (1, 0)
        health = client.health()
        assert health.status == "pass"
        assert {c.backend for c in health.checks} == {"dictkv"}
        assert cache.clear() == 3


async def test_async_client_shares_the_third_party_store(dictkv):
    """kvkit.AsyncClient runs on the async drivers and sees what the sync client wrote."""
    with kvkit.Client("dictkv://shared") as sync_client:
        sync_client.cache.set("k", {"from": "sync"})
        sid = sync_client.sessions.create({"n": 1})
        sync_client.queue("jobs").push({"job": 1})
    async with kvkit.AsyncClient("dictkv://shared") as client:
        assert isinstance(client.backend(), AsyncDictBackend)
        assert await client.cache.get("k") == {"from": "sync"}
        assert await client.cache.add("k", 2) is False
        assert await client.sessions.get(sid) == {"n": 1}
        assert await client.sessions.delete(sid) is True
        message = await client.queue("jobs").pop()
        assert message.payload == {"job": 1}
        assert await client.queue("jobs").ack(message) == 1
        assert (await client.health()).status == "pass"
        assert await client.cache.clear() == 1


def test_a_third_party_option_is_validated_by_its_converter(dictkv):
    """The scheme's options and converters apply: unknown or bad options fail up front."""
    with pytest.raises(kvkit.ConfigError, match="must be an identifier"):
        kvkit.Client("dictkv://one?label=not%20one")
    with pytest.raises(kvkit.ConfigError, match="supported options: label"):
        kvkit.AsyncClient("dictkv://one?colour=red")


def test_a_factory_of_the_wrong_flavour_is_a_config_error(dictkv):
    """A scheme whose async factory builds a sync backend fails when the client is built."""
    import attrs

    backends.register_scheme(attrs.evolve(dictkv, async_factory=DictBackend))
    with pytest.raises(kvkit.ConfigError, match="not a kvkit.backends.AsyncBackend"):
        kvkit.AsyncClient("dictkv://one")
    backends.register_scheme(attrs.evolve(dictkv, sync_factory=AsyncDictBackend))
    with pytest.raises(kvkit.ConfigError, match="not a kvkit.backends.Backend"):
        kvkit.Client("dictkv://one")


def test_an_incomplete_backend_fails_at_construction():
    """A driver missing a contract method cannot even be instantiated (abstract class)."""

    class Partial(backends.CacheDriver):
        def get(self, key: str) -> bytes | None:
            return None

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]
