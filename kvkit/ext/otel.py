"""OpenTelemetry tracing and metrics of a kvkit client (``pip install 'kvkit-sdk[otel]'``).

::

    from kvkit.ext.otel import instrument

    client = kvkit.AsyncClient.from_env()
    instrument(client)          # the global tracer and meter providers, or pass your own

Every operation of the client (``cache.get``, ``sessions.update``, ``queue.push``, ...)
becomes one ``CLIENT`` span named ``"{service}.{op}"`` with these attributes:

===========================  =========================================================
``db.system.name``           ``"redis"`` (also fakeredis, Cluster, Sentinel) or ``"memory"``
``db.operation.name``        the method: ``"get"``, ``"push"``, ...
``db.namespace``             the Redis database number (standalone Redis only)
``server.address``           host of a single-server URL (not for Cluster/Sentinel/unix)
``server.port``              its port
``kvkit.service``            ``"cache"``, ``"sessions"``, ``"queue"``, ...
``kvkit.backend``            the URL scheme: ``"redis"``, ``"rediss"``, ``"memory"``, ...
``error.type``               on failure: the exception class (``kvkit.BackendUnavailable``)
===========================  =========================================================

No key, value, payload, session id, queue message, password or exception message is ever
put on a span (kvkit's error messages name keys): a failed span has status ``ERROR`` and
``error.type`` only.

The same figures as the Prometheus collector, through the OTel metrics API (the OTel
Prometheus exporter names them exactly as :mod:`kvkit.ext.prometheus` does):

====================================  ==================  ==============  ==================
instrument                            kind                unit            attributes
====================================  ==================  ==============  ==================
``kvkit.operations``                  counter             ``{operation}`` service, op,
                                                                          backend, outcome
``kvkit.operation.duration``          histogram           ``s``           service, op, backend
``kvkit.cache.hits``                  observable counter  ``{hit}``
``kvkit.cache.misses``                observable counter  ``{miss}``
``kvkit.queue.messages``              observable gauge    ``{message}``   queue, state
``kvkit.queue.oldest_ready_age``      observable gauge    ``s``           queue
====================================  ==================  ==============  ==================

Operations are counted from the moment the client is instrumented; the queue gauges are
read from the server when the metric reader collects (see :mod:`kvkit.ext.prometheus`
for how: a probe with short timeouts, within ``timeout`` seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kvkit.ext.otel needs opentelemetry-api; install it with: pip install 'kvkit-sdk[otel]'"
    ) from exc

from .._errors import ConfigError
from .._metrics import BOUNDS, Meter
from .._overview import QUEUE_STATES, QueueReading
from .._version import __version__
from ._queues import QueueReader

__all__ = ["Instrumentation", "instrument"]

# A collection asks both queue gauges in turn: one reading serves both within this time.
_READING_TTL = 1.0


def _error_type(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__name__


def _span_attributes(meter: Meter, op: str) -> dict[str, Any]:
    url = meter.url
    family = url.spec.family
    attributes: dict[str, Any] = {
        "db.system.name": "memory" if family == "memory" else "redis",
        "db.operation.name": op,
        "kvkit.service": meter.service,
        "kvkit.backend": meter.backend,
    }
    if family in ("redis", "unix", "sentinel", "fakeredis"):
        attributes["db.namespace"] = str(url.db)
    if family == "redis" and url.hosts:
        attributes["server.address"] = url.host
        attributes["server.port"] = url.port
    return attributes


class _Hook:
    """Spans and OTel metrics for every measured operation (see :class:`kvkit._metrics.Hook`)."""

    def __init__(self, tracer: Any, counter: Any, histogram: Any) -> None:
        self._tracer = tracer
        self._counter = counter
        self._histogram = histogram
        # (service, backend, op) -> (span attributes, metric attributes, ok, error): built
        # once, because an operation may take only microseconds.
        self._cache: dict[tuple[str, str, str], tuple[dict[str, Any], ...]] = {}

    def _attributes(self, meter: Meter, op: str) -> tuple[dict[str, Any], ...]:
        key = (meter.service, meter.backend, op)
        found = self._cache.get(key)
        if found is None:
            labels = {"service": meter.service, "op": op, "backend": meter.backend}
            found = self._cache[key] = (
                _span_attributes(meter, op),
                labels,
                {**labels, "outcome": "ok"},
                {**labels, "outcome": "error"},
            )
        return found

    def span(self, meter: Meter, op: str) -> Any:
        return self._tracer.start_as_current_span(
            f"{meter.service}.{op}",
            kind=SpanKind.CLIENT,
            attributes=self._attributes(meter, op)[0],
            record_exception=False,  # an exception's message may name a key
            set_status_on_exception=False,
        )

    def finish(
        self, meter: Meter, op: str, span: Any, elapsed: float, error: BaseException | None
    ) -> None:
        _, labels, ok, failed = self._attributes(meter, op)
        if error is not None:
            span.set_attribute("error.type", _error_type(error))
            span.set_status(Status(StatusCode.ERROR))
            self._counter.add(1, failed)
        else:
            self._counter.add(1, ok)
        self._histogram.record(elapsed, labels)


class Instrumentation:
    """What :func:`instrument` returns: call :meth:`uninstrument` to stop."""

    def __init__(self, client: Any, reader: QueueReader | None) -> None:
        self.client = client
        self._reader = reader
        self._active = True
        self._lock = threading.Lock()
        self._reading: tuple[float, QueueReading] | None = None

    def uninstrument(self) -> None:
        """Stop the spans and metrics (observable instruments then report nothing)."""
        self._active = False
        self.client.metrics.set_hook(None)

    def _queues(self) -> QueueReading | None:
        if not self._active or self._reader is None:
            return None
        with self._lock:
            now = time.monotonic()
            if self._reading is None or now - self._reading[0] > _READING_TTL:
                self._reading = (now, self._reader.read())
            return self._reading[1]

    def _hits(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active:
            return []
        return [Observation(self.client.metrics.cache_totals.hits)]

    def _misses(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active:
            return []
        return [Observation(self.client.metrics.cache_totals.misses)]

    def _messages(self, options: CallbackOptions) -> Iterable[Observation]:
        reading = self._queues()
        if reading is None:
            return []
        return [
            Observation(getattr(stats, state), {"queue": name, "state": state})
            for name, stats in reading.stats.items()
            for state in QUEUE_STATES
        ]

    def _ages(self, options: CallbackOptions) -> Iterable[Observation]:
        reading = self._queues()
        if reading is None:
            return []
        return [
            Observation(stats.oldest_ready_s or 0.0, {"queue": name})
            for name, stats in reading.stats.items()
        ]


def instrument(
    client: Any,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    queues: bool = True,
    discover: bool = True,
    max_queues: int = 100,
    timeout: float = 2.0,
) -> Instrumentation:
    """Emit a span and OTel metrics for every operation of ``client``.

    Args:
        client: A :class:`kvkit.Client` or :class:`kvkit.AsyncClient`, with
            ``Settings.metrics`` on (the default).
        tracer_provider: The tracer provider (default: the global one).
        meter_provider: The meter provider (default: the global one).
        queues: Whether to report the queue gauges (read from the server per collection).
        discover: Also report the queues found under the prefix, not only the client's.
        max_queues: At most this many queues are reported.
        timeout: Seconds the queue reading of one collection may take.

    Returns:
        The :class:`Instrumentation` (``uninstrument()`` stops it).

    Raises:
        ConfigError: the client's metrics are off, it is instrumented already, or it is
            not a kvkit client.
    """
    reader = QueueReader(client, discover=discover, limit=max_queues, timeout=timeout)
    recorder = client.metrics
    if not recorder.enabled:
        raise ConfigError("the client records no operations (Settings.metrics=False)")
    if recorder.hook is not None:
        raise ConfigError("this client is instrumented already (call uninstrument() first)")
    tracer = trace.get_tracer("kvkit", __version__, tracer_provider)
    meter = otel_metrics.get_meter("kvkit", __version__, meter_provider)
    counter = meter.create_counter(
        "kvkit.operations", unit="{operation}", description="Operations of the kvkit client."
    )
    histogram = meter.create_histogram(
        "kvkit.operation.duration",
        unit="s",
        description="Latency of the kvkit client's operations.",
        explicit_bucket_boundaries_advisory=list(BOUNDS),
    )
    instrumentation = Instrumentation(client, reader if queues else None)
    meter.create_observable_counter(
        "kvkit.cache.hits",
        [instrumentation._hits],
        unit="{hit}",
        description="Cache reads that found a value.",
    )
    meter.create_observable_counter(
        "kvkit.cache.misses",
        [instrumentation._misses],
        unit="{miss}",
        description="Cache reads that found nothing.",
    )
    if queues:
        meter.create_observable_gauge(
            "kvkit.queue.messages",
            [instrumentation._messages],
            unit="{message}",
            description="Messages per queue and state.",
        )
        meter.create_observable_gauge(
            "kvkit.queue.oldest_ready_age",
            [instrumentation._ages],
            unit="s",
            description="Seconds the oldest ready message of a queue has been waiting.",
        )
    recorder.set_hook(_Hook(tracer, counter, histogram))
    return instrumentation
