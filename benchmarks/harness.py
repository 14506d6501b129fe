"""The comparison harness: a registry of rows, an interleaved runner and the results.

A row (:class:`Comparison`) names one kvkit operation and its baseline. Its ``setup``
receives the :class:`Env` (server URL, quick mode) and returns a :class:`Case`: the two
zero-argument operations to time and a ``teardown``. For async rows ``setup``, the ops
and ``teardown`` are coroutine functions; everything of one async row runs in one event
loop (``asyncio.run``), because redis.asyncio connections are bound to their loop.

Both sides run in the same process, interleaved: every round times kvkit and the
baseline over the same number of operations, split into slices that alternate
(kvkit, baseline, baseline, kvkit, ...; the next round starts with the other side), so
drift in machine load (CPU frequency, the redis-server sharing the CPUs, other processes)
hits both sides alike. A row reports the median over rounds of ``kvkit ops/s / baseline
ops/s`` (> 1 means kvkit is faster), with the min-max of that per-round ratio.

Adding a row is a few lines in one of the area modules::

    @register("cache", "cache.get", mode="sync", baseline="redis-py GET + json", target=1.0)
    def _(env: Env) -> Case:
        ...
        return Case(kvkit_op=lambda: cache.get(KEY), baseline_op=..., teardown=...)
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "COMPARISONS",
    "Case",
    "Comparison",
    "Env",
    "Mode",
    "Result",
    "Skip",
    "register",
    "run_comparison",
    "select",
]

Mode = Literal["sync", "async", "concurrent", "threads", "timed"]
"""How a row's ops are driven.

* ``sync``: ``op()`` in a plain loop.
* ``async``: ``await op()`` in a sequential loop (latency-bound).
* ``concurrent``: :attr:`Comparison.concurrency` tasks (default :data:`CONCURRENCY`), each
  awaiting ``op()`` in a loop, under ``asyncio.gather`` (throughput-bound; both sides
  share a pool of the same size).
* ``threads``: :attr:`Comparison.concurrency` threads, each calling ``op()`` in a loop
  (sync throughput; both sides share a pool of the same size).
* ``timed``: ``op()`` measures itself and returns what one operation cost: seconds by
  default (subprocess-based rows such as import time, where our own loop would be noise;
  end-to-end rows that time only their drain phase), or another lower-is-better quantity
  named by :attr:`Comparison.unit` (bytes per item). A coroutine function on async rows.
"""

CONCURRENCY = 50
"""Tasks in a ``concurrent`` row (more than the pool's 20 connections, on purpose)."""


class Skip(Exception):
    """Raised by a ``setup`` when a row cannot run here (missing library, URL kind...)."""


@dataclass(frozen=True)
class Env:
    """What a row's setup may use.

    Attributes:
        url: The Redis server both sides use (``None``: no server; Redis rows are skipped).
        quick: Whether this is a ``--quick`` run (setups may shrink their data).
    """

    url: str | None
    quick: bool = False


@dataclass
class Case:
    """The two operations of one row, ready to be timed.

    Attributes:
        kvkit_op: One kvkit operation (zero-argument; a coroutine function on async rows).
        baseline_op: The same work done with the baseline library.
        teardown: Closes clients and removes keys (sync or async like the ops).
        check: Optional verification run after the rounds (e.g. that both sides really
            wrote the same value); raise to fail the row.
        prepare: Optional ``prepare(n)``, called untimed before each timed slice with the
            number of operations each side is about to run (e.g. to refill the queues a
            pop row drains). Sync or async like the ops.
    """

    kvkit_op: Callable[[], Any]
    baseline_op: Callable[[], Any]
    teardown: Callable[[], Any] | None = None
    check: Callable[[], Any] | None = None
    prepare: Callable[[int], Any] | None = None


@dataclass(frozen=True)
class Comparison:
    """One row of the table.

    Attributes:
        group: The area (``cache``, ``memory``, ``import``...), selectable with ``--only``.
        name: The kvkit operation, e.g. ``"cache.get"``.
        mode: See :data:`Mode`.
        backend: What kvkit runs on, for the table (``"redis://"``, ``"memory://"``).
        baseline: What it is compared with, for the table.
        setup: ``setup(env) -> Case`` (async on async/concurrent rows).
        target: The minimum median ratio kvkit promises for the row, or ``None`` for "report only".
        ahead: The target is "strictly ahead" (ratio > target) rather than ratio >= target.
        ops: Operations per side per round in a full run.
        items: Items handled per operation (100 for ``get_many(100)``), for items/s.
        needs_redis: Whether the row needs :attr:`Env.url`.
        tags: Extra names ``--only`` accepts (``sync``, ``async``, ``peers``...).
        note: A footnote for the table (codec, configuration...).
        concurrency: Tasks (``concurrent``) or threads (``threads``) driving the ops.
        unit: For ``timed`` rows, what ``op()`` returns: ``"s"`` (seconds per operation,
            shown as ms), ``"items/s"`` (seconds per operation of :attr:`items` items,
            shown as a rate) or a lower-is-better quantity such as ``"B/item"``.
    """

    group: str
    name: str
    mode: Mode
    backend: str
    baseline: str
    setup: Callable[[Env], Case | Awaitable[Case]]
    target: float | None = None
    ahead: bool = False
    ops: int = 2000
    items: int = 1
    needs_redis: bool = True
    tags: frozenset[str] = frozenset()
    note: str = ""
    concurrency: int = CONCURRENCY
    unit: str = "s"

    @property
    def label(self) -> str:
        """``"cache.get (sync, redis://)"``."""
        mode = {
            "concurrent": f"async x{self.concurrency} tasks",
            "threads": f"sync x{self.concurrency} threads",
        }.get(self.mode, self.mode)
        if self.mode == "timed":
            return self.name
        return f"{self.name} ({mode}, {self.backend})"

    @property
    def target_text(self) -> str:
        """``">= 1.0x"``, ``"> 1.0x (ahead)"`` or ``"report"``."""
        if self.target is None:
            return "report"
        if self.ahead:
            return f"> {self.target:.2f}x (ahead)"
        return f">= {self.target:.2f}x"

    def names(self) -> frozenset[str]:
        """Every name ``--only`` matches this row by."""
        return self.tags | {self.group, self.mode}


COMPARISONS: list[Comparison] = []
"""The registry (modules register their rows at import)."""

GROUP_ORDER = ("cache", "memory", "sessions", "queues", "ratelimit", "e2e", "scaling", "import")
"""Table order of the groups; rows keep their registration order within a group."""


def register(
    group: str,
    name: str,
    *,
    mode: Mode,
    baseline: str,
    backend: str = "redis://",
    target: float | None = None,
    ahead: bool = False,
    ops: int = 2000,
    items: int = 1,
    needs_redis: bool | None = None,
    tags: Iterable[str] = (),
    note: str = "",
    concurrency: int = CONCURRENCY,
    unit: str = "s",
) -> Callable[[Callable[[Env], Any]], Callable[[Env], Any]]:
    """Decorator: register ``setup`` as a :class:`Comparison` (see its attributes)."""

    def decorator(setup: Callable[[Env], Any]) -> Callable[[Env], Any]:
        COMPARISONS.append(
            Comparison(
                group=group,
                name=name,
                mode=mode,
                backend=backend,
                baseline=baseline,
                setup=setup,
                target=target,
                ahead=ahead,
                ops=ops,
                items=items,
                needs_redis=backend.startswith(("redis", "rediss", "unix"))
                if needs_redis is None
                else needs_redis,
                tags=frozenset(tags),
                note=note,
                concurrency=concurrency,
                unit=unit,
            )
        )
        return setup

    return decorator


def select(only: Iterable[str] | None) -> list[Comparison]:
    """The registered rows matching any of ``only`` (group, mode or tag); all if empty.

    Raises:
        SystemExit: a name matches no row (a typo should not silently run nothing).
    """
    wanted = {name.strip() for name in only or () if name.strip()}
    rows = sorted(
        COMPARISONS,
        key=lambda c: GROUP_ORDER.index(c.group) if c.group in GROUP_ORDER else len(GROUP_ORDER),
    )
    if not wanted:
        return rows
    known = set().union(*(c.names() for c in COMPARISONS))
    unknown = wanted - known
    if unknown:
        raise SystemExit(
            f"--only: unknown name(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    return [c for c in rows if c.names() & wanted]


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """The measurements of one row.

    ``kvkit_ops`` / ``baseline_ops`` hold ops/s per round; ``ratios`` the per-round
    ``kvkit / baseline``. A skipped row has ``skipped`` set and no measurements.
    """

    comparison: Comparison
    ops_per_round: int = 0
    kvkit_ops: list[float] = field(default_factory=list)
    baseline_ops: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def ratio(self) -> float:
        """Median ratio over rounds (> 1: kvkit is faster)."""
        return statistics.median(self.ratios)

    @property
    def kvkit_rate(self) -> float:
        """Median kvkit operations per second."""
        return statistics.median(self.kvkit_ops)

    @property
    def baseline_rate(self) -> float:
        """Median baseline operations per second."""
        return statistics.median(self.baseline_ops)

    @property
    def status(self) -> str:
        """``"ok"``, ``"BELOW"`` (target missed), ``"report"`` or ``"skipped"``."""
        c = self.comparison
        if self.skipped is not None:
            return "skipped"
        if c.target is None:
            return "report"
        met = self.ratio > c.target if c.ahead else self.ratio >= c.target
        return "ok" if met else "BELOW"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``results.json``)."""
        c = self.comparison
        out: dict[str, Any] = {
            "group": c.group,
            "operation": c.name,
            "label": c.label,
            "mode": c.mode,
            "backend": c.backend,
            "baseline": c.baseline,
            "target": c.target,
            "target_text": c.target_text,
            "ahead": c.ahead,
            "items_per_op": c.items,
            "note": c.note,
            "status": self.status,
        }
        if self.skipped is not None:
            out["skipped"] = self.skipped
            return out
        out.update(
            ops_per_round=self.ops_per_round,
            rounds=len(self.ratios),
            ratio_median=self.ratio,
            ratio_min=min(self.ratios),
            ratio_max=max(self.ratios),
            kvkit_ops_per_s=self.kvkit_rate,
            baseline_ops_per_s=self.baseline_rate,
            kvkit_ops_per_s_rounds=self.kvkit_ops,
            baseline_ops_per_s_rounds=self.baseline_ops,
            ratio_rounds=self.ratios,
            seconds=self.seconds,
        )
        return out


# --------------------------------------------------------------------------- runner

SLICES = 10
"""Each round splits each side's ops into this many slices, alternating A B B A ...

Fine-grained alternation keeps a burst of load from elsewhere on the machine (another
process, the redis-server's housekeeping) from landing on one side only; the per-round
ratio compares the summed times of the two sides' slices.
"""


def _time_sync(op: Callable[[], Any], n: int, _: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        op()
    return time.perf_counter() - start


def _time_measured(op: Callable[[], float], n: int, _: int) -> float:
    return sum(op() for _ in range(n))


def _time_threads(op: Callable[[], Any], n: int, threads: int) -> float:
    per_thread = n // threads
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(per_thread):
                op()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()  # every thread is up: start the clock with all of them ready
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


async def _time_async(op: Callable[[], Awaitable[Any]], n: int, _: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await op()
    return time.perf_counter() - start


async def _time_async_measured(op: Callable[[], Awaitable[float]], n: int, _: int) -> float:
    total = 0.0
    for _ in range(n):
        total += await op()
    return total


async def _time_concurrent(op: Callable[[], Awaitable[Any]], n: int, tasks: int) -> float:
    per_task = n // tasks

    async def worker() -> None:
        for _ in range(per_task):
            await op()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - start


def _unit(comparison: Comparison) -> int:
    """Ops per slice come in multiples of this (whole batches of tasks or threads)."""
    return comparison.concurrency if comparison.mode in ("concurrent", "threads") else 1


def _ops_for(comparison: Comparison, scale: float) -> int:
    n = max(1, round(comparison.ops * scale))
    unit = _unit(comparison)
    return max(unit, n - n % unit)


def _slices(comparison: Comparison, n: int) -> list[int]:
    """Split ``n`` ops into at most :data:`SLICES` slices (whole task/thread batches)."""
    unit = _unit(comparison)
    units = n // unit
    count = max(1, min(SLICES, units))
    base, extra = divmod(units, count)
    return [(base + (i < extra)) * unit for i in range(count)]


def _record(result: Result, n: int, kvkit_s: float, baseline_s: float) -> None:
    k, b = n / kvkit_s, n / baseline_s
    result.kvkit_ops.append(k)
    result.baseline_ops.append(b)
    result.ratios.append(k / b)


def _run_sync(comparison: Comparison, case: Case, rounds: int, n: int, result: Result) -> None:
    timer: Callable[[Callable[[], Any], int, int], float]
    timer = {"timed": _time_measured, "threads": _time_threads}.get(comparison.mode, _time_sync)
    c = comparison.concurrency
    prepare = case.prepare or (lambda _: None)
    warm = max(_unit(comparison), n // 10)
    prepare(warm)
    timer(case.kvkit_op, warm, c)
    timer(case.baseline_op, warm, c)
    slices = _slices(comparison, n)
    for r in range(rounds):
        gc.collect()
        k = b = 0.0
        for i, size in enumerate(slices):
            prepare(size)
            if (r + i) % 2 == 0:
                k += timer(case.kvkit_op, size, c)
                b += timer(case.baseline_op, size, c)
            else:
                b += timer(case.baseline_op, size, c)
                k += timer(case.kvkit_op, size, c)
        _record(result, n, k, b)


async def _run_async(comparison: Comparison, env: Env, rounds: int, n: int, result: Result) -> None:
    case = comparison.setup(env)
    if inspect.isawaitable(case):
        case = await case
    assert isinstance(case, Case)
    timer = {"concurrent": _time_concurrent, "timed": _time_async_measured}.get(
        comparison.mode, _time_async
    )
    c = comparison.concurrency

    async def prepare(size: int) -> None:
        if case.prepare is not None:
            done = case.prepare(size)
            if inspect.isawaitable(done):
                await done

    try:
        warm = max(_unit(comparison), n // 10)
        await prepare(warm)
        await timer(case.kvkit_op, warm, c)
        await timer(case.baseline_op, warm, c)
        slices = _slices(comparison, n)
        for r in range(rounds):
            gc.collect()
            k = b = 0.0
            for i, size in enumerate(slices):
                await prepare(size)
                if (r + i) % 2 == 0:
                    k += await timer(case.kvkit_op, size, c)
                    b += await timer(case.baseline_op, size, c)
                else:
                    b += await timer(case.baseline_op, size, c)
                    k += await timer(case.kvkit_op, size, c)
            _record(result, n, k, b)
        if case.check is not None:
            checked = case.check()
            if inspect.isawaitable(checked):
                await checked
    finally:
        if case.teardown is not None:
            done = case.teardown()
            if inspect.isawaitable(done):
                await done


def run_comparison(comparison: Comparison, env: Env, *, rounds: int, scale: float) -> Result:
    """Set up, warm up, run ``rounds`` interleaved rounds and tear down one row.

    Args:
        comparison: The row.
        env: Server URL and mode.
        rounds: Number of rounds (each times both sides once).
        scale: Multiplier of :attr:`Comparison.ops` (``--quick`` uses less than 1).

    Returns:
        The measurements, or a result with ``skipped`` set when the row cannot run here.
    """
    result = Result(comparison)
    if comparison.needs_redis and env.url is None:
        result.skipped = "no Redis server: redis-server not on PATH and no --url"
        return result
    n = _ops_for(comparison, scale)
    result.ops_per_round = n
    start = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(comparison.setup) or comparison.mode in (
            "async",
            "concurrent",
        ):
            asyncio.run(_run_async(comparison, env, rounds, n, result))
        else:
            case = comparison.setup(env)
            assert isinstance(case, Case)
            try:
                _run_sync(comparison, case, rounds, n, result)
                if case.check is not None:
                    case.check()
            finally:
                if case.teardown is not None:
                    case.teardown()
    except Skip as exc:
        return Result(comparison, skipped=str(exc))
    result.seconds = time.perf_counter() - start
    return result
