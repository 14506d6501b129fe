"""Prometheus metrics of a kvkit client (``pip install 'kvkit-sdk[prometheus]'``).

::

    from prometheus_client import start_http_server
    from kvkit.ext.prometheus import KVKitCollector

    client = kvkit.Client.from_env()
    KVKitCollector(client)          # registers with prometheus_client's default registry
    start_http_server(9100)

or serve ``GET /metrics`` from the app: ``app.include_router(metrics_router())`` (FastAPI,
:mod:`kvkit.ext.fastapi`) or ``app.register_blueprint(metrics_blueprint())`` (Flask,
:mod:`kvkit.ext.flask`).

=============================================  =========  =================================
metric                                         type       labels
=============================================  =========  =================================
``kvkit_operations_total``                     counter    ``service``, ``op``, ``backend``,
                                                          ``outcome`` (``ok`` / ``error``)
``kvkit_operation_duration_seconds``           histogram  ``service``, ``op``, ``backend``
``kvkit_cache_hits_total``                     counter
``kvkit_cache_misses_total``                   counter
``kvkit_queue_messages``                       gauge      ``queue``, ``state`` (``ready`` /
                                                          ``pending`` / ``delayed`` / ``dead``)
``kvkit_queue_oldest_ready_age_seconds``       gauge      ``queue`` (0 when none is ready)
=============================================  =========  =================================

The operation figures are the client's own (``client.metrics_snapshot()``: no I/O). The
queue gauges are read from the server at scrape time, for the queues the client opened
and those found under its prefix (at most ``max_queues``; discovery is cached for 30 s),
through a probe with short timeouts, within ``timeout`` seconds: a scrape never hangs on a
dead server. When the queues cannot be read, their gauges are left out of that scrape
(and a warning is logged); the operation counters are always there.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

try:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, CollectorRegistry
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kvkit.ext.prometheus needs prometheus-client; install it with: "
        "pip install 'kvkit-sdk[prometheus]'"
    ) from exc

from .._metrics import cumulative
from .._overview import QUEUE_STATES, QueueReading
from ._queues import QueueReader

__all__ = ["CONTENT_TYPE_LATEST", "KVKitCollector", "collector_for", "exposition"]

log = logging.getLogger("kvkit.ext.prometheus")


def _go(value: float) -> str:
    """A bucket bound as Prometheus writes it (``+Inf``, ``1e-05``, ``0.25``)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


_DEFAULT = object()


class KVKitCollector:
    """A ``prometheus_client`` collector of one kvkit client's metrics.

    Args:
        client: A :class:`kvkit.Client` or :class:`kvkit.AsyncClient`.
        registry: The registry to register with (default: prometheus_client's global
            ``REGISTRY``); ``None`` to register nowhere.
        queues: Whether to report the queue gauges (read from the server per scrape).
        discover: Also report the queues found under the prefix, not only the client's.
        max_queues: At most this many queues are reported.
        timeout: Seconds the queue reading of one scrape may take.

    Raises:
        ConfigError: ``client`` is not a kvkit client, or an option is invalid.
    """

    def __init__(
        self,
        client: Any,
        *,
        registry: CollectorRegistry | Any | None = _DEFAULT,
        queues: bool = True,
        discover: bool = True,
        max_queues: int = 100,
        timeout: float = 2.0,
    ) -> None:
        self.client = client
        self.reader = QueueReader(client, discover=discover, limit=max_queues, timeout=timeout)
        self.queues = queues
        target = REGISTRY if registry is _DEFAULT else registry
        if target is not None:
            target.register(self)

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (the registry checks names with it)."""
        return self._families(None, with_queues=self.queues)

    def collect(self) -> Iterator[Metric]:
        """Every metric, queue gauges read now (the registry calls this per scrape)."""
        reading = self.reader.read() if self.queues else None
        return self._families(reading, with_queues=self.queues)

    def collect_reading(self, reading: QueueReading | None) -> Iterator[Metric]:
        """Every metric, with queue gauges from ``reading`` (read by the caller)."""
        return self._families(reading, with_queues=reading is not None)

    def _families(self, reading: QueueReading | None, *, with_queues: bool) -> Iterator[Metric]:
        snapshot = self.client.metrics_snapshot()
        operations = CounterMetricFamily(
            "kvkit_operations",
            "Operations of the kvkit client by service, operation, backend and outcome.",
            labels=["service", "op", "backend", "outcome"],
        )
        durations = HistogramMetricFamily(
            "kvkit_operation_duration_seconds",
            "Latency of the kvkit client's operations.",
            labels=["service", "op", "backend"],
        )
        for row in snapshot["operations"]:
            labels = [row["service"], row["op"], row["backend"]]
            operations.add_metric([*labels, "ok"], row["ok"])
            operations.add_metric([*labels, "error"], row["error"])
            buckets = [(_go(le), count) for le, count in cumulative(row["buckets"])]
            durations.add_metric(labels, buckets, sum_value=row["sum"])
        yield operations
        yield durations
        cache = snapshot["cache"]
        yield CounterMetricFamily(
            "kvkit_cache_hits", "Cache reads that found a value.", value=cache["hits"]
        )
        yield CounterMetricFamily(
            "kvkit_cache_misses", "Cache reads that found nothing.", value=cache["misses"]
        )
        if not with_queues:
            return
        if reading is not None and reading.error is not None:
            log.warning("kvkit queue gauges incomplete: %s", reading.error)
        messages = GaugeMetricFamily(
            "kvkit_queue_messages", "Messages per queue and state.", labels=["queue", "state"]
        )
        age = GaugeMetricFamily(
            "kvkit_queue_oldest_ready_age_seconds",
            "Seconds the oldest ready message of a queue has been waiting (0: none ready).",
            labels=["queue"],
        )
        for name, stats in (reading.stats if reading is not None else {}).items():
            for state in QUEUE_STATES:
                messages.add_metric([name, state], getattr(stats, state))
            age.add_metric([name], stats.oldest_ready_s or 0.0)
        yield messages
        yield age


class _Exposition:
    """A registry-like view: one collector's families (with a given reading) plus others."""

    def __init__(self, families: Iterable[Metric], extra: CollectorRegistry | None) -> None:
        self._families = families
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self._families
        if self._extra is not None:
            yield from self._extra.collect()


_COLLECTORS: weakref.WeakKeyDictionary[Any, KVKitCollector] = weakref.WeakKeyDictionary()


def collector_for(client: Any, **options: Any) -> KVKitCollector:
    """The unregistered collector of ``client`` for the ``/metrics`` routes (one per client)."""
    collector = _COLLECTORS.get(client)
    if collector is None:
        collector = _COLLECTORS[client] = KVKitCollector(client, registry=None, **options)
    return collector


def exposition(
    collector: KVKitCollector,
    reading: QueueReading | None = None,
    registry: CollectorRegistry | None = None,
) -> bytes:
    """The text format of ``collector`` (queue gauges from ``reading``) and ``registry``.

    Without a ``reading``, a collector that reports queues reads them now.
    """
    if reading is None and collector.queues:
        families = collector.collect()
    else:
        families = collector.collect_reading(reading)
    data: bytes = generate_latest(_Exposition(families, registry))
    return data
