"""Operation metrics of a client: counts, latency histograms, cache hits and misses (no I/O).

Every client owns one :class:`Recorder`. Each service object (the cache and its
namespaces, the session store, every queue object, and any later service) holds the
:class:`Meter` of its ``(service, backend scheme)`` pair, and the wrappers installed by
:func:`kvkit._async.metered.metered` call :meth:`Meter.observe` once per operation with its
latency and outcome. The same code serves both flavours: the wrappers are the only part
that differs (they ``await`` on the async side) and are generated like the rest.

Cost matters more than anything else here: a ``cache.get`` on a local Redis takes some
tens of microseconds and recording may take at most a few percent of it. So an
observation is a thread-local lookup, a dict lookup, a bisection over fixed bucket bounds
and two or three list increments -- no lock (each thread counts into its own cells, see
:class:`Meter`). Percentiles are estimated from the buckets when a snapshot is taken,
never on the hot path.

Hits and misses are counted by the cache views in a :class:`~kvkit.CacheStats` shared by
all views of one client (the same kind of counter each view already keeps for itself).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._types import CacheStats

if TYPE_CHECKING:
    from ._urls import ParsedURL

_S = TypeVar("_S")

__all__ = [
    "BOUNDS",
    "FAILED_OPEN",
    "Hook",
    "Meter",
    "Recorder",
    "cumulative",
    "percentile",
]

BOUNDS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the latency buckets; one more bucket counts everything above.

From 10 us (an in-process ``memory://`` operation) to 10 s (a blocking ``pop``), about
2.5x apart, so a percentile read from them is within that factor before interpolation.
"""

_N = len(BOUNDS) + 1  # buckets, the last one unbounded
_ERRORS = _N  # index of the error count in a cell
_SUM = _N + 1  # index of the latency sum in a cell

FAILED_OPEN: ContextVar[BaseException | None] = ContextVar("kvkit_failed_open", default=None)
"""The backend error a measured cache operation swallowed (``cache_fail_open``), if any.

The operation returns normally, yet it failed: the wrapper reads (and clears) this to
record the outcome as an error. A context variable, because concurrent tasks of one thread
must not see each other's failures.
"""


class Hook(Protocol):
    """Receives every operation of an instrumented client (``kvkit.ext.otel``).

    ``span`` opens the span of one operation (a context manager whose value is passed back
    to ``finish``); ``finish`` ends the bookkeeping of it with the latency and the error,
    if any. Called only for clients that were instrumented, so its cost is theirs alone.
    """

    def span(self, meter: Meter, op: str) -> Any:
        """Return a context manager around one operation."""
        ...

    def finish(
        self, meter: Meter, op: str, span: Any, elapsed: float, error: BaseException | None
    ) -> None:
        """Record one finished operation (``error`` is ``None`` on success)."""
        ...


class Meter:
    """The counters of one ``(service, backend)`` pair of one client.

    Each thread counts into cells of its own (a ``threading.local``), so recording takes
    no lock and loses no count when threads record at once; a snapshot adds the threads'
    cells up. The cells of a thread that has ended are folded into one set of totals (at
    the next snapshot or when another thread starts recording), so a server that starts
    a thread per request does not pile them up.

    Attributes:
        service: ``"cache"``, ``"sessions"``, ``"queue"``, ... (the metric label).
        backend: The URL scheme of the backend (``"redis"``, ``"memory"``, ...).
        url: The backend's parsed URL (for a hook's attributes; holds secrets: never shown).
        hook: The client's :class:`Hook`, if it was instrumented.
    """

    __slots__ = ("_done", "_local", "_lock", "_shards", "backend", "hook", "service", "url")

    def __init__(self, service: str, url: ParsedURL) -> None:
        self.service = service
        self.backend = url.scheme
        self.url = url
        self.hook: Hook | None = None
        self._local = threading.local()
        self._lock = threading.Lock()  # shard registration and folding only
        # (thread, its cells): op -> [bucket counts..., error count, latency sum]
        self._shards: list[tuple[threading.Thread, dict[str, list[Any]]]] = []
        self._done: dict[str, list[Any]] = {}  # the cells of threads that have ended

    def __repr__(self) -> str:
        return f"<kvkit meter {self.service}/{self.backend}>"

    def observe(self, op: str, elapsed: float, ok: bool) -> None:
        """Count one operation ``op`` that took ``elapsed`` seconds."""
        try:
            cells: dict[str, list[Any]] = self._local.cells
        except AttributeError:
            cells = self._shard()
        cell = cells.get(op)
        if cell is None:
            cell = cells[op] = _new_cell()
        cell[bisect_left(BOUNDS, elapsed)] += 1  # "le": a bound holds values equal to it
        cell[_SUM] += elapsed
        if not ok:
            cell[_ERRORS] += 1

    def _shard(self) -> dict[str, list[Any]]:
        """Register the calling thread's cells (first observation of this thread)."""
        cells: dict[str, list[Any]] = {}
        with self._lock:
            self._fold()
            self._shards.append((threading.current_thread(), cells))
        self._local.cells = cells
        return cells

    def _fold(self) -> None:
        """Move the cells of ended threads into the totals (caller holds the lock)."""
        alive = []
        for thread, cells in self._shards:
            if thread.is_alive():
                alive.append((thread, cells))
            else:  # it records no more: its cells are final
                _add(self._done, cells)
        self._shards = alive

    def cells(self) -> list[tuple[str, list[Any]]]:
        """The cells of every thread added up: ``(op, [buckets..., errors, sum])``."""
        with self._lock:
            self._fold()
            total: dict[str, list[Any]] = {}
            _add(total, self._done)
            for _, cells in self._shards:
                # A copy first: the owner thread may add an op meanwhile. A cell read
                # while its owner records may be one observation behind in some field.
                _add(total, cells.copy())
        return list(total.items())


def _new_cell() -> list[Any]:
    return [0] * (_N + 1) + [0.0]


def _add(into: dict[str, list[Any]], cells: dict[str, list[Any]]) -> None:
    for op, cell in cells.items():
        target = into.get(op)
        if target is None:
            target = into[op] = _new_cell()
        for index, value in enumerate(cell):
            target[index] += value


class Recorder:
    """All meters of one client, plus its cache hit/miss totals.

    Args:
        enabled: ``False`` (``Settings.metrics=False``): :meth:`build` makes plain
            service objects, which record nothing and pay nothing.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.cache_totals = CacheStats()
        self._meters: dict[tuple[str, str], Meter] = {}
        self._lock = threading.Lock()
        self._hook: Hook | None = None

    def meter(self, service: str, url: ParsedURL) -> Meter:
        """Return the meter of ``service`` on the backend of ``url``, created on first use."""
        key = (service, url.scheme)
        meter = self._meters.get(key)
        if meter is None:
            with self._lock:
                meter = self._meters.get(key)
                if meter is None:
                    meter = self._meters[key] = Meter(service, url)
                    meter.hook = self._hook
        return meter

    def build(self, cls: type[_S], service: str, url: ParsedURL, *args: Any, **kwargs: Any) -> _S:
        """Construct a service object that records into the meter of ``service`` on ``url``.

        ``cls`` is a class decorated with ``metered(...)`` (:mod:`kvkit._async.metered`);
        ``args`` and ``kwargs`` go to its constructor. With metrics on, the object is an
        instance of the class's measured variant (a subclass that times the listed
        methods) with the meter set; with metrics off, a plain ``cls`` instance that
        records nothing and pays nothing. ``url`` is the backend's URL (``backend.url``).
        """
        if not self.enabled:
            return cls(*args, **kwargs)
        variant = getattr(cls, "measured_variant", None)
        if variant is None:
            raise TypeError(f"{cls.__qualname__} is not decorated with metered(...)")
        obj: _S = variant(*args, **kwargs)
        obj._meter = self.meter(service, url)  # type: ignore[attr-defined]
        return obj

    @property
    def hook(self) -> Hook | None:
        """The installed :class:`Hook` (``None``: plain recording)."""
        return self._hook

    def set_hook(self, hook: Hook | None) -> None:
        """Install (or remove, with ``None``) the hook on every meter, present and future."""
        with self._lock:
            self._hook = hook
            for meter in self._meters.values():
                meter.hook = hook

    def meters(self) -> list[Meter]:
        """Every meter created so far."""
        with self._lock:
            return list(self._meters.values())

    def snapshot(self) -> dict[str, Any]:
        """Return every figure as a plain, JSON-ready dict (see ``client.metrics_snapshot``)."""
        operations: list[dict[str, Any]] = []
        for meter in self.meters():
            for op, cell in meter.cells():
                counts = cell[:_N]
                total = sum(counts)
                errors = cell[_ERRORS]
                operations.append(
                    {
                        "service": meter.service,
                        "op": op,
                        "backend": meter.backend,
                        "count": total,
                        "ok": total - errors,
                        "error": errors,
                        "sum": cell[_SUM],
                        "buckets": counts,
                        "p50": percentile(counts, 0.5),
                        "p99": percentile(counts, 0.99),
                    }
                )
        operations.sort(key=lambda row: (row["service"], row["op"], row["backend"]))
        hits, misses = self.cache_totals.hits, self.cache_totals.misses
        return {
            "enabled": self.enabled,
            "bounds": list(BOUNDS),
            "operations": operations,
            "cache": {
                "hits": hits,
                "misses": misses,
                "hit_ratio": hits / (hits + misses) if hits + misses else None,
            },
        }


def percentile(counts: list[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (0..1) from bucket ``counts`` (last: above the bounds).

    Linear interpolation inside the bucket holding the quantile, as Prometheus'
    ``histogram_quantile`` does; a quantile in the unbounded bucket is reported as the
    largest bound. ``None`` when nothing was counted.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(BOUNDS):
                return BOUNDS[-1]
            lower = BOUNDS[index - 1] if index else 0.0
            upper = BOUNDS[index]
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return BOUNDS[-1]  # pragma: no cover - rank <= total always lands in a bucket


def cumulative(counts: list[int]) -> Iterator[tuple[float, int]]:
    """``(upper bound, cumulative count)`` pairs for an exposition, ending at ``+Inf``."""
    running = 0
    for bound, count in zip((*BOUNDS, float("inf")), counts, strict=True):
        running += count
        yield bound, running
