"""Exactness under contention: processes x threads, and many tasks, on one sliding-window key.

The limiter decides on the server's clock, which the test cannot read per hit. Each hit is
logged instead with the client's time just before it was sent (``b``) and just after its
reply (``a``); its server time ``s`` lies in ``[b, a]`` because the redis-server runs on
this machine, on the same clock (checked before and after the run). The checks only use
what that bracket proves, so they can never fail an exact limiter:

* **never too many**: hits *certainly* inside an interval ``[x, x + period)`` (``b >= x``
  and ``a < x + period``) number at most ``limit``. It suffices to try ``x`` = every ``b``.
* **never too few** (demand far above the limit): hits *possibly* inside a window
  (``a >= x`` and ``b < x + period``) are at least 45 of the 50, for windows in the steady
  part of the run.

Latencies stay far below the 2 s period (asserted), so the bracket is tight enough for
these checks to bite (tried by hand with this harness): a limit of 51 (one hit too many
per window) or a token bucket "50/2s" (its burst on top of its rate, ~95 per 2 s) fails
the first check; a limit of 40 fails the second.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid

import pytest

import kvkit
from tests.appservers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.redis]

LIMIT, PERIOD = 50, 2.0
DURATION = 5.0
TASKS = 200


def check_clock(url: str) -> None:
    """The server's TIME lies between two readings of this process's clock."""
    import redis

    with redis.Redis.from_url(url) as raw:
        for _ in range(5):
            before = time.time()
            seconds, micros = raw.time()
            after = time.time()
            server = seconds + micros / 1e6
            assert before - 0.002 <= server <= after + 0.002


def check_exact(log: list[tuple[float, float, bool]], start: float, end: float) -> None:
    """Apply both checks of the module docstring to ``(before, after, allowed)`` records."""
    latencies = [a - b for b, a, _ in log]
    assert statistics.median(latencies) < 0.2, "hits too slow for the bracket to be useful"
    admitted = sorted((b, a) for b, a, allowed in log if allowed)
    assert len(log) > 20 * len(admitted), "demand must far exceed the limit"
    worst = 0
    for j, (x, _) in enumerate(admitted):
        certainly = sum(1 for b, a in admitted[j:] if a < x + PERIOD)
        worst = max(worst, certainly)
    assert worst <= LIMIT, f"{worst} hits admitted within one {PERIOD} s interval"
    assert worst >= LIMIT - 5  # the bound is met, not merely respected
    x = start + 0.5
    while x + PERIOD <= end - 0.5:
        possibly = sum(1 for b, a in admitted if a >= x and b < x + PERIOD)
        assert possibly >= LIMIT - 5, f"only {possibly} admitted in [{x - start:.1f} s, +2 s)"
        x += 0.1


def test_processes_and_threads_never_exceed_the_limit(redis_url):
    """4 processes x 8 threads on one key of "50/2s": exact, and saturated."""
    check_clock(redis_url)
    prefix = "t" + uuid.uuid4().hex[:12]
    start = time.time() + 2.0  # time for the workers to import kvkit
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.ratelimit_hammer",
                redis_url,
                prefix,
                repr(start),
                repr(DURATION),
                "8",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    log: list[tuple[float, float, bool]] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        log += [(b, a, allowed) for b, a, allowed in json.loads(out)]
    check_clock(redis_url)
    check_exact(log, start, start + DURATION)


async def test_tasks_never_exceed_the_limit(redis_url):
    """200 tasks on one event loop hammering one key of "50/2s": exact, and saturated."""
    check_clock(redis_url)
    # A connection per task: redis-py's asyncio pool is not fair to waiters, so with fewer
    # connections than tasks one task can starve past the pool timeout (BackendTimeout).
    settings = kvkit.Settings(
        url=redis_url, prefix="t" + uuid.uuid4().hex[:12], max_connections=TASKS
    )
    log: list[tuple[float, float, bool]] = []
    async with kvkit.AsyncClient(settings=settings) as client:
        limiter = client.rate_limiter("hammer", "50/2s")
        start = time.time()
        end = start + DURATION

        async def hammer() -> None:
            while True:
                before = time.time()
                if before >= end:
                    return
                allowed = (await limiter.hit("hot")).allowed
                log.append((before, time.time(), allowed))

        await asyncio.gather(*(hammer() for _ in range(TASKS)))
    check_clock(redis_url)
    check_exact(log, start, end)
