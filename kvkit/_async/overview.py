"""Reading a client's queues and health for the exporters and the dashboard.

:class:`AsyncQueueWatch` knows the queues a client opened and finds the others under its
prefix; it reads them through the client's probe (:func:`kvkit._async.health.health_client`:
same servers, short timeouts, no retries), so a scrape or a dashboard refresh against a
dead server fails within its time limit instead of hanging. Everything goes through the
public client API; the shaping of the results is :mod:`kvkit._overview`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._compat import AsyncTimeLimit
from .._overview import (
    QueueReading,
    dead_letter_row,
    describe_error,
    operation_rows,
    queue_row,
    total_series,
)
from .._queue_types import QueueStats
from .._version import __version__
from .health import health_client

if TYPE_CHECKING:
    from .client import AsyncClient
    from .queue import AsyncQueueService

__all__ = ["AsyncQueueWatch", "overview"]

#: Default bound on the time one reading of all queues may take (seconds).
READ_TIMEOUT = 3.0


class AsyncQueueWatch:
    """The queues of one client: the ones it opened and, with ``discover``, the others.

    Args:
        client: The application's client (its known queues and metrics).
        discover: Also look for queues under the prefix on the backend.
        limit: At most this many queues are reported.
        rescan: Seconds a discovery result is reused (discovery SCANs the keyspace).
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        discover: bool = True,
        limit: int = 100,
        rescan: float = 30.0,
    ) -> None:
        self.client = client
        self.discover = discover
        self.limit = limit
        self.rescan = rescan
        self._probe: AsyncClient | None = None
        self._found: list[str] = []
        self._found_at = -float("inf")

    @property
    def probe(self) -> AsyncClient:
        """The client the watch reads through (created on first use, no I/O)."""
        if self._probe is None:
            self._probe = health_client(self.client)
        return self._probe

    async def names(self) -> list[str]:
        """The queues to report, sorted: known ones plus (cached) discovered ones."""
        names = set(await self.client.queue_names(limit=self.limit, discover=False))
        if self.discover:
            now = time.monotonic()
            if now - self._found_at >= self.rescan:
                self._found = await self.probe.queue_names(limit=self.limit)
                self._found_at = now
            names.update(self._found)
        return sorted(names)[: self.limit]

    async def read(
        self, timeout: float = READ_TIMEOUT, *, throughput: bool = False
    ) -> QueueReading:
        """Read every queue's stats (and throughput), within ``timeout`` seconds.

        Never raises for backend failures: the queues read so far are returned with the
        reason the reading stopped.
        """
        stats: dict[str, QueueStats] = {}
        series: dict[str, list[dict[str, Any]]] = {}

        async def run() -> None:
            for name in await self.names():
                queue = self.queue(name)
                stats[name] = await queue.stats()
                if throughput:
                    series[name] = await queue.throughput()

        (outcome,) = await AsyncTimeLimit.gather([run], timeout)
        error = None if outcome is None else describe_error(outcome)
        return QueueReading(dict(stats), dict(series), error)

    def queue(self, name: str) -> AsyncQueueService:
        """Queue ``name`` on the probe, for reading: its calls are not counted as the app's.

        (With in-process backends the probe is the application's client itself, whose
        metrics must not fill up with the watch's own stats calls.)
        """
        queue = self.probe.queue(name)
        queue._meter = None
        return queue

    async def aclose(self) -> None:
        """Close the probe client (when it is not the application's client)."""
        probe, self._probe = self._probe, None
        if probe is not None and probe is not self.client:
            await probe.aclose()


async def overview(watch: AsyncQueueWatch, *, timeout: float = READ_TIMEOUT) -> dict[str, Any]:
    """Everything ``GET /api/overview`` returns (see :mod:`kvkit.ext.dashboard`)."""
    client = watch.client
    (health,) = await AsyncTimeLimit.gather([watch.probe.health], timeout)
    if isinstance(health, BaseException):
        roles: list[dict[str, Any]] = [
            {"role": "all", "ok": False, "error": describe_error(health)}
        ]
        status = "fail"
    else:
        roles = [check.to_dict() for check in health.checks]
        status = health.status
    reading = await watch.read(timeout, throughput=True)
    snapshot = client.metrics_snapshot()
    return {
        "kvkit": __version__,
        "prefix": client.settings.prefix,
        "time": time.time(),
        "status": status,
        "roles": roles,
        "queues": [
            queue_row(name, stats, reading.throughput.get(name))
            for name, stats in reading.stats.items()
        ],
        "queues_error": reading.error,
        "throughput": total_series(list(reading.throughput.values())),
        "cache": snapshot["cache"],
        "metrics_enabled": snapshot["enabled"],
        "operations": operation_rows(snapshot),
    }


async def dead_letters(watch: AsyncQueueWatch, name: str, count: int = 50) -> list[dict[str, Any]]:
    """The oldest ``count`` dead letters of queue ``name``: id, error, deliveries."""
    messages = await watch.queue(name).dead_letters(count)
    return [dead_letter_row(message) for message in messages]
