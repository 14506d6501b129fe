"""The near cache's store and coherence bookkeeping, without a server (a fake clock)."""

from __future__ import annotations

import pytest

from kvkit._near_cache import NearCache, invalidated_keys


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _filled(near: NearCache, key: str, value: bytes, pttl: int = -1) -> None:
    near.finish(near.begin([key]), [value], [pttl])


def test_a_tracked_read_is_stored_and_served():
    """What a tracked read returns is served afterwards; missing keys are not stored."""
    near = NearCache(10)
    ticket = near.begin(["a", "b"])
    near.finish(ticket, [b"1", None], [-1, -2])
    assert near.get("a") == b"1"
    assert near.get("b") is None
    assert len(near) == 1


def test_an_invalidation_overtaking_the_reply_keeps_it_out():
    """An invalidation between sending a read and storing its reply voids the reply."""
    near = NearCache(10)
    ticket = near.begin(["a"])
    near.invalidate(["a"])  # the key changed after the read was sent
    near.finish(ticket, [b"old"], [-1])
    assert near.get("a") is None
    # The next read, sent after the invalidation, is stored.
    _filled(near, "a", b"new")
    assert near.get("a") == b"new"


def test_concurrent_reads_of_one_key_are_voided_together():
    """Two reads in flight: one invalidation voids both; a later one is stored."""
    near = NearCache(10)
    first, second = near.begin(["a"]), near.begin(["a"])
    near.invalidate(["a"])
    third = near.begin(["a"])
    near.finish(first, [b"1"], [-1])
    near.finish(second, [b"2"], [-1])
    assert near.get("a") is None
    near.finish(third, [b"3"], [-1])
    assert near.get("a") == b"3"


def test_a_flush_voids_every_read_in_flight():
    """A flush (channel lost or re-established) drops everything and voids tickets."""
    near = NearCache(10)
    _filled(near, "a", b"1")
    ticket = near.begin(["b"])
    near.flush()
    near.finish(ticket, [b"2"], [-1])
    assert near.get("a") is None and near.get("b") is None
    assert near.flushes == 1


def test_abandoned_reads_leave_no_bookkeeping():
    """A failed or cancelled read is forgotten: pending state does not grow."""
    near = NearCache(10)
    for _ in range(100):
        near.abandon(near.begin(["a", "b"]))
    assert near._pending == {}


def test_entries_expire_no_later_than_their_key():
    """The local deadline counts from when the read was sent, by the key's PTTL."""
    clock = Clock()
    near = NearCache(10, clock=clock)
    ticket = near.begin(["a"])
    clock.now += 0.05  # the reply takes 50 ms
    near.finish(ticket, [b"1"], [200])
    clock.now += 0.149
    assert near.get("a") == b"1"
    clock.now += 0.002  # 201 ms after the read was sent: past the key's expiry
    assert near.get("a") is None


def test_the_store_is_bounded_least_recently_used_first():
    """maxsize entries at most; the least recently used go first."""
    near = NearCache(3)
    for key in "abc":
        _filled(near, key, key.encode())
    assert near.get("a") == b"a"  # a is now the most recently used
    _filled(near, "d", b"d")
    assert len(near) == 3
    assert near.get("b") is None
    assert [near.get(k) for k in "acd"] == [b"a", b"c", b"d"]


def test_the_read_path_polls_for_invalidations_at_most_every_interval():
    """get() calls the poll hook, throttled, so a busy reader still applies invalidations."""
    clock = Clock()
    near = NearCache(10, clock=clock)
    calls = []
    near.on_poll(lambda: calls.append(clock.now))
    for _ in range(10):
        near.get("a")
    assert len(calls) == 1
    clock.now += 0.001
    near.get("a")
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("message", "keys"),
    [
        ([b"message", b"__redis__:invalidate", [b"a", b"b"]], ["a", b"b".decode()]),
        ([b"message", b"__redis__:invalidate", None], None),
        ([b"subscribe", b"__redis__:invalidate", 1], []),
        ([b"pong", b""], []),
        (b"PONG", []),
    ],
)
def test_invalidation_messages_are_parsed(message, keys):
    """Key lists, flush-all (null) and non-invalidation messages."""
    assert invalidated_keys(message) == keys
