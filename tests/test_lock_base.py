"""kvkit._lock_base: the no-I/O half of locks (key layout, stored values, timing)."""

from __future__ import annotations

import math

import pytest
from redis.crc import key_slot

import kvkit
from kvkit._lock_base import (
    POLL_CAP,
    fence_key,
    holder_info,
    lock_key,
    lock_value,
    name_from_key,
    new_owner,
    parse_acquire,
    poll_delay,
    renew_interval,
)

NAMES = ["job", "a:b", "with space", "ünï", "*?[", "x" * 200]


@pytest.mark.parametrize("name", NAMES)
def test_lock_and_counter_share_a_cluster_slot(name):
    """A lock and its fencing counter hash to one Cluster slot, whatever the name."""
    key = lock_key("kvkit:lock:", name)
    assert key == f"kvkit:lock:{{{name}}}"
    assert key_slot(key.encode()) == key_slot(fence_key(key).encode())
    assert name_from_key("kvkit:lock:", key) == name


def test_only_lock_keys_have_a_name():
    """Counters, single-flight cache locks and foreign keys are not lock keys."""
    prefix = "kvkit:lock:"
    assert name_from_key(prefix, fence_key(lock_key(prefix, "job"))) is None
    assert name_from_key(prefix, "kvkit:lock:kvkit:cache:k") is None
    assert name_from_key(prefix, "kvkit:lock:{}") is None
    assert name_from_key(prefix, "other:lock:{job}") is None


def test_owner_ids_are_unique_and_readable():
    """Owner ids are host:pid:random, fresh each time."""
    owners = {new_owner() for _ in range(100)}
    assert len(owners) == 100
    host, pid, random_part = next(iter(owners)).rsplit(":", 2)
    assert host and int(pid) > 0 and len(random_part) == 16


def test_holder_info_reads_kvkit_values_and_tolerates_others():
    """A stored token:owner is parsed; a value kvkit did not write is listed as unreadable."""
    info = holder_info("job", lock_value(42, "h:1:ab"), 1500)
    assert (info.token, info.owner, info.ttl) == (42, "h:1:ab", 1.5)
    assert holder_info("job", b"garbage", 10).token is None
    assert holder_info("job", b"\xff\xfe:x", 10).owner == ""
    assert holder_info("job", b"", -1).ttl == math.inf
    assert holder_info("job", b"", -1).to_dict()["ttl"] is None
    assert isinstance(info, kvkit.LockInfo)


def test_acquire_reply_parsing():
    """The script's reply: token as bytes (exact) or 0 with the holder's pttl."""
    assert parse_acquire([b"9007199254740993", 0]) == (9007199254740993, 0)
    assert parse_acquire([0, 250]) == (0, 250)


def test_poll_delay_is_bounded():
    """Waits grow to the cap, never past the deadline or the holder's remaining ttl."""
    assert all(0 < poll_delay(a, None, -1) <= POLL_CAP for a in range(20))
    assert poll_delay(10, 0.01, -1) <= 0.01
    assert poll_delay(10, None, 3) <= 0.003
    assert poll_delay(10, -1.0, -1) == 0.0
    assert renew_interval(30_000) == 10.0


def test_lock_errors_join_the_hierarchy():
    """LockTimeout is a KVKitError and a TimeoutError; LockNotOwned a KVKitError; both pickle."""
    import pickle

    assert issubclass(kvkit.LockTimeout, (kvkit.KVKitError, TimeoutError))
    assert issubclass(kvkit.LockNotOwned, kvkit.KVKitError)
    assert not issubclass(kvkit.LockNotOwned, kvkit.BackendError)
    for cls in (kvkit.LockTimeout, kvkit.LockNotOwned):
        copy = pickle.loads(pickle.dumps(cls("lost")))
        assert type(copy) is cls and str(copy) == "lost"
        assert repr(cls) == f"<class 'kvkit.{cls.__name__}'>"
