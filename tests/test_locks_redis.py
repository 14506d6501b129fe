"""Locks against real servers: processes, kills, pauses, renewal and cancellation.

The conformance suite (tests/_async/test_locks.py) checks every method on every backend;
this module checks what only real processes and a real server can show: mutual exclusion
across processes and threads, a holder killed or paused mid-hold, renewal through a long
critical section, and async cancellation while the acquire script's reply is in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import attrs
import pytest

import kvkit
from tests.backends import settings_for

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.redis


def _prefix() -> str:
    return "l" + uuid.uuid4().hex[:10]


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c code args`` with kvkit importable; line-buffered text pipes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-u", "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _read_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    """The child's next stdout line, failing (with its stderr) if none comes in time."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        proc.kill()
        pytest.fail(f"child gave no line in {timeout} s; stderr: {proc.stderr.read()[-2000:]}")
    return result[0].strip()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


# -- mutual exclusion ---------------------------------------------------------------------------
INCREMENTER = """
import json, sys, threading, kvkit

url, prefix, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix))
seen = []

def work():
    for _ in range(rounds):
        with client.lock("counter", ttl=10, timeout=60) as lock:
            value = client.cache.get("n", 0)        # GET ...
            client.cache.set("n", value + 1)        # ... SET: a read-modify-write
            seen.append((value, lock.token))

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
client.close()
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_four_processes_of_four_threads_never_overlap(redis_url):
    """4 processes x 4 threads do GET/SET increments under one lock: the count is exact."""
    prefix, rounds = _prefix(), 10
    procs = [_child(INCREMENTER, redis_url, prefix, str(rounds)) for _ in range(4)]
    seen = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
            seen += [tuple(pair) for pair in json.loads(out)]
    finally:
        for proc in procs:
            _stop(proc)
    with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as client:
        assert client.cache.get("n") == 4 * 4 * rounds
        client.cache.clear()
    # Each increment read a distinct value, and the tokens grow in the order of the
    # critical sections: every holder's token is larger than its predecessors'.
    assert sorted(value for value, _ in seen) == list(range(4 * 4 * rounds))
    tokens_in_order = [token for _, token in sorted(seen)]
    assert tokens_in_order == sorted(set(tokens_in_order))


# -- a holder that dies or stalls ------------------------------------------------------------
HOLDER = """
import sys, time, kvkit

url, prefix, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix))
lock = client.lock("job", ttl=ttl)                 # auto_renew on
assert lock.acquire()
print(lock.token, flush=True)
sys.stdin.readline()                               # hold until told (or killed/stopped)
try:
    lock.release()
    print("released", flush=True)
except kvkit.LockNotOwned:
    print("LockNotOwned", flush=True)
"""


@pytest.mark.slow
def test_killed_holder_blocks_others_at_most_ttl(redis_url):
    """A holder SIGKILLed mid-hold (renewing a 1 s lock) blocks others for at most 1 s."""
    prefix = _prefix()
    proc = _child(HOLDER, redis_url, prefix, "1")
    try:
        held_token = int(_read_line(proc))
        time.sleep(0.5)  # a renewal or two happen
        with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as client:
            lock = client.lock("job", timeout=5)
            assert lock.acquire(blocking=False) is False
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at = time.monotonic()
            assert lock.acquire() is True
            waited = time.monotonic() - killed_at
            assert lock.token > held_token
            lock.release()
    finally:
        _stop(proc)
    # The last renewal left at most the ttl (1 s); polling adds at most ~0.1 s.
    assert 0.2 < waited < 1.4


@pytest.mark.slow
def test_paused_holder_loses_the_lock_and_has_the_lower_token(redis_url):
    """A stopped (SIGSTOP) holder's lock expires; on resume its release is LockNotOwned."""
    prefix = _prefix()
    proc = _child(HOLDER, redis_url, prefix, "0.5")
    try:
        paused_token = int(_read_line(proc))
        os.kill(proc.pid, signal.SIGSTOP)  # a long GC pause, a VM freeze...
        with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as client:
            new = client.lock("job", timeout=5)
            assert new.acquire() is True  # once the paused holder's ttl has run out
            assert new.token > paused_token
            os.kill(proc.pid, signal.SIGCONT)
            proc.stdin.write("release\n")
            proc.stdin.flush()
            assert _read_line(proc) == "LockNotOwned"
            assert new.locked() is True  # the paused holder's release did not touch it
            new.release()
    finally:
        _stop(proc)


# -- renewal -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_auto_renew_keeps_a_1s_lock_through_3s_of_work(redis_url):
    """Sync and async holders keep a 1 s lock for 3 s of work; nobody else gets in."""
    prefix = _prefix()
    settings = kvkit.Settings(url=redis_url, prefix=prefix)
    intruders: list[str] = []

    def sync_holder() -> None:
        with kvkit.Client(settings=settings) as client:
            with client.lock("sync-job", ttl=1):
                for _ in range(12):
                    time.sleep(0.25)
                    if client.lock("sync-job").acquire(blocking=False):
                        intruders.append("sync")

    async def async_holder() -> None:
        async with kvkit.AsyncClient(settings=settings) as client:
            async with client.lock("async-job", ttl=1):
                for _ in range(12):
                    await asyncio.sleep(0.25)
                    if await client.lock("async-job").acquire(blocking=False):
                        intruders.append("async")

    thread = threading.Thread(target=sync_holder)
    thread.start()
    asyncio.run(async_holder())  # raises LockNotOwned at the end if the lock was lost
    thread.join(10)
    assert not thread.is_alive()
    assert intruders == []
    with kvkit.Client(settings=settings) as client:
        assert client.locks() == []


def test_lost_lock_stops_renewing_and_warns(redis_url, caplog):
    """When a renewal finds the lock gone, renewing stops with a warning; release raises."""
    settings = kvkit.Settings(url=redis_url, prefix=_prefix())
    with kvkit.Client(settings=settings) as client:
        lock = client.lock("job", ttl=0.3)
        assert lock.acquire()
        # Another party deletes the key behind the holder's back (or it was evicted).
        client.redis().delete(f"{settings.prefix}:lock:{{job}}")
        with caplog.at_level("WARNING", logger="kvkit.lock"):
            time.sleep(0.4)  # one renewal (every 0.1 s) sees it
        assert any("lost" in r.getMessage() for r in caplog.records)
        with pytest.raises(kvkit.LockNotOwned):
            lock.release()


# -- cancellation ------------------------------------------------------------------------------
async def test_cancel_between_script_and_reply_leaves_no_lock(redis_url, monkeypatch):
    """An acquire cancelled after the script ran but before its reply leaves no lock."""
    from redis.asyncio.connection import Connection

    settings = kvkit.Settings(url=redis_url, prefix=_prefix())
    original = Connection.read_response
    armed = asyncio.Event()
    replies_held = []

    async def slow_reply(self, *args, **kwargs):
        if armed.is_set():
            armed.clear()  # only the acquire's reply: the undo reads at once
            replies_held.append(True)
            await asyncio.sleep(5)  # the script has run on the server; its reply waits
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "read_response", slow_reply)
    # The hook sits in redis-py's connection, which only the direct path uses: auto-pipelined
    # commands share a borrowed connection (their cancellation is tested with the pipeline).
    settings = attrs.evolve(settings, url=redis_url + "?auto_pipeline=false")
    async with kvkit.AsyncClient(settings=settings) as client:
        async with client.lock("warm-up"):  # loads the scripts: no NOSCRIPT round below
            pass
        lock = client.lock("job", ttl=30)
        armed.set()
        task = asyncio.ensure_future(lock.acquire())
        for _ in range(200):
            if replies_held:
                break
            await asyncio.sleep(0.01)
        assert replies_held, "the acquire never waited for its reply"
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        raw = client.redis()
        key = f"{settings.prefix}:lock:{{job}}"
        assert await raw.get(key + ":fence") == b"1"  # the script did run: token 1 taken
        assert await raw.exists(key) == 0  # ... and the lock it took was undone
        assert lock.token is None
        other = client.lock("job")
        assert await other.acquire(blocking=False) is True
        await other.release()


async def test_release_cancelled_before_its_script_was_sent_still_releases(redis_url, monkeypatch):
    """A release cancelled before its command left still frees the lock (finished shielded)."""
    from redis.asyncio.connection import Connection

    settings = kvkit.Settings(url=redis_url, prefix=_prefix())
    original = Connection.send_packed_command
    armed = asyncio.Event()
    sends_held = []

    async def slow_send(self, *args, **kwargs):
        if armed.is_set():
            armed.clear()  # only the release's own send: the shielded retry goes at once
            sends_held.append(True)
            await asyncio.sleep(5)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", slow_send)
    # As above: the hook is on the direct (not auto-pipelined) path.
    settings = attrs.evolve(settings, url=redis_url + "?auto_pipeline=false")
    async with kvkit.AsyncClient(settings=settings) as client:
        lock = client.lock("job", ttl=30)
        assert await lock.acquire()
        armed.set()
        task = asyncio.ensure_future(lock.release())
        for _ in range(200):
            if sends_held:
                break
            await asyncio.sleep(0.01)
        assert sends_held, "the release never reached its send"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # the shielded release runs on
        assert lock.token is None
        assert await lock.locked() is False
        assert await client.lock("job").acquire(blocking=False) is True


@pytest.mark.parametrize("backend", ["fakeredis", "redis"])
async def test_random_cancellations_leave_no_stale_lock(request, backend):
    """Acquires and releases cancelled at random moments never leave a lock behind."""
    rng = random.Random(7)
    async with kvkit.AsyncClient(settings=settings_for(request, backend)) as client:
        free = client.lock("free", ttl=30)
        holder = client.lock("busy", ttl=30)
        assert await holder.acquire()
        waiter = client.lock("busy", ttl=30, timeout=10)
        for _ in range(40):
            for lock in (free, waiter):
                task = asyncio.ensure_future(lock.acquire())
                await asyncio.sleep(rng.uniform(0, 0.003))
                task.cancel()
                done = await asyncio.gather(task, return_exceptions=True)
                if done[0] is True:  # acquired before the cancel: cancel its release
                    task = asyncio.ensure_future(lock.release())
                    await asyncio.sleep(rng.uniform(0, 0.002))
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    await asyncio.sleep(0.01)  # a release cut short finishes shielded
        assert await free.locked() is False
        assert [info.name for info in await client.locks()] == ["busy"]
        await holder.release()  # the holder's lock was never touched
        assert await client.locks() == []


# -- Sentinel ------------------------------------------------------------------------------------
@pytest.mark.sentinel
def test_locks_through_sentinel(sentinel_setup):
    """redis+sentinel:// runs the Redis lock driver: acquire, token, listing, release."""
    settings = kvkit.Settings(url=sentinel_setup.url, prefix=_prefix())
    with kvkit.Client(settings=settings) as client:
        with client.lock("job", ttl=5) as lock:
            assert lock.token == 1
            assert [info.name for info in client.locks()] == ["job"]
            assert client.lock("job").acquire(blocking=False) is False
        assert client.locks() == []
