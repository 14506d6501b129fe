"""``e2e`` rows: end-to-end messages/s of no-op jobs, kvkit queues vs arq and rq.

Each operation enqueues ``MESSAGES`` no-op jobs (untimed), then times how long N
consumers take to run them all: kvkit's ``queue.consume(handler, concurrency=N,
max_messages=...)`` against

* arq (asyncio): a burst ``Worker(max_jobs=N)`` on the async kvkit client (tasks);
  ``poll_delay=0`` (arq's default 0.5 s would make it poll-bound), results not kept.
* rq (threads): N ``SimpleWorker(burst=True)`` in threads of this process, against the
  sync kvkit client's N worker threads. rq is built for one worker per process and
  installs signal handlers (shutdown, job timeouts); here those are no-ops so that its
  workers can run in threads of the benchmark process, like kvkit's, and job results are
  not kept (``result_ttl=0``).

kvkit acknowledges every message (deletes it) and leases it (at-least-once, redelivery on
a crash); arq and rq keep their own bookkeeping (job keys, results, registries). The ratio
is kvkit's messages/s over the peer's.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import redis

from .common import host_port, kvkit_async, kvkit_sync
from .harness import Case, Env, Skip, register

MESSAGES = 500
"""Jobs enqueued and drained per timed operation (``QUICK_MESSAGES`` with ``--quick``)."""

QUICK_MESSAGES = 100

CONSUMERS = (1, 4, 16)

_runs: list[None] = []
"""One item per job run, by every side (``list.append`` is atomic: threads may share it)."""


def noop() -> None:
    """The rq job: count the run, nothing else (importable by name for rq's workers)."""
    _runs.append(None)


async def arq_noop(ctx: dict[str, Any]) -> None:
    """The arq job."""
    _runs.append(None)


def _ran(what: str, expected: int) -> None:
    """Check that the measurement just taken ran every job exactly once, and reset."""
    runs = len(_runs)
    _runs.clear()
    if runs != expected:
        raise RuntimeError(f"{what} ran {runs} jobs, not {expected}")


# --------------------------------------------------------------------------- arq


async def _vs_arq(env: Env, consumers: int) -> Case:
    try:
        from arq import create_pool
        from arq.connections import RedisSettings
        from arq.worker import Worker
    except ImportError:
        raise Skip("arq is not installed (pip install arq)") from None
    host, port, db, password = host_port(env)
    messages = QUICK_MESSAGES if env.quick else MESSAGES
    client = kvkit_async(env)
    queue = client.queue("e2e-arq")
    await queue.purge(dead=True)
    pool = await create_pool(
        RedisSettings(host=host, port=port, database=db, password=password),
        default_queue_name="kvbench:arq:queue",
    )
    payload = {"job": "noop"}

    async def handler(message: Any) -> None:
        _runs.append(None)

    async def kvkit_op() -> float:
        await queue.push_many([payload] * messages)
        _runs.clear()
        start = time.perf_counter()
        await queue.consume(handler, concurrency=consumers, max_messages=messages)
        elapsed = time.perf_counter() - start
        _ran("kvkit", messages)
        return elapsed * MESSAGES / messages  # per MESSAGES jobs: see items=

    async def arq_op() -> float:
        for _ in range(messages):
            await pool.enqueue_job("arq_noop", _queue_name="kvbench:arq:queue")
        worker = Worker(
            functions=[arq_noop],  # type: ignore[list-item]
            redis_pool=pool,
            queue_name="kvbench:arq:queue",
            burst=True,
            max_jobs=consumers,
            handle_signals=False,
            poll_delay=0,
            keep_result=0,
        )
        _runs.clear()
        start = time.perf_counter()
        await worker.main()
        elapsed = time.perf_counter() - start
        await worker.close()
        _ran("arq", messages)
        return elapsed * MESSAGES / messages  # per MESSAGES jobs: see items=

    async def teardown() -> None:
        await queue.purge(dead=True)
        await client.aclose()
        await pool.aclose()

    return Case(kvkit_op, arq_op, teardown)


# --------------------------------------------------------------------------- rq


def _vs_rq(env: Env, consumers: int) -> Case:
    try:
        from rq import Queue, SimpleWorker
        from rq.timeouts import BaseDeathPenalty
    except ImportError:
        raise Skip("rq is not installed (pip install rq)") from None
    host, port, db, password = host_port(env)
    messages = QUICK_MESSAGES if env.quick else MESSAGES

    class NoDeathPenalty(BaseDeathPenalty):
        # rq times jobs out with SIGALRM, which only works in the main thread.
        def setup_death_penalty(self) -> None:
            pass

        def cancel_death_penalty(self) -> None:
            pass

    class ThreadWorker(SimpleWorker):
        death_penalty_class = NoDeathPenalty

        def _install_signal_handlers(self) -> None:
            pass  # signal.signal only works in the main thread

    client = kvkit_sync(env)
    queue = client.queue("e2e-rq")
    queue.purge(dead=True)
    conn = redis.Redis(host=host, port=port, db=db, password=password)
    rq_queue = Queue("kvbench-rq", connection=conn)
    rq_queue.empty()
    payload = {"job": "noop"}

    def handler(message: Any) -> None:
        _runs.append(None)

    def kvkit_op() -> float:
        queue.push_many([payload] * messages)
        _runs.clear()
        start = time.perf_counter()
        queue.consume(handler, concurrency=consumers, max_messages=messages)
        elapsed = time.perf_counter() - start
        _ran("kvkit", messages)
        return elapsed * MESSAGES / messages  # per MESSAGES jobs: see items=

    def rq_op() -> float:
        rq_queue.enqueue_many(
            [Queue.prepare_data(noop, result_ttl=0, ttl=600) for _ in range(messages)]
        )
        workers = [ThreadWorker([rq_queue], connection=conn) for _ in range(consumers)]
        threads = [
            threading.Thread(target=w.work, kwargs={"burst": True, "logging_level": "ERROR"})
            for w in workers
        ]
        _runs.clear()
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        _ran("rq", messages)
        return elapsed * MESSAGES / messages  # per MESSAGES jobs: see items=

    def teardown() -> None:
        queue.purge(dead=True)
        rq_queue.empty()
        client.close()
        conn.close()

    return Case(kvkit_op, rq_op, teardown)


for _n in CONSUMERS:
    register(
        "e2e",
        f"consume, {_n} consumer{'s' if _n > 1 else ''} (async)",
        mode="timed",
        baseline=f"arq worker, max_jobs={_n}",
        ops=2,
        items=MESSAGES,
        unit="items/s",
        needs_redis=True,
        tags=("queues", "peers"),
        note=f"{MESSAGES} no-op jobs per measurement; arq with poll_delay=0",
    )(functools.partial(_vs_arq, consumers=_n))
for _n in CONSUMERS:
    register(
        "e2e",
        f"consume, {_n} consumer{'s' if _n > 1 else ''} (sync)",
        mode="timed",
        baseline=f"rq SimpleWorker x{_n} (threads)",
        ops=1,
        items=MESSAGES,
        unit="items/s",
        needs_redis=True,
        tags=("queues", "peers"),
        note=f"{MESSAGES} no-op jobs per measurement; rq workers in threads",
    )(functools.partial(_vs_rq, consumers=_n))
