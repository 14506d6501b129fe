"""The RedisService API (the original system's eight methods) on every backend."""

from __future__ import annotations

import datetime as dt
import math
import time
import traceback
import uuid
from decimal import Decimal

import pytest

import kvkit
from kvkit._compat import asleep
from kvkit._idhash import id_hash
from tests.backends import settings_for

RICH = {
    "user": "alice",
    "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "price": Decimal("1.10"),
    "nested": {"list": [1, 2, {"deep": None}], "ok": True},
}
# Shaped like an id issued by client.sessions (47 URL-safe characters) but never issued.
FORGED_ID = "A" * 47


@pytest.fixture
async def short_client(request, backend):
    """A client whose default cache and session TTLs are 0.3 s."""
    settings = settings_for(request, backend, cache_ttl=0.3, session_ttl=0.3)
    async with kvkit.AsyncClient(settings=settings) as c:
        yield c


async def test_client_implements_protocol(client):
    """AsyncClient is an AsyncRedisService."""
    assert isinstance(client, kvkit.AsyncRedisService)


# -- cache ----------------------------------------------------------------------------------------
async def test_cache_set_get_delete(client):
    """cache_set stores, cache_get reads, cache_delete deletes and reports existence."""
    assert await client.cache_set("k", {"a": [1, 2]}) is True
    assert await client.cache_get("k") == {"a": [1, 2]}
    assert await client.cache_delete("k") is True
    assert await client.cache_delete("k") is False
    assert await client.cache_get("k") is None


async def test_cache_methods_share_the_cache(client):
    """The legacy methods and client.cache see the same keys."""
    await client.cache_set("shared", 1)
    assert await client.cache.get("shared") == 1
    await client.cache.set("other", "x")
    assert await client.cache_get("other") == "x"


async def test_cache_set_overwrites_and_round_trips_rich_values(client):
    """A second cache_set replaces the value; tagged types round-trip."""
    await client.cache_set("k", 1)
    await client.cache_set("k", RICH)
    assert await client.cache_get("k") == RICH


async def test_cache_set_default_expire_is_cache_ttl(client):
    """Without expire the value gets Settings.cache_ttl."""
    await client.cache_set("k", 1)
    remaining = await client.cache.ttl("k")
    assert remaining is not None
    assert client.settings.cache_ttl - 5 < remaining <= client.settings.cache_ttl


async def test_cache_set_expire_forms(client):
    """expire takes every TTL form: seconds, timedelta, presets, FOREVER."""
    await client.cache_set("secs", 1, expire=100)
    await client.cache_set("delta", 1, expire=dt.timedelta(minutes=2))
    await client.cache_set("temp", 1, expire="temp")
    await client.cache_set("forever", 1, expire=kvkit.FOREVER)
    assert 95 < (await client.cache.ttl("secs")) <= 100
    assert 115 < (await client.cache.ttl("delta")) <= 120
    assert (await client.cache.ttl("temp")) <= client.settings.temp_ttl
    assert await client.cache.ttl("forever") == math.inf


async def test_cache_set_expire_is_honoured(client):
    """A sub-second expire makes the value vanish."""
    await client.cache_set("k", 1, expire=0.2)
    assert await client.cache_get("k") == 1
    await asleep(0.4)
    assert await client.cache_get("k") is None


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "weird", [1]])
async def test_cache_set_bad_expire_writes_nothing(client, bad):
    """An invalid expire raises InvalidArgument and writes nothing."""
    with pytest.raises(kvkit.InvalidArgument):
        await client.cache_set("k", 1, expire=bad)
    assert await client.cache_get("k") is None


async def test_cache_bad_input(client):
    """Bad keys raise InvalidArgument; unencodable values raise SerializationError."""
    with pytest.raises(kvkit.InvalidArgument):
        await client.cache_set("", 1)
    with pytest.raises(kvkit.InvalidArgument):
        await client.cache_get(123)  # type: ignore[arg-type]
    with pytest.raises(kvkit.InvalidArgument):
        await client.cache_delete(None)  # type: ignore[arg-type]
    with pytest.raises(kvkit.SerializationError):
        await client.cache_set("k", object())
    assert await client.cache_get("k") is None


@pytest.mark.redis
async def test_cache_set_returns_false_when_fail_open_drops_the_write(fresh_redis_server):
    """cache_fail_open: a write dropped because the server is down returns False."""
    settings = kvkit.Settings(
        url=fresh_redis_server.url, cache_fail_open=True, retries=0, socket_timeout=2
    )
    async with kvkit.AsyncClient(settings=settings) as c:
        assert await c.cache_set("k", 1) is True
        fresh_redis_server.stop()
        assert await c.cache_set("k", 2) is False
        assert await c.cache_get("k") is None  # a failed-open read: a miss
        assert c.cache.stats.errors == 2


# -- sessions -------------------------------------------------------------------------------------
async def test_session_set_upserts_under_callers_id(client):
    """session_set creates, then replaces, the session under the caller's id."""
    assert await client.session_set("sess-1", {"user_id": 1}) is True
    assert await client.session_get("sess-1") == {"user_id": 1}
    assert await client.session_set("sess-1", {"user_id": 2, "cart": [1]}) is True
    assert await client.session_get("sess-1") == {"user_id": 2, "cart": [1]}


async def test_session_get_unknown_is_none(client):
    """An id never set reads as None."""
    assert await client.session_get("nobody") is None
    assert await client.session_get(FORGED_ID) is None


async def test_session_delete(client):
    """session_delete removes the session and reports whether it existed."""
    await client.session_set("sess-1", {"a": 1})
    assert await client.session_delete("sess-1") is True
    assert await client.session_get("sess-1") is None
    assert await client.session_delete("sess-1") is False


async def test_session_round_trips_rich_values(client):
    """Tagged types inside session data round-trip."""
    await client.session_set("rich", RICH)
    assert await client.session_get("rich") == RICH


async def test_session_get_returns_a_fresh_dict(client):
    """Mutating a returned dict does not change the stored session."""
    await client.session_set("s", {"a": [1]})
    data = await client.session_get("s")
    data["a"].append(2)
    assert await client.session_get("s") == {"a": [1]}


async def test_legacy_session_never_enters_the_strict_store(client):
    """A caller-chosen id is not honoured by client.sessions; a strict-format one is refused."""
    await client.session_set("chosen", {"a": 1})
    assert await client.sessions.get("chosen") is None
    assert await client.session_set(FORGED_ID, {"b": 2}) is False
    assert await client.sessions.get(FORGED_ID) is None
    assert not await client.sessions.exists(FORGED_ID)
    assert await client.session_get(FORGED_ID) is None
    assert await client.session_delete(FORGED_ID) is False


async def test_session_set_never_revives_a_strict_id(client):
    """A logged-out, deleted or expired issued id stays dead: session_set returns False."""
    admin = await client.sessions.create({"role": "admin"}, user_id="root")
    assert await client.sessions.delete_user("root") == 1
    assert await client.session_set(admin, {"role": "admin"}) is False
    assert await client.session_set(admin, {"role": "admin"}, expire=3600) is False
    assert await client.session_get(admin) is None
    assert not await client.sessions.exists(admin)
    assert await client.sessions.delete_user("root") == 0
    assert await client.session_delete(admin) is False

    deleted = await client.sessions.create({"a": 1})
    assert await client.session_delete(deleted) is True
    assert await client.session_set(deleted, {"a": 1}) is False
    assert await client.session_get(deleted) is None

    expired = await client.sessions.create({"a": 1}, ttl=0.1)
    await asleep(0.3)
    assert await client.session_set(expired, {"a": 1}) is False
    assert await client.session_get(expired) is None
    assert not await client.sessions.exists(expired)


async def test_session_errors_never_show_the_id(client):
    """Legacy encode/decode errors name the session by a short hash, never by its id."""
    secret = "legacy-bearer-secret-0123456789"
    with pytest.raises(kvkit.SerializationError) as info:
        await client.session_set(secret, {"bad": object()})
    assert id_hash(secret) in str(info.value)
    driver, prefix = client._legacy_store()
    for raw in (b"\xffnot json", b'{"__kvkit__": "uuid", "v": 1}', b"[1, 2]"):
        await driver.set(prefix + secret, raw, None)
        with pytest.raises(kvkit.DecodeError) as info:
            await client.session_get(secret)
        assert id_hash(secret) in str(info.value)
        assert secret not in "".join(traceback.format_exception(info.value))
    issued = await client.sessions.create({"a": 1})
    with pytest.raises(kvkit.SerializationError) as info:
        await client.session_set(issued, {"bad": object()})
    assert issued not in "".join(traceback.format_exception(info.value))


async def test_issued_ids_are_served_by_the_strict_store(client):
    """Ids from client.sessions.create() are read, replaced and deleted in the strict store."""
    sid = await client.sessions.create({"a": 1})
    assert await client.session_get(sid) == {"a": 1}
    assert await client.session_set(sid, {"b": 2}) is True
    assert await client.sessions.get(sid) == {"b": 2}
    assert await client.session_delete(sid) is True
    assert await client.sessions.get(sid) is None
    assert await client.session_get(sid) is None


async def test_session_set_expire_on_an_issued_id_sets_its_idle_ttl(client):
    """expire on an issued id becomes that session's idle TTL."""
    sid = await client.sessions.create({"a": 1})
    await client.session_set(sid, {"a": 2}, expire=100)
    remaining = await client.sessions.ttl(sid)
    assert remaining is not None
    assert 95 < remaining <= 100


async def test_session_default_expire_is_session_ttl(short_client):
    """Without expire a legacy session lives Settings.session_ttl after its last set."""
    await short_client.session_set("s", {"a": 1})
    assert await short_client.session_get("s") == {"a": 1}
    await asleep(0.5)
    assert await short_client.session_get("s") is None


async def test_session_expire_is_honoured(client):
    """An explicit expire is the legacy session's lifetime."""
    await client.session_set("s", {"a": 1}, expire=0.2)
    await client.session_set("long", {"a": 1}, expire=100)
    await asleep(0.4)
    assert await client.session_get("s") is None
    assert await client.session_get("long") == {"a": 1}


async def test_session_set_bad_input_writes_nothing(client):
    """Bad data, ids or TTLs raise before anything is written; old data stays intact."""
    await client.session_set("s", {"ok": 1})
    with pytest.raises(kvkit.InvalidArgument):
        await client.session_set("s", ["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(kvkit.SerializationError):
        await client.session_set("s", {1: "int key"})  # type: ignore[dict-item]
    with pytest.raises(kvkit.SerializationError):
        await client.session_set("s", {"obj": object()})
    with pytest.raises(kvkit.InvalidArgument):
        await client.session_set("s", {"a": 1}, expire=-5)
    with pytest.raises(kvkit.InvalidArgument):
        await client.session_set("", {"a": 1})
    with pytest.raises(kvkit.InvalidArgument):
        await client.session_get(42)  # type: ignore[arg-type]
    with pytest.raises(kvkit.InvalidArgument):
        await client.session_delete(None)  # type: ignore[arg-type]
    assert await client.session_get("s") == {"ok": 1}


async def test_issued_id_bad_expire_writes_nothing(client):
    """A bad expire on an issued id leaves that session unchanged."""
    sid = await client.sessions.create({"a": 1})
    with pytest.raises(kvkit.InvalidArgument):
        await client.session_set(sid, {"a": 2}, expire=0)
    assert await client.sessions.get(sid) == {"a": 1}


async def test_legacy_sessions_are_not_cache_entries(client):
    """Legacy sessions are not in the cache namespace: cache.clear() keeps them."""
    await client.session_set("s", {"a": 1})
    await client.cache.clear()
    assert await client.session_get("s") == {"a": 1}
    assert await client.cache_get("s") is None


async def test_legacy_sessions_survive_cache_eviction():
    """On memory://?maxsize=N legacy sessions are never evicted by cache traffic."""
    async with kvkit.AsyncClient("memory://?maxsize=2") as c:
        await c.session_set("s", {"a": 1})
        for i in range(10):
            await c.cache_set(f"k{i}", i)
        assert await c.session_get("s") == {"a": 1}
        assert await c.cache_get("k0") is None


# -- queues ---------------------------------------------------------------------------------------
async def test_queue_push_pop_round_trip(client):
    """queue_push returns an id; queue_pop returns payloads in order, then None."""
    first = await client.queue_push("jobs", {"n": 1})
    second = await client.queue_push("jobs", RICH)
    assert isinstance(first, str)
    assert first
    assert first != second
    assert await client.queue_pop("jobs") == {"n": 1}
    assert await client.queue_pop("jobs") == RICH
    assert await client.queue_pop("jobs") is None


async def test_queue_pop_acknowledges(client):
    """A popped message is acknowledged: nothing pending, never redelivered."""
    await client.queue_push("jobs", "x")
    assert await client.queue_pop("jobs") == "x"
    stats = await client.queue("jobs").stats()
    assert stats.pending == 0
    assert stats.ready == 0


async def test_queue_methods_share_queues_with_client_queue(client):
    """queue_push/queue_pop and client.queue(name) are the same queue."""
    await client.queue("q").push(1)
    assert await client.queue_pop("q") == 1
    message_id = await client.queue_push("q", 2)
    message = await client.queue("q").pop()
    assert message is not None
    assert message.id == message_id
    assert message.payload == 2
    await message.ack()


async def test_queues_are_separate(client):
    """Messages stay on the queue they were pushed to."""
    await client.queue_push("a", "for-a")
    assert await client.queue_pop("b") is None
    assert await client.queue_pop("a") == "for-a"


async def test_queue_pop_timeout_waits_then_returns_none(client):
    """queue_pop with a timeout waits about that long for a message."""
    start = time.monotonic()
    assert await client.queue_pop("empty", timeout=0.2) is None
    assert time.monotonic() - start >= 0.15


async def test_queue_bad_input(client):
    """Bad names, timeouts and payloads raise; nothing is enqueued."""
    with pytest.raises(kvkit.InvalidArgument):
        await client.queue_push("", 1)
    with pytest.raises(kvkit.InvalidArgument):
        await client.queue_push("a{b}", 1)
    with pytest.raises(kvkit.InvalidArgument):
        await client.queue_pop("q", timeout=-1)
    with pytest.raises(kvkit.SerializationError):
        await client.queue_push("q", object())
    assert await client.queue_pop("q") is None
