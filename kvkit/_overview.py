"""What the dashboard and the exporters report about a client, shaped once (no I/O).

:mod:`kvkit._async.overview` reads the figures (queue stats, throughput, health); the
functions here turn them into the plain dicts of ``GET /api/overview`` and the rows of the
dashboard's tables. Nothing here shows a value, a payload or a secret: queues are shown by
name and counts, dead letters by id, reason and delivery count.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._queue_base import RATE_BUCKET_MS
from ._queue_types import Message, QueueStats

__all__ = [
    "QUEUE_STATES",
    "QueueReading",
    "dead_letter_row",
    "describe_error",
    "operation_rows",
    "queue_row",
    "total_series",
]

#: The message counts of a queue's stats, in the order the exporters report them.
QUEUE_STATES = ("ready", "pending", "delayed", "dead")

#: Seconds over which the per-queue ``in_per_s`` / ``out_per_s`` rates are averaged.
RATE_WINDOW = 60


@attrs.frozen
class QueueReading:
    """Figures of the queues read at one moment.

    Attributes:
        stats: Per queue name, its stats (queues read before a failure or the time limit).
        throughput: Per queue name, its throughput buckets (when they were asked for).
        error: Why the reading stopped early (backend failure, time limit), else ``None``.
    """

    stats: dict[str, QueueStats]
    throughput: dict[str, list[dict[str, Any]]]
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    """One line for an exception: its type and message (kvkit's messages carry no secret)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rates(series: list[dict[str, Any]]) -> tuple[float, float]:
    """Messages per second in and out over the last complete :data:`RATE_WINDOW` seconds."""
    buckets = RATE_WINDOW * 1000 // RATE_BUCKET_MS
    complete = series[:-1][-buckets:]  # the last bucket is still filling
    if not complete:
        return 0.0, 0.0
    seconds = len(complete) * RATE_BUCKET_MS / 1000.0
    return (
        sum(b["in"] for b in complete) / seconds,
        sum(b["out"] for b in complete) / seconds,
    )


def queue_row(name: str, stats: QueueStats, series: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One queue of ``GET /api/overview``."""
    in_rate, out_rate = _rates(series or [])
    return {
        "name": name,
        "ready": stats.ready,
        "pending": stats.pending,
        "delayed": stats.delayed,
        "dead": stats.dead,
        "consumers": stats.consumers,
        "oldest_ready_age": stats.oldest_ready_s,
        "oldest_pending_age": stats.oldest_pending_s,
        "in_per_s": round(in_rate, 3),
        "out_per_s": round(out_rate, 3),
    }


def total_series(series: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """All queues' buckets added up, as rates: ``[{"t", "in", "out"}]`` in messages/second.

    Buckets are matched by their start time, so queues read a moment apart line up.
    """
    totals: dict[float, list[int]] = {}
    for buckets in series:
        for bucket in buckets:
            row = totals.setdefault(bucket["t"], [0, 0])
            row[0] += bucket["in"]
            row[1] += bucket["out"]
    seconds = RATE_BUCKET_MS / 1000.0
    return [
        {"t": t, "in": round(row[0] / seconds, 3), "out": round(row[1] / seconds, 3)}
        for t, row in sorted(totals.items())
    ]


def operation_rows(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The operations of a metrics snapshot, for the latency table (times in ms)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000.0, 3)

    return [
        {
            "service": row["service"],
            "op": row["op"],
            "backend": row["backend"],
            "count": row["count"],
            "errors": row["error"],
            "p50_ms": ms(row["p50"]),
            "p99_ms": ms(row["p99"]),
        }
        for row in snapshot["operations"]
    ]


def dead_letter_row(message: Message) -> dict[str, Any]:
    """One dead letter: why it died and how often it was delivered, never its payload."""
    return {
        "id": message.id,
        "error": message.reason,
        "deliveries": message.deliveries,
        "enqueued_at": message.enqueued_at,
    }
