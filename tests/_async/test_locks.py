"""The Lock protocol on every backend (memory, fakeredis, real Redis, real Cluster).

Short TTLs expire locks on purpose; the waits around them are several times longer, so a
loaded machine does not turn a test into a coin toss.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import time

import pytest

import kvkit
from kvkit._compat import AsyncRepeater, AsyncWorkers, asleep


async def test_acquire_and_release(client):
    """acquire() takes the lock and sets a token; release() gives it back and clears it."""
    lock = client.lock("jobs")
    assert isinstance(lock, kvkit.AsyncLock)
    assert lock.name == "jobs"
    assert lock.token is None
    assert await lock.locked() is False
    assert await lock.acquire() is True
    assert isinstance(lock.token, int) and lock.token >= 1
    assert await lock.locked() is True
    await lock.release()
    assert lock.token is None
    assert await lock.locked() is False


async def test_context_manager_holds_the_lock_inside_the_block(client):
    """`with lock:` holds it inside the block and releases it after."""
    async with client.lock("jobs") as lock:
        assert lock.token is not None
        assert await client.lock("jobs").locked() is True
    assert lock.token is None
    assert await lock.locked() is False


async def test_block_exception_releases_and_propagates(client):
    """An exception in the block releases the lock and is re-raised unchanged."""
    lock = client.lock("jobs")
    with pytest.raises(ZeroDivisionError):
        async with lock:
            1 / 0  # noqa: B018 - the block fails on purpose
    assert await lock.locked() is False


async def test_other_holder_makes_acquire_time_out(client):
    """A held lock makes acquire() return False after its timeout, and `with` raise."""
    holder = client.lock("jobs")
    assert await holder.acquire()
    waiter = client.lock("jobs", timeout=0.1)
    start = time.monotonic()
    assert await waiter.acquire() is False
    assert time.monotonic() - start >= 0.09
    assert waiter.token is None
    assert await waiter.acquire(timeout=0.05) is False
    with pytest.raises(kvkit.LockTimeout, match="jobs") as caught:
        async with waiter:
            pytest.fail("the block must not run")  # pragma: no cover
    assert isinstance(caught.value, TimeoutError)
    await holder.release()


async def test_non_blocking_attempts_return_at_once(client):
    """blocking=False and timeout=0 try once and never wait."""
    holder = client.lock("jobs")
    assert await holder.acquire(blocking=False) is True
    other = client.lock("jobs", timeout=5)
    start = time.monotonic()
    assert await other.acquire(blocking=False) is False
    assert await other.acquire(timeout=0) is False
    assert time.monotonic() - start < 1.0
    await holder.release()
    assert await other.acquire(blocking=False) is True
    await other.release()


async def test_lock_is_not_reentrant(client):
    """The holding object cannot take the lock a second time."""
    lock = client.lock("jobs")
    assert await lock.acquire()
    token = lock.token
    assert await lock.acquire(timeout=0.05) is False
    assert lock.token == token
    await lock.release()


async def test_release_without_holding_raises_not_owned(client):
    """release() of a lock this object does not hold raises LockNotOwned."""
    lock = client.lock("jobs")
    with pytest.raises(kvkit.LockNotOwned):
        await lock.release()
    assert await lock.acquire()
    await lock.release()
    with pytest.raises(kvkit.LockNotOwned):
        await lock.release()
    assert issubclass(kvkit.LockNotOwned, kvkit.KVKitError)


async def test_release_after_expiry_raises_not_owned(client):
    """A hold that outlived its ttl cannot release: LockNotOwned, and the object is free."""
    lock = client.lock("jobs", ttl=0.05, auto_renew=False)
    assert await lock.acquire()
    await asleep(0.12)
    assert await lock.locked() is False
    with pytest.raises(kvkit.LockNotOwned, match="expired or was taken over"):
        await lock.release()
    assert lock.token is None
    assert await lock.acquire(timeout=0)  # the object can be used again
    await lock.release()


async def test_only_the_owner_can_release_or_extend(client):
    """An expired holder can neither release nor extend the new owner's lock."""
    old = client.lock("jobs", ttl=0.05, auto_renew=False)
    assert await old.acquire()
    await asleep(0.12)
    new = client.lock("jobs", ttl=5)
    assert await new.acquire(timeout=0)
    assert new.token > old.token
    assert await old.extend(5) is False
    with pytest.raises(kvkit.LockNotOwned):
        await old.release()
    assert await new.locked() is True  # untouched by the old holder
    await new.release()


async def test_lost_lock_in_with_block_raises_not_owned(client):
    """A `with` block that outlives its lock raises LockNotOwned at the end."""
    with pytest.raises(kvkit.LockNotOwned):
        async with client.lock("jobs", ttl=0.05, auto_renew=False):
            await asleep(0.12)


async def test_failed_block_wins_over_lost_lock(client):
    """When the block raised and the lock was lost too, the block's exception propagates."""
    with pytest.raises(KeyError):
        async with client.lock("jobs", ttl=0.05, auto_renew=False):
            await asleep(0.12)
            raise KeyError("from the block")


async def test_tokens_strictly_increase_per_name(client):
    """Each acquisition of a name gets a larger token, also after an expiry; names differ."""
    tokens = []
    for _ in range(3):
        lock = client.lock("jobs")
        assert await lock.acquire()
        tokens.append(lock.token)
        await lock.release()
    expiring = client.lock("jobs", ttl=0.05, auto_renew=False)
    assert await expiring.acquire()
    tokens.append(expiring.token)
    await asleep(0.15)  # the lock expires; its counter must not
    lock = client.lock("jobs")
    assert await lock.acquire()
    tokens.append(lock.token)
    await lock.release()
    assert tokens == sorted(set(tokens)) and len(tokens) == 5
    other = client.lock("other-name")
    assert await other.acquire()
    assert other.token == 1  # a counter per name
    await other.release()


async def test_extend_resets_the_ttl(client):
    """extend() keeps a lock past its original ttl; extend(ttl) sets a new one."""
    lock = client.lock("jobs", ttl=0.2, auto_renew=False)
    assert await lock.acquire()
    await asleep(0.1)
    assert await lock.extend(2) is True
    await asleep(0.25)  # past the original 0.2 s
    assert await lock.locked() is True
    assert await lock.extend() is True  # the lock's own ttl again
    [info] = await client.locks()
    assert 0 < info.ttl <= 0.2
    await lock.release()
    assert await lock.extend() is False  # holds nothing now


async def test_extend_after_expiry_is_false(client):
    """extend() of a hold that expired returns False and does not revive it."""
    lock = client.lock("jobs", ttl=0.05, auto_renew=False)
    assert await lock.acquire()
    await asleep(0.12)
    assert await lock.extend(5) is False
    assert await lock.locked() is False
    with pytest.raises(kvkit.LockNotOwned):
        await lock.release()


async def test_auto_renew_keeps_a_short_lock(client):
    """With auto_renew the lock outlives its ttl while held, and releases cleanly."""
    lock = client.lock("jobs", ttl=0.4)  # renewed every 0.13 s
    assert await lock.acquire()
    other = client.lock("jobs")
    for _ in range(4):
        await asleep(0.12)
        assert await other.acquire(blocking=False) is False
    await lock.release()  # no LockNotOwned: it was owned throughout
    assert await lock.locked() is False


async def test_release_right_after_acquire_is_prompt(client):
    """Releasing at once, before the renewal has even started, neither waits nor warns."""
    lock = client.lock("jobs", ttl=30)  # a renewal would come only after 10 s
    start = time.monotonic()
    for _ in range(30):
        assert await lock.acquire()
        await lock.release()
    assert time.monotonic() - start < 5.0


async def test_renewal_stopped_before_it_started_never_runs(client):
    """A renewal stopped before it got going (a release right after acquire) never calls."""
    calls = []

    async def renew() -> bool:
        calls.append(1)
        return True

    repeater = AsyncRepeater(0.01, renew)
    repeater.stop()  # the release came first
    repeater.start()
    await asleep(0.1)
    assert calls == []
    running = AsyncRepeater(0.01, renew)
    running.start()
    await asleep(0.1)
    running.stop()
    assert calls  # the control: a started repeater does call


async def test_dropped_lock_object_stops_renewing(client):
    """A held lock object dropped without release stops renewing; the lock expires."""
    lock = client.lock("jobs", ttl=0.1)
    assert await lock.acquire()
    del lock
    gc.collect()
    await asleep(0.3)
    assert await client.lock("jobs").locked() is False


async def test_waiter_gets_the_lock_when_it_is_released(client):
    """A waiting acquire takes the lock soon after the holder releases it."""
    holder = client.lock("jobs")
    assert await holder.acquire()
    got = []

    async def wait() -> None:
        waiter = client.lock("jobs", timeout=5)
        got.append(await waiter.acquire())
        got.append(time.monotonic())
        await waiter.release()

    workers = AsyncWorkers()
    workers.start(wait)
    await asleep(0.1)
    released_at = time.monotonic()
    await holder.release()
    await workers.join()
    assert got[0] is True
    assert got[1] - released_at < 1.0


async def test_waiter_gets_the_lock_when_the_holder_expires(client):
    """A holder that stops renewing blocks a waiter only until its ttl runs out."""
    holder = client.lock("jobs", ttl=0.2, auto_renew=False)
    assert await holder.acquire()
    start = time.monotonic()
    waiter = client.lock("jobs", timeout=5)
    assert await waiter.acquire()
    assert 0.1 < time.monotonic() - start < 2.0
    assert waiter.token > holder.token
    await waiter.release()


async def test_shared_object_serializes_its_users(client):
    """Callers sharing one lock object take turns: never two inside at once."""
    lock = client.lock("jobs", timeout=10)
    inside = []
    overlaps = []
    tokens = []

    async def work() -> None:
        for _ in range(3):
            async with lock:
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                tokens.append(lock.token)
                await asleep(0.005)
                inside.pop()

    workers = AsyncWorkers()
    for _ in range(4):
        workers.start(work)
    await workers.join()
    assert overlaps == []
    assert tokens == sorted(set(tokens)) and len(tokens) == 12


async def test_locks_lists_held_locks(client):
    """client.locks() lists held locks with owner, token and remaining ttl; nothing else."""
    assert await client.locks() == []
    first = client.lock("a-lock", ttl=20)
    second = client.lock("b-lock", ttl=10)
    assert await first.acquire() and await second.acquire()
    await client.cache.get_or_set("k", lambda: 1)  # its single-flight lock is not listed
    infos = await client.locks()
    assert [i.name for i in infos] == ["a-lock", "b-lock"]
    a, b = infos
    assert isinstance(a, kvkit.LockInfo)
    assert a.token == first.token and b.token == second.token
    assert a.owner and a.owner.count(":") >= 2
    assert 0 < a.ttl <= 20 and 0 < b.ttl <= 10
    assert a.to_dict()["name"] == "a-lock"
    await first.release()
    await second.release()
    assert await client.locks() == []  # the fencing counters are not listed either


async def test_ttl_and_timeout_accept_timedelta(client):
    """ttl and timeout may be timedeltas."""
    lock = client.lock("jobs", ttl=dt.timedelta(seconds=5), timeout=dt.timedelta(0))
    assert await lock.acquire()
    [info] = await client.locks()
    assert 4 < info.ttl <= 5
    await lock.release()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "must not be empty"),
        ({"name": "a{b}"}, "hash tag"),
        ({"name": 7}, "must be a str"),
        ({"name": "x" * 1025}, "limit"),
        ({"ttl": 0}, "positive"),
        ({"ttl": -1}, "positive"),
        ({"ttl": math.nan}, "finite"),
        ({"ttl": math.inf}, "finite"),
        ({"ttl": "30"}, "number of seconds"),
        ({"ttl": True}, "number of seconds"),
        ({"timeout": -0.1}, "zero or positive"),
        ({"timeout": math.nan}, "finite"),
        ({"timeout": math.inf}, "finite"),
        ({"auto_renew": "yes"}, "bool"),
    ],
)
async def test_bad_lock_arguments_raise_before_any_io(client, kwargs, message):
    """Bad name, ttl, timeout or auto_renew raise InvalidArgument; nothing is stored."""
    args = {"name": "jobs", **kwargs}
    with pytest.raises(kvkit.InvalidArgument, match=message):
        client.lock(args.pop("name"), **args)
    assert await client.locks() == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lock: lock.acquire(timeout=-1), "zero or positive"),
        (lambda lock: lock.acquire(timeout=math.inf), "finite"),
        (lambda lock: lock.acquire(blocking=False, timeout=1), "blocking=False"),
        (lambda lock: lock.acquire(blocking="no"), "bool"),
        (lambda lock: lock.extend(0), "positive"),
        (lambda lock: lock.extend(math.nan), "finite"),
    ],
)
async def test_bad_call_arguments_raise_before_any_io(client, call, message):
    """Bad acquire/extend arguments raise InvalidArgument; nothing is stored."""
    lock = client.lock("jobs")
    with pytest.raises(kvkit.InvalidArgument, match=message):
        await call(lock)
    assert await lock.locked() is False


async def test_repr_names_the_lock_without_secrets(client):
    """repr() shows the name, state and redacted backend URL."""
    lock = client.lock("jobs")
    assert "'jobs'" in repr(lock) and "not held" in repr(lock)
    assert await lock.acquire()
    assert "held" in repr(lock)
    await lock.release()
