"""The SessionStore protocol on every backend (memory, fakeredis, real Redis)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
import traceback
import uuid
from decimal import Decimal

import attrs
import pytest

import kvkit
from kvkit._compat import asleep
from kvkit._idhash import id_hash
from kvkit._memory.sessions import SessionSpace
from kvkit._sessions_base import ID_LENGTH, user_tag
from kvkit._ttl import MAX_SECONDS
from tests.backends import settings_for

ID_RE = re.compile(r"[A-Za-z0-9_-]{47}")
DATA = {
    "user": "alice",
    "n": 2**70,
    "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
    "day": dt.date(2024, 5, 1),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "price": Decimal("1.10"),
    "tags": {"a", "b"},
    "pair": (1, "x"),
    "raw": b"\x00\xff",
    "nested": {"list": [1, 2, {"deep": None}], "ok": True},
    "": "empty name",
    "héllo ✓": 1.5,
}


@pytest.fixture
async def sessions(client):
    """The client's session store."""
    return client.sessions


@pytest.fixture
async def short_client(request, backend):
    """A client whose sessions idle out after 0.5 s and live at most 1.0 s."""
    settings = settings_for(request, backend, session_ttl=0.5, session_max_age=1.0)
    async with kvkit.AsyncClient(settings=settings) as c:
        yield c


@pytest.fixture
async def idle_client(request, backend):
    """A client whose sessions idle out after 0.5 s, without an absolute lifetime."""
    settings = settings_for(request, backend, session_ttl=0.5)
    async with kvkit.AsyncClient(settings=settings) as c:
        yield c


async def stored_sessions(client) -> int:
    """How many session keys (Redis: any key of the client's prefix) the store holds."""
    backend = client.backend("sessions")
    if backend.kind == "memory":
        return len(backend.store.space("sessions", SessionSpace))
    return len(await client.redis("sessions").keys(f"{client.settings.prefix}:*"))


def is_redis(client) -> bool:
    """Whether the sessions role runs on the Redis driver (fakeredis or real)."""
    return client.backend("sessions").kind != "memory"


def index_key(client, user_id: str) -> str:
    """The Redis key of a user's session index (documented layout)."""
    return f"{client.settings.prefix}:session:{{{user_tag(user_id)}}}user:{user_id}"


# -- create / get ------------------------------------------------------------------------------
async def test_store_implements_protocol(sessions):
    """client.sessions satisfies the public protocol."""
    assert isinstance(sessions, kvkit.AsyncSessionStore)


async def test_create_returns_url_safe_id(sessions):
    """Ids are 47 URL-safe characters, with or without a user."""
    for sid in (await sessions.create(), await sessions.create(user_id="bob")):
        assert isinstance(sid, str)
        assert len(sid) == ID_LENGTH
        assert ID_RE.fullmatch(sid)


async def test_create_get_round_trip(sessions):
    """Every codec type round-trips through a session, item by item."""
    sid = await sessions.create(DATA)
    got = await sessions.get(sid)
    assert got == DATA
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in DATA.items()}


async def test_create_without_data_is_empty(sessions):
    """A session created without data (or with {}) exists and reads as {}."""
    for sid in (await sessions.create(), await sessions.create({})):
        assert await sessions.get(sid) == {}
        assert await sessions.exists(sid) is True


async def test_get_returns_a_copy(sessions):
    """Mutating what get() returned never changes the store."""
    sid = await sessions.create({"items": [1], "d": {"k": 1}})
    got = await sessions.get(sid)
    got["items"].append(2)
    got["d"]["k"] = 99
    got["new"] = True
    assert await sessions.get(sid) == {"items": [1], "d": {"k": 1}}


async def test_input_mapping_not_aliased(sessions):
    """Mutating the dict passed to create() afterwards does not change the session."""
    data = {"items": [1]}
    sid = await sessions.create(data)
    data["items"].append(2)
    data["x"] = 1
    assert await sessions.get(sid) == {"items": [1]}


async def test_get_unknown_returns_none(sessions):
    """A well-formed id the store never created reads as None."""
    assert await sessions.get("A" * ID_LENGTH) is None


async def test_ids_are_distinct(sessions):
    """Every create returns a new id, also for one user."""
    ids = {await sessions.create(user_id="u") for _ in range(20)}
    ids |= {await sessions.create() for _ in range(20)}
    assert len(ids) == 40


async def test_ids_unique_and_random_10k(backend, sessions):
    """10 000 ids: no collision, valid charset, every URL-safe character used."""
    if backend != "memory":
        pytest.skip("the 10k run is for the memory backend")
    ids = [await sessions.create() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert len({sid[4:] for sid in ids}) == len(ids)
    assert all(ID_RE.fullmatch(sid) for sid in ids)
    alphabet = set("".join(sid[4:] for sid in ids))
    assert len(alphabet) == 64
    assert len({sid[:4] for sid in ids}) > 9_000  # anonymous tags are random too


# -- set / update ------------------------------------------------------------------------------
async def test_set_replaces_data(sessions):
    """set() replaces the whole data: items not given are gone."""
    sid = await sessions.create({"a": 1, "b": 2})
    assert await sessions.set(sid, {"c": dt.date(2020, 1, 1)}) is True
    assert await sessions.get(sid) == {"c": dt.date(2020, 1, 1)}
    assert await sessions.set(sid, {}) is True
    assert await sessions.get(sid) == {}


async def test_set_unknown_returns_false_and_creates_nothing(client, sessions):
    """set() never creates a session."""
    sid = "B" * ID_LENGTH
    assert await sessions.set(sid, {"a": 1}) is False
    assert await sessions.get(sid) is None
    assert await stored_sessions(client) == 0


async def test_update_merges_and_removes(sessions):
    """update() sets the given items, deletes the removed ones and returns the result."""
    sid = await sessions.create({"a": 1, "b": 2, "c": 3})
    new = await sessions.update(sid, {"b": 20, "d": {4}}, remove=["c", "missing"])
    assert new == {"a": 1, "b": 20, "d": {4}}
    assert await sessions.get(sid) == new


async def test_update_without_changes_returns_data(sessions):
    """update() with nothing to change returns the current data."""
    sid = await sessions.create({"a": 1})
    assert await sessions.update(sid) == {"a": 1}
    assert await sessions.update(sid, {}, remove=()) == {"a": 1}
    assert await sessions.update(sid, remove=["a"]) == {}


async def test_update_unknown_returns_none_and_creates_nothing(client, sessions):
    """update() never creates a session."""
    sid = "C" * ID_LENGTH
    assert await sessions.update(sid, {"a": 1}) is None
    assert await sessions.update(sid, remove=["a"]) is None
    assert await sessions.get(sid) is None
    assert await stored_sessions(client) == 0


async def test_update_rejects_bad_arguments(sessions):
    """A str remove, a non-str name, or a name both set and removed raise InvalidArgument."""
    sid = await sessions.create({"a": 1})
    with pytest.raises(kvkit.InvalidArgument):
        await sessions.update(sid, remove="a")
    with pytest.raises(kvkit.InvalidArgument):
        await sessions.update(sid, remove=[1])
    with pytest.raises(kvkit.InvalidArgument):
        await sessions.update(sid, {"a": 2}, remove=["a"])
    with pytest.raises(kvkit.InvalidArgument):
        await sessions.update(sid, ["a"])
    assert await sessions.get(sid) == {"a": 1}


async def test_update_unencodable_writes_nothing(sessions):
    """An unencodable value in update() raises SerializationError and changes nothing."""
    sid = await sessions.create({"a": 1})
    with pytest.raises(kvkit.SerializationError):
        await sessions.update(sid, {"b": 2, "c": object()}, remove=["a"])
    assert await sessions.get(sid) == {"a": 1}


# -- delete / exists / touch / ttl -------------------------------------------------------------
async def test_delete(sessions):
    """delete() reports whether the session existed; afterwards it is gone."""
    sid = await sessions.create({"a": 1})
    assert await sessions.delete(sid) is True
    assert await sessions.delete(sid) is False
    assert await sessions.get(sid) is None
    assert await sessions.exists(sid) is False


async def test_exists(sessions):
    """exists() is True for live sessions only."""
    sid = await sessions.create()
    assert await sessions.exists(sid) is True
    assert await sessions.exists("D" * ID_LENGTH) is False


async def test_ttl_default_and_forms(sessions):
    """ttl() reports the idle TTL: default, seconds, timedelta, presets and FOREVER."""
    assert 86399 <= await sessions.ttl(await sessions.create()) <= 86400
    assert 59 <= await sessions.ttl(await sessions.create(ttl=60)) <= 60
    assert 119 <= await sessions.ttl(await sessions.create(ttl=dt.timedelta(minutes=2))) <= 120
    assert 299 <= await sessions.ttl(await sessions.create(ttl="temp")) <= 300
    assert 604799 <= await sessions.ttl(await sessions.create(ttl="long")) <= 604800
    assert await sessions.ttl(await sessions.create(ttl=kvkit.FOREVER)) == math.inf
    assert await sessions.ttl("E" * ID_LENGTH) is None


async def test_touch(sessions):
    """touch() restarts the TTL of live sessions and reports unknown ones as False."""
    sid = await sessions.create(ttl=60)
    assert await sessions.touch(sid) is True
    assert 59 <= await sessions.ttl(sid) <= 60
    assert await sessions.touch("F" * ID_LENGTH) is False
    assert await sessions.touch("F" * ID_LENGTH, 10) is False
    assert await sessions.exists("F" * ID_LENGTH) is False


async def test_touch_with_ttl_becomes_the_idle_ttl(sessions):
    """touch(ttl=...) sets a new idle TTL that later slides keep using."""
    sid = await sessions.create(ttl=60)
    assert await sessions.touch(sid, 1000) is True
    assert 999 <= await sessions.ttl(sid) <= 1000
    assert await sessions.get(sid) == {}
    assert 999 <= await sessions.ttl(sid) <= 1000
    assert await sessions.touch(sid, kvkit.FOREVER) is True
    assert await sessions.ttl(sid) == math.inf
    await sessions.update(sid, {"a": 1})
    assert await sessions.ttl(sid) == math.inf


async def test_bad_ttl_raises(sessions):
    """Zero, negative, NaN, bool and unknown presets are rejected before any I/O."""
    sid = await sessions.create()
    for bad in (0, -1, float("nan"), True, "forever", "1"):
        with pytest.raises(kvkit.InvalidArgument):
            await sessions.create(ttl=bad)
        with pytest.raises(kvkit.InvalidArgument):
            await sessions.touch(sid, bad)


# -- rotate -------------------------------------------------------------------------------------
async def test_rotate_moves_data_and_invalidates_old_id(sessions):
    """rotate() returns a new id with the same data; the old id is dead."""
    sid = await sessions.create({"cart": [1, 2]})
    new = await sessions.rotate(sid)
    assert new is not None
    assert new != sid
    assert ID_RE.fullmatch(new)
    assert await sessions.get(new) == {"cart": [1, 2]}
    assert await sessions.get(sid) is None
    assert await sessions.exists(sid) is False
    assert await sessions.set(sid, {"x": 1}) is False
    assert await sessions.update(sid, {"x": 1}) is None
    assert await sessions.touch(sid) is False
    assert await sessions.rotate(sid) is None
    assert await sessions.get(new) == {"cart": [1, 2]}


async def test_rotate_keeps_user_and_ttl(sessions):
    """rotate() keeps the owner (index updated) and the session's idle TTL."""
    sid = await sessions.create({"a": 1}, user_id="carol", ttl=100)
    other = await sessions.create(user_id="carol")
    new = await sessions.rotate(sid)
    assert sorted(await sessions.user_sessions("carol")) == sorted([new, other])
    assert 99 <= await sessions.ttl(new) <= 100
    assert await sessions.delete_user("carol") == 2
    assert await sessions.get(new) is None


async def test_rotate_unknown_returns_none(client, sessions):
    """rotate() of an unknown id returns None and creates nothing."""
    assert await sessions.rotate("G" * ID_LENGTH) is None
    assert await stored_sessions(client) == 0


# -- users --------------------------------------------------------------------------------------
async def test_user_sessions_and_delete_user(sessions):
    """user_sessions() lists a user's live sessions; delete_user() ends exactly those."""
    u1 = {await sessions.create({"i": i}, user_id="u1") for i in range(3)}
    u2 = {await sessions.create(user_id="u2") for _ in range(2)}
    anon = await sessions.create()
    assert set(await sessions.user_sessions("u1")) == u1
    assert set(await sessions.user_sessions("u2")) == u2
    assert await sessions.delete_user("u1") == 3
    assert await sessions.user_sessions("u1") == []
    for sid in u1:
        assert await sessions.get(sid) is None
    assert set(await sessions.user_sessions("u2")) == u2
    assert await sessions.get(anon) == {}
    assert await sessions.delete_user("u1") == 0


async def test_delete_user_many_sessions(sessions):
    """delete_user() logs a user out of 200 sessions at once."""
    ids = [await sessions.create({"i": i}, user_id="busy@example.com") for i in range(200)]
    assert len(await sessions.user_sessions("busy@example.com")) == 200
    assert await sessions.delete_user("busy@example.com") == 200
    for sid in ids[:10] + ids[-10:]:
        assert await sessions.exists(sid) is False


async def test_user_sessions_after_delete(sessions):
    """A deleted session leaves its user's index."""
    a = await sessions.create(user_id="dave")
    b = await sessions.create(user_id="dave")
    assert await sessions.delete(a) is True
    assert await sessions.user_sessions("dave") == [b]
    assert await sessions.delete_user("dave") == 1


async def test_unknown_user(sessions):
    """An unknown user has no sessions."""
    assert await sessions.user_sessions("nobody") == []
    assert await sessions.delete_user("nobody") == 0


async def test_user_ids_with_special_characters(sessions):
    """User ids are any valid key: braces, colons and unicode stay separate users."""
    users = ["{tag}", "a:b", "a", "ユーザー", "x" * 300]
    ids = {u: await sessions.create(user_id=u) for u in users}
    for user, sid in ids.items():
        assert await sessions.user_sessions(user) == [sid]
    for user in users:
        assert await sessions.delete_user(user) == 1


async def test_bad_user_id_raises(sessions):
    """user_id must be a non-empty str key."""
    for bad in ("", 5, b"u", "x" * 2000):
        with pytest.raises(kvkit.InvalidArgument):
            await sessions.create(user_id=bad)
        with pytest.raises(kvkit.InvalidArgument):
            await sessions.user_sessions(bad)
        with pytest.raises(kvkit.InvalidArgument):
            await sessions.delete_user(bad)


# -- forged ids and bad input ----------------------------------------------------------------
FORGED = [
    "",
    "x",
    "H" * (ID_LENGTH - 1),
    "H" * (ID_LENGTH + 1),
    "H" * (ID_LENGTH - 1) + "=",
    "H" * (ID_LENGTH - 1) + "/",
    "H" * (ID_LENGTH - 1) + "+",
    "H" * (ID_LENGTH - 1) + "\n",
    "H" * (ID_LENGTH - 1) + "é",
    "{" + "H" * (ID_LENGTH - 2) + "}",
    "*" * ID_LENGTH,
    "../" * 16,
    "H" * 10_000,
]


@pytest.mark.parametrize("forged", FORGED, ids=range(len(FORGED)))
async def test_forged_ids_never_honoured(client, sessions, forged):
    """Malformed ids give None/False for every method and create nothing."""
    assert await sessions.get(forged) is None
    assert await sessions.set(forged, {"a": 1}) is False
    assert await sessions.update(forged, {"a": 1}) is None
    assert await sessions.touch(forged) is False
    assert await sessions.rotate(forged) is None
    assert await sessions.delete(forged) is False
    assert await sessions.ttl(forged) is None
    assert await sessions.exists(forged) is False
    assert await stored_sessions(client) == 0


async def test_tampered_id_not_honoured(sessions):
    """Changing one character of a real id gives an unknown session."""
    sid = await sessions.create({"secret": 1})
    last = "A" if sid[-1] != "A" else "B"
    first = "A" if sid[0] != "A" else "B"
    for tampered in (sid[:-1] + last, first + sid[1:], sid.upper(), sid.lower()):
        if tampered != sid:
            assert await sessions.get(tampered) is None
            assert await sessions.set(tampered, {}) is False
    assert await sessions.get(sid) == {"secret": 1}


@pytest.mark.parametrize("bad", [None, 123, b"H" * ID_LENGTH, ["id"]])
async def test_non_str_id_raises(sessions, bad):
    """A non-str id is a programming error: InvalidArgument."""
    for call in (
        sessions.get,
        sessions.delete,
        sessions.touch,
        sessions.rotate,
        sessions.ttl,
        sessions.exists,
        sessions.update,
    ):
        with pytest.raises(kvkit.InvalidArgument):
            await call(bad)
    with pytest.raises(kvkit.InvalidArgument):
        await sessions.set(bad, {})


async def test_bad_data_raises_and_writes_nothing(client, sessions):
    """Non-mappings raise InvalidArgument; unencodable data SerializationError; no write."""
    for bad in ([("a", 1)], "abc", 5, {"a"}):
        with pytest.raises(kvkit.InvalidArgument):
            await sessions.create(bad)
    with pytest.raises(kvkit.SerializationError):
        await sessions.create({"ok": 1, "bad": object()})
    with pytest.raises(kvkit.SerializationError):
        await sessions.create({1: "int key"})
    with pytest.raises(kvkit.SerializationError):
        await sessions.create({"nan": float("nan")})
    assert await stored_sessions(client) == 0
    sid = await sessions.create({"a": 1})
    with pytest.raises(kvkit.InvalidArgument):
        await sessions.set(sid, None)
    with pytest.raises(kvkit.SerializationError):
        await sessions.set(sid, {"b": object()})
    assert await sessions.get(sid) == {"a": 1}


async def test_serialization_error_names_item_not_value(sessions):
    """The error names the data item and type, never the value."""

    class Secret:
        def __repr__(self) -> str:
            return "hunter2"

    with pytest.raises(kvkit.SerializationError) as info:
        await sessions.create({"password": Secret()})
    assert "password" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- expiry -------------------------------------------------------------------------------------
async def test_idle_expiry(idle_client):
    """A session nobody uses is gone after its idle TTL (and leaves its user's index)."""
    sessions = idle_client.sessions
    sid = await sessions.create({"a": 1}, user_id="idle")
    await asleep(0.8)
    assert await sessions.get(sid) is None
    assert await sessions.exists(sid) is False
    assert await sessions.user_sessions("idle") == []


async def test_get_slides_idle_ttl(idle_client):
    """get() restarts the idle TTL; exists() and ttl() do not."""
    sessions = idle_client.sessions
    sid = await sessions.create({"a": 1})
    for _ in range(4):
        await asleep(0.25)
        assert await sessions.get(sid) == {"a": 1}
    # 1 s after creation (twice the idle TTL): alive only because get() slid it.
    await asleep(0.25)
    assert await sessions.exists(sid) is True
    assert await sessions.ttl(sid) is not None
    await asleep(0.5)
    assert await sessions.exists(sid) is False


async def test_touch_update_set_slide(idle_client):
    """touch(), update() and set() each restart the idle TTL."""
    sessions = idle_client.sessions
    sid = await sessions.create()
    for step in (
        lambda: sessions.touch(sid),
        lambda: sessions.update(sid, {"x": 1}),
        lambda: sessions.set(sid, {"y": 2}),
        lambda: sessions.touch(sid),
    ):
        await asleep(0.3)
        assert await step()
    assert await sessions.get(sid) == {"y": 2}


async def test_per_session_ttl(idle_client):
    """create(ttl=...) overrides the idle TTL for that session only."""
    sessions = idle_client.sessions
    short = await sessions.create(ttl=0.2)
    long = await sessions.create(ttl=5)
    await asleep(0.4)
    assert await sessions.get(short) is None
    assert await sessions.get(long) == {}
    assert await sessions.ttl(long) > 4


async def test_absolute_lifetime_under_constant_activity(short_client):
    """session_max_age ends a session even when it is used all the time."""
    sessions = short_client.sessions
    sid = await sessions.create({"a": 1})
    start = time.monotonic()  # the session's lifetime began before this
    alive_after_idle = False
    while time.monotonic() - start < 1.6:
        # The server reads the session after ``sent``: a reply with data proves it alive
        # then. (The time the reply arrives says nothing: a loaded machine delays it.)
        sent = time.monotonic() - start
        got = await sessions.get(sid)
        if got is None:
            break
        assert sent < 1.3
        remaining = await sessions.ttl(sid)
        if remaining is None:  # the absolute lifetime ran out between get() and ttl()
            break
        assert remaining <= 1.0
        if sent > 0.6:
            alive_after_idle = True
        await sessions.touch(sid, 100)
        await asleep(0.1)
    assert alive_after_idle
    assert await sessions.get(sid) is None
    assert await sessions.touch(sid) is False


async def test_forever_still_bounded_by_max_age(short_client):
    """FOREVER means no idle expiry; the absolute lifetime still applies."""
    sessions = short_client.sessions
    sid = await sessions.create(ttl=kvkit.FOREVER)
    assert await sessions.ttl(sid) <= 1.0
    await asleep(0.7)
    assert await sessions.get(sid) == {}
    await asleep(0.6)
    assert await sessions.get(sid) is None


async def test_rotate_keeps_absolute_deadline(short_client):
    """rotate() never extends a session's absolute lifetime."""
    sessions = short_client.sessions
    sid = await sessions.create(user_id="rot")
    await asleep(0.3)
    assert await sessions.get(sid) == {}
    await asleep(0.3)
    new = await sessions.rotate(sid)
    assert new is not None
    assert await sessions.ttl(new) <= 0.45
    await asleep(0.6)
    assert await sessions.get(new) is None
    assert await sessions.user_sessions("rot") == []


async def test_user_index_pruned_after_expiry(idle_client):
    """Expired sessions drop out of user_sessions() and delete_user() counts."""
    sessions = idle_client.sessions
    gone = await sessions.create(user_id="prune", ttl=0.2)
    kept = await sessions.create(user_id="prune", ttl=10)
    await asleep(0.4)
    assert await sessions.user_sessions("prune") == [kept]
    assert gone not in await sessions.user_sessions("prune")
    assert await sessions.delete_user("prune") == 1


async def test_sliding_session_stays_indexed(idle_client):
    """A session kept alive past its first TTL stays in its user's index."""
    sessions = idle_client.sessions
    sid = await sessions.create(user_id="slider")
    for _ in range(5):
        await asleep(0.2)
        assert await sessions.get(sid) == {}
    assert await sessions.user_sessions("slider") == [sid]
    assert await sessions.delete_user("slider") == 1


# -- details: what a "your devices" page shows ----------------------------------------------
def utcnow() -> dt.datetime:
    """The current time, aware."""
    return dt.datetime.now(dt.timezone.utc)


async def test_user_sessions_details(sessions):
    """details=True: one SessionInfo per live session, with hash, times and meta, no id."""
    before = utcnow() - dt.timedelta(seconds=5)  # the server's clock may differ a little
    phone = await sessions.create(
        {"cart": [1]}, user_id="devices", meta={"device": "phone", "ip": "203.0.113.7"}
    )
    laptop = await sessions.create(user_id="devices")
    await sessions.create(user_id="someone-else", meta={"device": "other"})
    infos = await sessions.user_sessions("devices", details=True)
    assert {info.id_hash for info in infos} == {id_hash(phone), id_hash(laptop)}
    by_hash = {info.id_hash: info for info in infos}
    assert by_hash[id_hash(phone)].meta == {"device": "phone", "ip": "203.0.113.7"}
    assert by_hash[id_hash(laptop)].meta == {}
    for info in infos:
        assert isinstance(info, kvkit.SessionInfo)
        assert info.created.tzinfo is not None and info.last_seen.tzinfo is not None
        assert info.created.utcoffset() == dt.timedelta(0)
        assert before <= info.created <= info.last_seen <= utcnow() + dt.timedelta(seconds=5)
        text = repr(info) + str(attrs.asdict(info))
        assert phone not in text and laptop not in text
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        infos[0].meta = {}  # type: ignore[misc]
    # Without details: the ids, as before.
    assert sorted(await sessions.user_sessions("devices")) == sorted([phone, laptop])
    assert await sessions.user_sessions("nobody", details=True) == []


async def test_details_last_seen_follows_use_and_orders_the_list(sessions):
    """last_seen moves on every sliding call; created stays; most recently used first."""
    old = await sessions.create(user_id="order", meta={"n": 1})
    await asleep(0.02)
    new = await sessions.create(user_id="order", meta={"n": 2})
    first = await sessions.user_sessions("order", details=True)
    assert [info.meta["n"] for info in first] == [2, 1]
    await asleep(0.02)
    assert await sessions.get(old) == {}
    second = await sessions.user_sessions("order", details=True)
    assert [info.meta["n"] for info in second] == [1, 2]
    assert second[0].created == first[1].created
    assert second[0].last_seen > first[1].last_seen
    for call in (
        lambda: sessions.update(new, {"x": 1}),
        lambda: sessions.touch(new),
        lambda: sessions.set(new, {"y": 2}),
    ):
        await asleep(0.02)
        await call()
        latest = (await sessions.user_sessions("order", details=True))[0]
        assert latest.meta == {"n": 2}
        assert latest.last_seen > second[0].last_seen
    # Reading the details never extends a session or changes last_seen.
    again = await sessions.user_sessions("order", details=True)
    assert again[0].last_seen == latest.last_seen


async def test_rotate_keeps_created_and_meta(sessions):
    """rotate() keeps the creation time and meta (the new id's hash is listed)."""
    sid = await sessions.create({"a": 1}, user_id="rot", meta={"device": "tv"})
    (before,) = await sessions.user_sessions("rot", details=True)
    await asleep(0.02)
    new = await sessions.rotate(sid)
    assert new is not None
    (after,) = await sessions.user_sessions("rot", details=True)
    assert after.id_hash == id_hash(new) != before.id_hash
    assert after.created == before.created
    assert after.meta == {"device": "tv"}
    assert after.last_seen > before.last_seen


async def test_meta_is_not_session_data(sessions):
    """meta never shows in get/update results, and round-trips the codec's types."""
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    meta = {"login_at": when, "tags": {"mfa"}, "ua": "Firefox ✓"}
    sid = await sessions.create({"a": 1}, user_id="m", meta=meta)
    assert await sessions.get(sid) == {"a": 1}
    assert await sessions.update(sid, {"b": 2}) == {"a": 1, "b": 2}
    assert await sessions.set(sid, {"c": 3}) is True
    assert await sessions.get(sid) == {"c": 3}
    (info,) = await sessions.user_sessions("m", details=True)
    assert info.meta == meta
    assert type(info.meta["login_at"]) is dt.datetime
    anon = await sessions.create(meta={"device": "x"})  # allowed without a user
    assert await sessions.get(anon) == {}


@pytest.mark.parametrize(
    ("meta", "error"),
    [
        ([("device", "x")], kvkit.InvalidArgument),
        ("device", kvkit.InvalidArgument),
        ({1: "x"}, kvkit.SerializationError),
        ({"x": object()}, kvkit.SerializationError),
    ],
)
async def test_bad_meta_raises_and_writes_nothing(client, sessions, meta, error):
    """meta must be a mapping of str names to encodable values; nothing is written."""
    before = await stored_sessions(client)
    with pytest.raises(error):
        await sessions.create({"a": 1}, user_id="bad-meta", meta=meta)
    assert await stored_sessions(client) == before
    assert await sessions.user_sessions("bad-meta") == []


async def test_details_drop_ended_sessions(idle_client):
    """Expired and deleted sessions leave the details listing too."""
    sessions = idle_client.sessions
    gone = await sessions.create(user_id="ending", ttl=0.2)
    deleted = await sessions.create(user_id="ending")
    kept = await sessions.create(user_id="ending", ttl=5)
    assert await sessions.delete(deleted) is True
    await asleep(0.4)
    infos = await sessions.user_sessions("ending", details=True)
    assert [info.id_hash for info in infos] == [id_hash(kept)]
    assert id_hash(gone) != id_hash(kept)


# -- Redis layout ---------------------------------------------------------------------------
async def test_redis_layout(client, sessions):
    """On Redis: one hash per session, items as plain JSON, all keys in the user's slot."""
    if not is_redis(client):
        pytest.skip("Redis key layout")
    r = client.redis("sessions")
    sid = await sessions.create({"name": "x", "n": 1}, user_id="eve")
    key = f"{client.settings.prefix}:session:{{{sid[:4]}}}{sid[4:]}"
    assert sid[:4] == user_tag("eve")
    assert await r.type(key) == b"hash"
    assert await r.hget(key, "d:name") == b'"x"'
    assert await r.hget(key, "d:n") == b"1"
    index = index_key(client, "eve")
    assert await r.zrange(index, 0, -1) == [key.encode()]
    assert 0 < await r.pttl(index) <= 86_400_000


async def test_redis_index_expires_with_its_sessions(idle_client):
    """On Redis the user index key never outlives the sessions in it."""
    if not is_redis(idle_client):
        pytest.skip("Redis key layout")
    sessions = idle_client.sessions
    r = idle_client.redis("sessions")
    await sessions.create(user_id="ix", ttl=0.3)
    assert 0 < await r.pttl(index_key(idle_client, "ix")) <= 300
    await asleep(0.6)
    assert await r.exists(index_key(idle_client, "ix")) == 0
    await sessions.create(user_id="ix", ttl=kvkit.FOREVER)
    assert await r.pttl(index_key(idle_client, "ix")) == -1


async def test_redis_user_sessions_drops_vanished_keys(client, sessions):
    """A session key deleted behind kvkit's back leaves the index on the next read."""
    if not is_redis(client):
        pytest.skip("Redis key layout")
    r = client.redis("sessions")
    a = await sessions.create(user_id="vanish")
    b = await sessions.create(user_id="vanish")
    await r.delete(f"{client.settings.prefix}:session:{{{a[:4]}}}{a[4:]}")
    assert await sessions.user_sessions("vanish") == [b]
    assert await r.zcard(index_key(client, "vanish")) == 1


async def test_redis_planted_bytes_raise_decode_error(client, sessions):
    """Garbage in a session field raises DecodeError naming the item."""
    if not is_redis(client):
        pytest.skip("needs raw access to the store")
    sid = await sessions.create({"a": 1})
    key = f"{client.settings.prefix}:session:{{{sid[:4]}}}{sid[4:]}"
    await client.redis("sessions").hset(key, "d:a", b"\x80not json")
    with pytest.raises(kvkit.DecodeError, match="'a'"):
        await sessions.get(sid)


async def test_redis_corrupted_session_errors_never_show_the_id(client, sessions):
    """A non-UTF-8 field name or undecodable value: DecodeError naming a hash, not the id."""
    if not is_redis(client):
        pytest.skip("needs raw access to the store")
    sid = await sessions.create({"a": 1})
    key = f"{client.settings.prefix}:session:{{{sid[:4]}}}{sid[4:]}"
    r = client.redis("sessions")
    for field, value in ((b"d:\xff\xfe", b"1"), (b"d:a", b"\x80not json")):
        await r.hset(key, field, value)
        for call in (lambda: sessions.get(sid), lambda: sessions.update(sid, {"b": 2})):
            with pytest.raises(kvkit.DecodeError) as info:
                await call()
            text = "".join(traceback.format_exception(info.value))
            assert sid not in text
            assert sid[4:] not in text  # not even the secret part of the key
            assert id_hash(sid) in str(info.value)
        await r.hdel(key, field)


async def test_redis_layout_records_times_and_meta(client, sessions):
    """On Redis the hash carries _c/_s (server ms) and _m (encoded meta) beside the data."""
    if not is_redis(client):
        pytest.skip("Redis key layout")
    r = client.redis("sessions")
    sid = await sessions.create({"a": 1}, user_id="lay", meta={"device": "x"})
    key = f"{client.settings.prefix}:session:{{{sid[:4]}}}{sid[4:]}"
    seconds, micros = await r.time()
    server_ms = seconds * 1000 + micros // 1000
    created = int(await r.hget(key, "_c"))
    assert abs(server_ms - created) < 5000
    assert int(await r.hget(key, "_s")) >= created
    assert json.loads(await r.hget(key, "_m")) == {"device": "x"}
    assert await sessions.get(sid) == {"a": 1}


async def test_redis_sessions_of_the_previous_version_still_read(client, sessions):
    """A hash without _c/_s/_m (kvkit 0.1) reads, lists with estimated times, then records them."""
    if not is_redis(client):
        pytest.skip("needs raw access to the store")
    r = client.redis("sessions")
    sid = await sessions.create({"a": 1}, user_id="legacy", ttl=100)
    key = f"{client.settings.prefix}:session:{{{sid[:4]}}}{sid[4:]}"
    await r.hdel(key, "_c", "_s", "_m")
    await r.pexpire(key, 90_000)  # as if the last use was 10 s ago
    (info,) = await sessions.user_sessions("legacy", details=True)
    assert info.meta == {}
    assert info.created == info.last_seen
    ago = (utcnow() - info.last_seen).total_seconds()
    assert 5 < ago < 15
    assert await sessions.get(sid) == {"a": 1}
    assert await r.hget(key, "_c") is not None
    (info,) = await sessions.user_sessions("legacy", details=True)
    assert abs((utcnow() - info.created).total_seconds()) < 5
    assert info.created == info.last_seen
    assert await sessions.update(sid, {"b": 2}) == {"a": 1, "b": 2}
    assert await sessions.rotate(sid) is not None


async def test_redis_undecodable_meta_is_ignored_alone(client, sessions, caplog):
    """Garbage in one session's _m gives meta {} and a warning naming its hash, not its id."""
    if not is_redis(client):
        pytest.skip("needs raw access to the store")
    r = client.redis("sessions")
    bad = await sessions.create(user_id="garbled", meta={"device": "a"})
    good = await sessions.create(user_id="garbled", meta={"device": "b"})
    await r.hset(f"{client.settings.prefix}:session:{{{bad[:4]}}}{bad[4:]}", "_m", b"\x80[")
    with caplog.at_level("WARNING", logger="kvkit.sessions"):
        infos = await sessions.user_sessions("garbled", details=True)
    assert {i.id_hash: i.meta for i in infos} == {id_hash(bad): {}, id_hash(good): {"device": "b"}}
    assert id_hash(bad) in caplog.text
    assert bad not in caplog.text and bad[4:] not in caplog.text


# -- duration bounds (at most MAX_SECONDS, identical on every backend) ---------------------
@pytest.mark.parametrize(
    "ttl", [9 * 10**12, 9e12, 10**16, dt.timedelta(seconds=9e12), MAX_SECONDS + 1]
)
async def test_idle_ttl_beyond_the_bound_is_rejected_on_every_backend(client, sessions, ttl):
    """create/touch with an idle TTL over 100 years raise InvalidArgument and write nothing."""
    before = await stored_sessions(client)
    with pytest.raises(kvkit.InvalidArgument, match="100 years"):
        await sessions.create({"a": 1}, ttl=ttl)
    assert await stored_sessions(client) == before
    sid = await sessions.create({"a": 1})
    with pytest.raises(kvkit.InvalidArgument, match="100 years"):
        await sessions.touch(sid, ttl)
    remaining = await sessions.ttl(sid)
    assert remaining is not None
    assert remaining <= client.settings.session_ttl  # unchanged by the rejected touch


async def test_longest_idle_ttl_reads_back_exactly_on_every_backend(sessions):
    """An idle TTL of exactly the bound is finite and the same on every backend (not inf)."""
    sid = await sessions.create({"a": 1}, ttl=MAX_SECONDS)
    remaining = await sessions.ttl(sid)
    assert remaining is not None
    assert MAX_SECONDS - 60 < remaining <= MAX_SECONDS
    assert await sessions.touch(sid, float(MAX_SECONDS))
    remaining = await sessions.ttl(sid)
    assert remaining is not None
    assert MAX_SECONDS - 60 < remaining <= MAX_SECONDS


@pytest.mark.parametrize("field", ["session_ttl", "session_max_age"])
async def test_session_settings_beyond_the_bound_are_rejected(request, backend, field):
    """session_ttl/session_max_age over 100 years fail before any session is written."""
    with pytest.raises((kvkit.InvalidArgument, kvkit.ConfigError), match="100 years"):
        settings = settings_for(request, backend, **{field: 9e12})
        async with kvkit.AsyncClient(settings=settings) as c:
            await c.sessions.create({"a": 1})
