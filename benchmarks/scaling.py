"""``scaling`` rows: cache.get throughput vs concurrency, with the default pool of 20.

The same ``cache.get`` as the ``cache`` rows (``benchmarks.cache_redis``), driven by N
threads sharing one sync client (N = 1..32) or N tasks sharing one async client
(N = 1..256), against redis-py / redis.asyncio ``GET`` + ``json`` driven the same way
with the same pool (``BlockingConnectionPool(max_connections=20)``). Past 20, callers wait
for a connection on both sides (kvkit's async client pipelines instead: its tasks share
one connection's round trips). The async rows run twice: auto-pipelined (the default) and
with ``?auto_pipeline=false``; the sync rows too: as by default, and with the opt-in
``?auto_pipeline=true``. ``--only scaling`` runs them; the chart ``scaling.png``
plots each side's ops/s against N.
"""

from __future__ import annotations

import functools

from .cache_redis import _async_single, _sync_single
from .harness import register

NO_PIPELINE = "cache.get [auto_pipeline=false]"
"""Name of the async rows without auto-pipelining (the chart's third curve)."""
THREAD_PIPELINE = "cache.get [auto_pipeline=true]"
"""Name of the sync rows with the (opt-in) thread auto-pipelining."""

THREADS = (1, 2, 4, 8, 16, 32)
TASKS = (1, 4, 16, 64, 256)

for _n in THREADS:
    register(
        "scaling",
        "cache.get",
        mode="threads",
        baseline="redis-py GET + json, same threads",
        ops=max(1200, 100 * _n),
        concurrency=_n,
    )(functools.partial(_sync_single, op="get", codec="json"))
for _n in THREADS:
    register(
        "scaling",
        THREAD_PIPELINE,
        mode="threads",
        baseline="redis-py GET + json, same threads",
        ops=max(1200, 100 * _n),
        concurrency=_n,
    )(functools.partial(_sync_single, op="get", codec="json", options="auto_pipeline=true"))
for _n in TASKS:
    register(
        "scaling",
        "cache.get",
        mode="concurrent",
        baseline="redis.asyncio GET + json, same tasks",
        ops=max(1200, 10 * _n),
        concurrency=_n,
    )(functools.partial(_async_single, op="get", codec="json"))
for _n in TASKS:
    register(
        "scaling",
        NO_PIPELINE,
        mode="concurrent",
        baseline="redis.asyncio GET + json, same tasks",
        ops=max(1200, 10 * _n),
        concurrency=_n,
    )(functools.partial(_async_single, op="get", codec="json", options="auto_pipeline=false"))
