"""The Cache protocol on every backend (memory, fakeredis, real Redis)."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pytest

import kvkit
from kvkit._compat import asleep
from tests.backends import settings_for

VALUES = [
    None,
    True,
    0,
    -12,
    2**70,
    1.5,
    "",
    "héllo ✓",
    [1, "a", None],
    {"a": {"b": [1, 2]}},
    (1, 2, (3,)),
    {1, 2, 3},
    frozenset({"x"}),
    b"\x00\xffbytes",
    dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 5, 1, 12, 30),
    dt.date(2024, 5, 1),
    dt.time(23, 59, 1),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.14159265358979323846"),
    {"__kvkit__": "not a tag", "v": 1},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
async def test_set_get_round_trip(cache, value):
    """Every supported value comes back equal and of the same type."""
    await cache.set("k", value)
    got = await cache.get("k")
    assert got == value
    assert type(got) is type(value)


async def test_get_missing_returns_default(cache):
    """A missing key gives the default (None unless given)."""
    assert await cache.get("missing") is None
    assert await cache.get("missing", 42) == 42


async def test_set_overwrites(cache):
    """A second set replaces the value."""
    await cache.set("k", 1)
    await cache.set("k", 2)
    assert await cache.get("k") == 2


async def test_add_only_when_absent(cache):
    """add() stores only when the key is absent."""
    assert await cache.add("k", "first") is True
    assert await cache.add("k", "second") is False
    assert await cache.get("k") == "first"


async def test_delete_and_exists(cache):
    """delete() reports whether the key existed; exists() follows."""
    assert await cache.exists("k") is False
    await cache.set("k", 0)
    assert await cache.exists("k") is True
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.exists("k") is False


async def test_get_many_returns_only_existing(cache):
    """get_many() returns a dict of the keys that exist."""
    await cache.set_many({"a": 1, "b": [2], "c": None})
    assert await cache.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": [2], "c": None}
    assert await cache.get_many([]) == {}


async def test_set_many_applies_ttl_to_every_key(cache):
    """set_many() gives each key the TTL."""
    await cache.set_many({"a": 1, "b": 2}, ttl=30)
    for key in ("a", "b"):
        remaining = await cache.ttl(key)
        assert remaining is not None and 25 < remaining <= 30


async def test_delete_many_counts(cache):
    """delete_many() returns how many keys existed."""
    await cache.set_many({"a": 1, "b": 2})
    assert await cache.delete_many(["a", "b", "c"]) == 2
    assert await cache.delete_many([]) == 0
    assert await cache.get_many(["a", "b"]) == {}


async def test_incr_creates_and_adds(cache):
    """incr() starts at 0, adds delta, and returns the new value."""
    assert await cache.incr("n") == 1
    assert await cache.incr("n", 10) == 11
    assert await cache.incr("n", -20) == -9
    assert await cache.get("n") == -9


async def test_incr_ttl_only_on_create(cache):
    """The TTL of incr() applies when the key is created; later calls keep it."""
    await cache.incr("n", ttl=30)
    first = await cache.ttl("n")
    assert first is not None and first <= 30
    await cache.incr("n", ttl=1000)
    second = await cache.ttl("n")
    assert second is not None and second <= 30


async def test_incr_on_non_integer_is_invalid_argument(cache):
    """incr() on a non-integer value raises InvalidArgument and leaves the value."""
    await cache.set("s", "text")
    with pytest.raises(kvkit.InvalidArgument):
        await cache.incr("s")
    assert await cache.get("s") == "text"


async def test_incr_rejects_non_int_delta(cache):
    """The delta must be an int."""
    with pytest.raises(kvkit.InvalidArgument):
        await cache.incr("n", 1.5)
    with pytest.raises(kvkit.InvalidArgument):
        await cache.incr("n", True)


async def test_ttl_default_and_forever(cache):
    """ttl() is the default TTL after set, math.inf for FOREVER, None when missing."""
    await cache.set("d", 1)
    remaining = await cache.ttl("d")
    assert remaining is not None and 3590 < remaining <= 3600
    await cache.set("f", 1, ttl=kvkit.FOREVER)
    assert await cache.ttl("f") == math.inf
    assert await cache.ttl("missing") is None


@pytest.mark.parametrize(
    ("ttl", "low", "high"),
    [
        (dt.timedelta(minutes=2), 110, 120),
        ("temp", 290, 300),
        ("long", 604790, 604800),
        ("default", 3590, 3600),
        (0.5, 0.1, 0.5),
    ],
)
async def test_ttl_forms(cache, ttl, low, high):
    """timedelta, presets and sub-second floats resolve to the expected TTL."""
    await cache.set("k", 1, ttl=ttl)
    remaining = await cache.ttl("k")
    assert remaining is not None and low < remaining <= high


async def test_sub_second_ttl_expires(cache):
    """A 0.2 s TTL is honoured (PX on Redis)."""
    await cache.set("k", 1, ttl=0.2)
    assert await cache.get("k") == 1
    await asleep(0.35)
    assert await cache.get("k") is None
    assert await cache.exists("k") is False


async def test_touch_sets_new_ttl(cache):
    """touch() renews the TTL; FOREVER removes it; a missing key gives False."""
    await cache.set("k", 1, ttl=0.3)
    assert await cache.touch("k", ttl=60) is True
    await asleep(0.4)
    assert await cache.get("k") == 1
    assert await cache.touch("k", ttl=kvkit.FOREVER) is True
    assert await cache.ttl("k") == math.inf
    assert await cache.touch("missing") is False


@pytest.mark.parametrize(
    "bad", [0, -1, float("nan"), float("inf"), "soon", [], True, dt.timedelta(0)]
)
async def test_bad_ttl_is_invalid_argument(cache, bad):
    """Bad TTLs raise InvalidArgument and write nothing."""
    with pytest.raises(kvkit.InvalidArgument):
        await cache.set("k", 1, ttl=bad)
    assert await cache.exists("k") is False


@pytest.mark.parametrize("bad", ["", None, 5, b"bytes", "x" * 1025, "é" * 513])
async def test_bad_key_is_invalid_argument(cache, bad):
    """Empty, non-str and over-long keys raise InvalidArgument."""
    with pytest.raises(kvkit.InvalidArgument):
        await cache.set(bad, 1)
    with pytest.raises(kvkit.InvalidArgument):
        await cache.get(bad)
    with pytest.raises(kvkit.InvalidArgument):
        await cache.get_many(["ok", bad])


async def test_longest_key_is_accepted(cache):
    """A key of exactly 1024 UTF-8 bytes is valid (prefix not counted)."""
    key = "é" * 512
    await cache.set(key, 1)
    assert await cache.get(key) == 1


async def test_unserializable_value_writes_nothing(cache):
    """An unencodable value raises SerializationError naming key and type; nothing written."""
    with pytest.raises(kvkit.SerializationError) as info:
        await cache.set("k", object())
    assert "'k'" in str(info.value) and "object" in str(info.value)
    assert isinstance(info.value, TypeError)
    assert await cache.exists("k") is False
    with pytest.raises(kvkit.SerializationError):
        await cache.set_many({"good": 1, "bad": object()})
    assert await cache.exists("good") is False


async def test_clear_only_touches_own_namespace(client):
    """clear() deletes this cache's keys only; namespaces clear inside themselves."""
    cache = client.cache
    users = cache.namespace("users")
    await cache.set("a", 1)
    await users.set("a", 2)
    assert await cache.get("a") == 1
    assert await users.get("a") == 2
    assert await users.clear() == 1
    assert await cache.get("a") == 1
    assert await users.get("a") is None
    await users.set("b", 3)
    assert await cache.clear() == 2
    assert await users.get("b") is None


async def test_clear_does_not_touch_other_prefixes(request, backend):
    """Two clients with different prefixes on one store do not clear each other."""
    if backend == "memory":
        settings_a = kvkit.Settings(url="memory://clear-iso", prefix="appa")
        settings_b = kvkit.Settings(url="memory://clear-iso", prefix="appb")
    else:
        base = settings_for(request, backend)
        # A server is shared by URL; fakeredis:// without a name is private to its client.
        url = "fakeredis://clear-iso" if backend == "fakeredis" else base.url
        settings_a = kvkit.Settings(url=url, prefix=base.prefix + "a")
        settings_b = kvkit.Settings(url=url, prefix=base.prefix + "b")
    async with (
        kvkit.AsyncClient(settings=settings_a) as a,
        kvkit.AsyncClient(settings=settings_b) as b,
    ):
        await a.cache.set("k", "a")
        await b.cache.set("k", "b")
        await a.cache.clear()
        assert await b.cache.get("k") == "b"
        await b.cache.clear()


async def test_namespace_keys_are_isolated(cache):
    """Same key in two namespaces holds two values."""
    one, two = cache.namespace("one"), cache.namespace("two")
    await one.set("k", 1)
    await two.set("k", 2)
    assert (await one.get("k"), await two.get("k")) == (1, 2)
    assert await cache.get("k") is None


async def test_stats_count_operations(cache):
    """The stats count hits, misses, sets and deletes."""
    cache.stats.reset()
    await cache.get("k")
    await cache.set("k", 1)
    await cache.get("k")
    await cache.delete("k")
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.sets, stats.deletes, stats.errors) == (1, 1, 1, 1, 0)
    assert stats.hit_rate == 0.5
    assert stats.to_dict()["hits"] == 1


async def test_get_or_set_computes_once_then_hits(cache):
    """get_or_set() runs the factory on a miss only."""
    calls = []

    def factory():
        calls.append(1)
        return {"computed": len(calls)}

    assert await cache.get_or_set("k", factory) == {"computed": 1}
    assert await cache.get_or_set("k", factory) == {"computed": 1}
    assert len(calls) == 1


async def test_get_or_set_factory_error_releases_lock(cache):
    """A failing factory propagates, stores nothing and lets the next caller compute."""

    def boom():
        raise RuntimeError("factory failed")

    with pytest.raises(RuntimeError):
        await cache.get_or_set("k", boom, lock_timeout=5)
    assert await cache.get_or_set("k", lambda: "ok", lock_timeout=5) == "ok"


async def test_get_or_set_unserializable_result(cache):
    """A factory result that cannot be encoded raises SerializationError, stores nothing."""
    with pytest.raises(kvkit.SerializationError):
        await cache.get_or_set("k", object)
    assert await cache.exists("k") is False
    assert await cache.get_or_set("k", lambda: 1) == 1


async def test_get_or_set_takes_over_dead_lock(cache):
    """A lock left by a dead holder is taken over after lock_timeout."""
    lock_key = "__dead__"
    # Simulate another process holding the lock and dying: plant the lock by hand.
    driver = cache._driver
    await driver.add(cache._lock_prefix + cache.prefix + lock_key, b"other-owner", 300)
    assert await cache.get_or_set(lock_key, lambda: "mine", lock_timeout=1) == "mine"


async def test_cached_decorator_memoizes_by_arguments(cache):
    """cached() keys results by function and arguments; invalidate() drops one."""
    calls = []

    @cache.cached(ttl=60)
    def square(x, power=2):
        calls.append(x)
        return x**power

    assert await square(3) == 9
    assert await square(3) == 9
    assert await square(3, power=3) == 27
    assert calls == [3, 3]
    assert await square.invalidate(3) is True
    assert await square(3) == 9
    assert calls == [3, 3, 3]


async def test_cached_decorator_key_template(cache):
    """A key template is filled from the bound arguments."""

    @cache.cached(key="user:{user_id}")
    def load(user_id, verbose=False):
        return {"id": user_id}

    assert await load(7) == {"id": 7}
    assert await cache.get("user:7") == {"id": 7}
    assert load.cache_key(7) == "user:7"


async def test_cached_rejects_bad_ttl_at_decoration(cache):
    """A bad TTL fails when decorating, not on first call."""
    with pytest.raises(kvkit.InvalidArgument):
        cache.cached(ttl=-1)


async def test_decode_error_on_garbage(cache):
    """Bytes that are not kvkit JSON raise DecodeError naming the key."""
    import pickle

    await cache._driver.set(cache.prefix + "bad", pickle.dumps({"x": 1}), None)
    with pytest.raises(kvkit.DecodeError) as info:
        await cache.get("bad")
    assert "'bad'" in str(info.value)


async def test_cache_satisfies_protocol(client):
    """client.cache implements the public protocol."""
    assert isinstance(client.cache, kvkit.AsyncCache)


async def test_health_and_ping(client):
    """health() passes on a live backend and ping() reports every role."""
    health = await client.health()
    assert health.status == "pass", health
    assert [c.role for c in health.checks] == ["cache", "sessions", "queues"]
    assert all(c.latency_ms is not None for c in health.checks)
    latencies = await client.ping()
    assert set(latencies) == {"cache", "sessions", "queues"}
    assert all(v >= 0 for v in latencies.values())
