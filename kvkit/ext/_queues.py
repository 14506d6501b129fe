"""Queue figures for the exporters, from a sync or an async client, at collection time.

Prometheus' ``collect()`` and OpenTelemetry's gauge callbacks are plain functions, called
from whatever thread scrapes. :class:`QueueReader` reads the queues from there: directly
with a :class:`kvkit.Client`; with a :class:`kvkit.AsyncClient` in a short-lived event loop
of its own, in a worker thread (the caller's thread may be running a loop already), closing
that loop's connections before it ends. Async callers (the FastAPI ``/metrics`` route)
await :meth:`QueueReader.aread` on their own loop instead.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .._async.client import AsyncClient
from .._async.overview import AsyncQueueWatch
from .._errors import ConfigError
from .._overview import QueueReading
from .._sync.client import Client
from .._sync.overview import QueueWatch

__all__ = ["QueueReader"]


class QueueReader:
    """Reads every queue of a client (known and discovered) within a time limit.

    Args:
        client: A :class:`kvkit.Client` or :class:`kvkit.AsyncClient`.
        discover: Also report the queues found under the prefix.
        limit: At most this many queues.
        timeout: Seconds one reading may take (a slow or dead server costs no more).

    Raises:
        ConfigError: ``client`` is not a kvkit client, or ``limit``/``timeout`` is invalid.
    """

    def __init__(
        self, client: Any, *, discover: bool = True, limit: int = 100, timeout: float = 2.0
    ) -> None:
        if not isinstance(client, (Client, AsyncClient)):
            raise ConfigError(
                f"expected a kvkit.Client or AsyncClient, not {type(client).__name__!r}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"the queue limit must be a positive int, got {limit!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"the timeout must be a positive number, got {timeout!r}")
        self.client = client
        self.timeout = float(timeout)
        self._sync: QueueWatch | None = None
        self._async: AsyncQueueWatch | None = None
        self._bridged: AsyncQueueWatch | None = None
        if isinstance(client, Client):
            self._sync = QueueWatch(client, discover=discover, limit=limit)
        else:
            self._async = AsyncQueueWatch(client, discover=discover, limit=limit)
            self._bridged = AsyncQueueWatch(client, discover=discover, limit=limit)
        self._lock = threading.Lock()  # one bridged reading at a time
        self._thread: threading.Thread | None = None

    def read(self) -> QueueReading:
        """Read the queues from a plain function (any thread); never raises."""
        if self._sync is not None:
            return self._sync.read(self.timeout)
        watch = self._bridged
        assert watch is not None
        box: list[QueueReading] = []

        async def once() -> QueueReading:
            try:
                return await watch.read(self.timeout)
            finally:
                # The loop ends right after: its connections go with it (the watch keeps
                # only its cache of discovered names).
                await watch.aclose()

        def target() -> None:
            box.append(asyncio.run(once()))

        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                # The last reading overran its time (its loop is stuck on a dead server):
                # never two at once on the same watch.
                return QueueReading({}, {}, "the previous reading is still running")
            thread = self._thread = threading.Thread(
                target=target, name="kvkit-queue-reader", daemon=True
            )
            thread.start()
            thread.join(self.timeout + 2.0)
        if box:
            return box[0]
        return QueueReading({}, {}, f"no answer within {self.timeout:g} s")

    async def aread(self) -> QueueReading:
        """Read the queues of an async client on the running loop; never raises.

        Raises:
            ConfigError: the client is a sync ``Client`` (call :meth:`read`).
        """
        if self._async is None:
            raise ConfigError("aread() needs an AsyncClient; call read() for a Client")
        return await self._async.read(self.timeout)

    def close(self) -> None:
        """Close the probe connections of a sync client."""
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        """Close the probe connections :meth:`aread` opened on the running loop."""
        if self._async is not None:
            await self._async.aclose()
