"""kvkit._metrics and the metered decorator: buckets, percentiles, threads, settings."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import kvkit
from kvkit._async.metered import metered as ametered
from kvkit._metrics import BOUNDS, Recorder, cumulative, percentile
from kvkit._sync.metered import metered
from kvkit._urls import parse_url

URL = parse_url("redis://:pw@127.0.0.1:6390/2")


def test_percentile_interpolates_in_buckets():
    """p50/p99 come from the buckets like Prometheus' histogram_quantile."""
    counts = [0] * (len(BOUNDS) + 1)
    assert percentile(counts, 0.5) is None
    index = BOUNDS.index(0.001)
    counts[index] = 100  # all between 0.5 ms and 1 ms
    assert percentile(counts, 0.5) == pytest.approx(0.00075)
    assert percentile(counts, 0.99) == pytest.approx(0.0005 + 0.0005 * 0.99)
    counts[-1] = 100  # half beyond the last bound
    assert percentile(counts, 0.99) == BOUNDS[-1]
    assert list(cumulative(counts))[-1] == (float("inf"), 200)


def test_observations_land_in_their_bucket():
    """A latency lands in the first bucket whose upper bound it does not exceed."""
    meter = Recorder().meter("cache", URL)
    for elapsed in (0.0, 0.00001, 0.0000101, 0.3, 99.0):
        meter.observe("get", elapsed, True)
    meter.observe("get", 0.002, False)
    ((op, cell),) = meter.cells()
    buckets = cell[: len(BOUNDS) + 1]
    assert op == "get"
    assert buckets[0] == 2  # 0 and exactly 10 us
    assert buckets[1] == 1
    assert buckets[BOUNDS.index(0.5)] == 1
    assert buckets[-1] == 1
    assert buckets[BOUNDS.index(0.0025)] == 1
    assert cell[len(BOUNDS) + 1] == 1  # errors
    assert cell[-1] == pytest.approx(99.3020201)


def test_threads_lose_no_count():
    """8 threads recording at once: every observation is counted."""
    meter = Recorder().meter("queue", URL)

    def work():
        for i in range(5000):
            meter.observe("push", 0.0001 * (i % 7), i % 10 != 0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ((_, cell),) = meter.cells()
    assert sum(cell[: len(BOUNDS) + 1]) == 40_000
    assert cell[len(BOUNDS) + 1] == 4_000


def test_snapshot_is_plain_json_and_hides_the_url():
    """The snapshot is JSON-ready and names the backend by scheme only."""
    recorder = Recorder()
    recorder.meter("sessions", URL).observe("get", 0.001, True)
    recorder.cache_totals.hits += 3
    snapshot = recorder.snapshot()
    text = json.dumps(snapshot, allow_nan=False)
    assert "pw" not in text and "6390" not in text
    (row,) = snapshot["operations"]
    assert row["backend"] == "redis" and row["count"] == row["ok"] == 1
    assert snapshot["cache"] == {"hits": 3, "misses": 0, "hit_ratio": 1.0}
    assert snapshot["bounds"] == list(BOUNDS)


def test_settings_metrics_from_env():
    """KVKIT_METRICS turns recording off; a bad value names the variable."""
    assert kvkit.Settings().metrics is True
    assert kvkit.Settings.from_env(environ={"KVKIT_METRICS": "false"}).metrics is False
    with pytest.raises(kvkit.ConfigError, match="KVKIT_METRICS"):
        kvkit.Settings.from_env(environ={"KVKIT_METRICS": "sometimes"})
    with pytest.raises(kvkit.ConfigError):
        kvkit.Settings(metrics="yes")  # type: ignore[arg-type]


class _Limiter:
    """What a later service looks like: a class of its own, measured by one decorator line."""

    def hit(self, key):
        if key == "bad":
            raise kvkit.InvalidArgument("bad key")
        return True

    def reset(self, key):
        return None


def test_a_new_service_is_measured_with_two_lines():
    """@metered on the class and recorder.build() where the client makes it: counted."""
    limiter_class = metered("limiter", "hit", "reset")(_Limiter)
    recorder = Recorder()
    limiter = recorder.build(limiter_class, "limiter", URL)
    assert isinstance(limiter, limiter_class) and type(limiter).__name__ == "_Limiter"
    limiter.hit("k")
    with pytest.raises(kvkit.InvalidArgument):
        limiter.hit("bad")
    limiter.reset("k")
    rows = {r["op"]: r for r in recorder.snapshot()["operations"]}
    assert (rows["hit"]["ok"], rows["hit"]["error"], rows["reset"]["ok"]) == (1, 1, 1)
    assert rows["hit"]["service"] == "limiter"
    assert type(limiter).hit.__name__ == "hit"
    assert limiter_class.hit.__qualname__ == "_Limiter.hit"  # the class itself is unchanged
    plain = Recorder(enabled=False).build(limiter_class, "limiter", URL)
    assert type(plain) is limiter_class and plain._meter is None
    with pytest.raises(TypeError):
        recorder.build(dict, "limiter", URL)  # not decorated


def test_async_and_sync_record_alike():
    """The async decorator records the same figures as the sync one."""

    class AsyncLocks:
        async def acquire(self, name):
            await asyncio.sleep(0)
            return True

    measured = ametered("lock", "acquire")(AsyncLocks)
    recorder = Recorder()
    locks = recorder.build(measured, "lock", URL)
    assert asyncio.run(locks.acquire("x")) is True
    (row,) = recorder.snapshot()["operations"]
    assert (row["service"], row["op"], row["count"], row["ok"]) == ("lock", "acquire", 1, 1)
