"""Stream entries written by another process into kvkit's keys: input, not trust.

Someone ``XADD``s straight into a queue's stream (or dead-letter stream) with fields kvkit
never writes: a non-UTF-8 id, counters that are not numbers, a payload that is not JSON.
The bad entry alone is dead-lettered with a logged reason; the good messages around it are
delivered; ``dead_letters()`` and ``kvkit queue dead`` list it; nothing but kvkit errors
escapes.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid

import pytest

import kvkit
from kvkit.cli import main

REDIS_BACKENDS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
]

# Entries kvkit never writes. Each must be dead-lettered alone; the value is a fragment of
# the reason.
HOSTILE = {
    "id-not-utf8": ({"id": b"\xff\xfe\xfd", "payload": b'"x"'}, "id"),
    "prior-not-a-number": ({"id": "f1", "payload": b'"x"', "prior_deliveries": "abc"}, "prior"),
    "prior-negative": ({"id": "f2", "payload": b'"x"', "prior_deliveries": "-1"}, "prior"),
    "prior-overflow": ({"id": "f3", "payload": b'"x"', "prior_deliveries": "1e400"}, "prior"),
    "enqueued-not-a-number": ({"id": "f4", "payload": b'"x"', "enqueued_ms": "x"}, "enqueued"),
    "enqueued-huge": ({"id": "f5", "payload": b'"x"', "enqueued_ms": "9" * 400}, "enqueued"),
    "payload-not-utf8": ({"id": "f6", "payload": b"\xff\xfe"}, "payload"),
    "payload-not-json": ({"id": "f7", "payload": b"{nope"}, "payload"),
    "payload-bad-tag": ({"id": "f8", "payload": b'{"__kvkit__":"nope","v":1}'}, "payload"),
    "no-payload": ({"id": "f9"}, "payload"),
    "nothing-known": ({"something": "else"}, "payload"),
    "all-garbage": (
        {"id": b"\x80", "payload": b"\x80", "enqueued_ms": "-", "prior_deliveries": "\x00"},
        "",
    ),
}


@pytest.fixture(params=REDIS_BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    """A Redis-protocol URL: fakeredis (shared by name), the suite's Redis or Cluster."""
    if request.param == "fakeredis":
        return f"fakeredis://hostile-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("redis_cluster").url)


@pytest.fixture
def client(url: str):
    """A sync client with the default prefix (so that the CLI finds the queue)."""
    with kvkit.Client(url) as c:
        yield c


@pytest.fixture
def queue(client):
    """A queue with a unique name, purged afterwards."""
    q = client.queue("hostile-" + uuid.uuid4().hex[:10], visibility_timeout=0.5)
    yield q
    q.purge(dead=True)


def _interleave(client, queue, fields):
    """Push 3 good messages, XADD ``fields`` directly into the stream, push 3 more."""
    first = queue.push_many([0, 1, 2])
    client.redis("queues").xadd(queue.key + ":stream", fields)
    return first + queue.push_many([3, 4, 5])


def _check_dead(queue, fragment):
    """Exactly one dead letter, with a reason naming what was wrong."""
    (dead,) = queue.dead_letters()
    assert isinstance(dead.id, str) and dead.reason
    assert fragment in dead.reason
    stats = queue.stats()
    assert (stats.dead, stats.ready, stats.pending) == (1, 0, 0)
    return dead


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_pop_many_dead_letters_the_bad_entry_alone(client, queue, kind, caplog):
    """pop_many delivers the 6 good messages of the batch; the bad entry alone is dead."""
    fields, fragment = HOSTILE[kind]
    ids = _interleave(client, queue, fields)
    with caplog.at_level(logging.WARNING, logger="kvkit.queue"):
        messages = queue.pop_many(10)
    assert [m.payload for m in messages] == [0, 1, 2, 3, 4, 5]
    assert [m.id for m in messages] == ids
    assert queue.ack(*messages) == 6
    dead = _check_dead(queue, fragment)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dead-letter" in w and dead.reason in w for w in warnings), warnings


@pytest.mark.parametrize("kind", ["id-not-utf8", "prior-not-a-number", "enqueued-not-a-number"])
def test_pop_one_at_a_time_skips_the_bad_entry(client, queue, kind):
    """Single pops return the good messages in order and never raise."""
    fields, fragment = HOSTILE[kind]
    _interleave(client, queue, fields)
    got = []
    while (message := queue.pop()) is not None:
        got.append(message.payload)
        message.ack()
    assert got == [0, 1, 2, 3, 4, 5]
    _check_dead(queue, fragment)


@pytest.mark.parametrize("kind", ["id-not-utf8", "prior-not-a-number", "payload-not-json"])
def test_consume_handles_every_good_message(client, queue, kind):
    """A consume worker keeps going: it handles all 6 good messages, 1 dead letter."""
    fields, fragment = HOSTILE[kind]
    _interleave(client, queue, fields)
    handled = []
    stop = threading.Event()

    def handler(message):
        handled.append(message.payload)
        if len(handled) == 6:
            stop.set()

    assert queue.consume(handler, batch=4, stop=stop, max_messages=6) == 6
    assert sorted(handled) == [0, 1, 2, 3, 4, 5]
    _check_dead(queue, fragment)


def test_cli_lists_the_dead_letter(client, queue, url):
    """`kvkit queue dead NAME` lists a dead-lettered hostile entry (text and JSON)."""
    _interleave(client, queue, HOSTILE["id-not-utf8"][0])
    queue.ack(*queue.pop_many(10))
    out = io.StringIO()
    assert main(["queue", "dead", queue.name, "--url", url], out=out) == 0
    assert "id is not UTF-8" in out.getvalue()
    out = io.StringIO()
    assert main(["queue", "dead", queue.name, "--url", url, "--json"], out=out) == 0
    assert "id is not UTF-8" in out.getvalue()


GARBAGE_DEAD = [
    {"id": b"\xff", "payload": b"\xff", "enqueued_ms": "x", "deliveries": "y", "reason": b"\xfe"},
    {"enqueued_ms": "9" * 400, "deliveries": "-3"},
    {"payload": b'"ok"', "deliveries": "1e400"},
]


def test_garbage_dead_letters_are_listed(client, queue, url):
    """Dead-letter entries that are themselves garbage are still listed, never raising."""
    r = client.redis("queues")
    for fields in GARBAGE_DEAD:
        r.xadd(queue.key + ":dead", fields)
    dead = queue.dead_letters()
    assert len(dead) == 3
    for message in dead:
        assert isinstance(message.id, str) and message.id
        assert isinstance(message.deliveries, int) and message.deliveries >= 0
        assert isinstance(message.enqueued_at, float)
        assert isinstance(message.reason, str) and message.reason
    assert dead[2].payload == "ok"
    out = io.StringIO()
    assert main(["queue", "dead", queue.name, "--url", url], out=out) == 0
    assert len(out.getvalue().splitlines()) == 3
    out = io.StringIO()
    assert main(["queue", "dead", queue.name, "--url", url, "--json"], out=out) == 0
    # Requeued garbage comes back as stream entries, which pop dead-letters again.
    assert queue.requeue_dead() == 3
    messages = queue.pop_many(10)
    assert [m.payload for m in messages] == ["ok"]
    assert queue.stats().dead == 2


@pytest.mark.parametrize(
    "member", [b"garbage", b"~0000000001000000", b"~x\nid-only", b"\xff\n\xfe"]
)
def test_malformed_delayed_member_is_dead_lettered_alone(client, queue, url, member):
    """A member another process put in the delayed set never stalls the queue's pops."""
    client.redis("queues").zadd(queue.key + ":delayed", {member: 0})
    queue.push_many([0, 1])
    queue.push(2, delay=0.01)
    time.sleep(0.05)
    messages = queue.pop_many(10)
    assert sorted(m.payload for m in messages) == [0, 1, 2]
    assert queue.ack(*messages) == 3
    (dead,) = queue.dead_letters()
    assert dead.reason == "malformed delayed member"
    assert dead.id
    stats = queue.stats()
    assert (stats.ready, stats.pending, stats.delayed, stats.dead) == (0, 0, 0, 1)
    out = io.StringIO()
    assert main(["queue", "dead", queue.name, "--url", url], out=out) == 0
    assert "malformed delayed member" in out.getvalue()
