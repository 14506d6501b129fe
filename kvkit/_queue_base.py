"""The no-I/O half of the queue service: argument rules, message ids, consume bookkeeping.

Written once and shared by :mod:`kvkit._async.queue` and its generated sync twin, so that
both flavours validate alike and share one set of classes.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from ._compat import Notifier
from ._errors import InvalidArgument
from ._queue_types import Message
from ._ttl import ceil_ms, check_seconds

__all__ = [
    "MAX_BATCH",
    "OPTIONS",
    "RATE_BUCKETS",
    "RATE_BUCKET_MS",
    "ConsumeRun",
    "Stoppable",
    "as_seconds",
    "check_count",
    "checked_delay_ms",
    "failure_reason",
    "hold_key",
    "message_ids",
    "new_ids",
    "positive_ms",
    "queue_name_of",
    "queue_options",
    "receipt_lease",
    "throughput_series",
    "wait_seconds",
]

monotonic = time.monotonic

#: Most messages one ``pop_many`` (or one ``consume`` batch) asks for. Redis reserves memory
#: for the requested count on every reclaim pass (a huge count fails there and not in
#: memory://), so the bound is checked up front, the same on every backend.
MAX_BATCH = 10_000
#: The options of ``client.queue(name, **options)``.
OPTIONS = (
    "visibility_timeout",
    "max_deliveries",
    "group",
    "consumer",
    "maxlen",
    "dedupe_window",
)

#: Throughput is counted per queue in buckets of this many ms (pushed, acknowledged)...
RATE_BUCKET_MS = 5000
#: ...and the last this many buckets are kept (a ring: about five minutes). The Redis
#: scripts (``queue/lib.lua``, ``tally``) hold the same two numbers.
RATE_BUCKETS = 64


# -- argument validation ----------------------------------------------------------------------
def as_seconds(value: Any, what: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(
            f"{what} must be a number of seconds or a timedelta, not {type(value).__name__!r}"
        )
    return float(value)


def positive_ms(value: Any, what: str) -> int:
    """A positive, finite duration of at most 100 years, in whole milliseconds (>= 1)."""
    return ceil_ms(check_seconds(as_seconds(value, what), what))


def checked_delay_ms(delay: Any) -> int:
    """``None``/0: no delay; else a positive finite duration (at most 100 years) in ms."""
    if delay is None:
        return 0
    seconds = check_seconds(as_seconds(delay, "delay"), "delay", zero_ok=True)
    return 0 if seconds == 0 else ceil_ms(seconds)


def wait_seconds(timeout: Any) -> float | None:
    """``None``/``math.inf``: forever; else a duration >= 0 (at most 100 years) in seconds."""
    if timeout is None:
        return None
    seconds = as_seconds(timeout, "timeout")
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgument(f"timeout must be None or >= 0, got {seconds!r}")
    return None if math.isinf(seconds) else check_seconds(seconds, "timeout", zero_ok=True)


def check_count(value: Any, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {type(value).__name__!r}")
    if value < minimum:
        raise InvalidArgument(f"{what} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidArgument(f"{what} must be at most {maximum}, got {value}")
    return value


def queue_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return the options of ``client.queue(name, **options)`` if every name is known.

    Raises:
        InvalidArgument: an unknown option (named, with the valid ones listed).
    """
    unknown = [name for name in options if name not in OPTIONS]
    if unknown:
        raise InvalidArgument(
            f"unknown queue option(s) {', '.join(map(repr, sorted(unknown)))}; "
            f"the options are {', '.join(OPTIONS)}"
        )
    return options


def new_ids(count: int) -> list[str]:
    """Globally unique message ids: 12 hex digits of Unix ms, then 48 random bits.

    They sort by creation time (to the millisecond) and are unique across processes and
    queues, so an id from one queue can never acknowledge a message of another.
    """
    stamp = f"{int(time.time() * 1000):012x}"
    noise = secrets.token_hex(6 * count)
    return [stamp + noise[i : i + 12] for i in range(0, 12 * count, 12)]


class Stoppable(Protocol):
    def is_set(self) -> bool: ...


# -- consume() bookkeeping ------------------------------------------------------------------
def receipt_lease(message: Message) -> tuple[str | None, int]:
    handle = message._handle
    return (None, 0) if handle is None else (handle[1], handle[2])


def hold_key(message: Message) -> str:
    return receipt_lease(message)[0] or message.id


class ConsumeRun:
    """Shared state of one ``consume`` call (its workers: tasks when async, threads when sync)."""

    def __init__(
        self,
        handler: Callable[[Message], Any],
        batch: int,
        stop: Stoppable | None,
        max_messages: int | None,
        renew_after: float,
    ) -> None:
        self.handler = handler
        self.batch = batch
        self.stop = stop
        self.max_messages = max_messages
        self.renew_after = renew_after
        # Plain lock on both sides: held for counter updates only, never across I/O.
        self.lock = threading.Lock()
        self.processed = 0
        self.reserved = 0
        self.closing = False  # workers stop taking messages
        self.finished = False  # the lease keeper stops
        self.notifier = Notifier()
        self.held: dict[str, list[Any]] = {}  # receipt -> [message, last renewal]

    def stopping(self) -> bool:
        return self.closing or (self.stop is not None and self.stop.is_set())

    def reserve(self, wanted: int) -> int:
        """How many messages a worker may pop now (``max_messages`` budget)."""
        with self.lock:
            if self.max_messages is None:
                return wanted
            free = self.max_messages - self.processed - self.reserved
            take = max(0, min(wanted, free))
            self.reserved += take
            return take

    def unreserve(self, count: int) -> None:
        if self.max_messages is not None and count:
            with self.lock:
                self.reserved -= count

    def done(self, message: Message) -> None:
        with self.lock:
            self.held.pop(hold_key(message), None)
            self.processed += 1
            if self.max_messages is not None:
                self.reserved -= 1

    def hold(self, messages: list[Message]) -> None:
        now = monotonic()
        with self.lock:
            for message in messages:
                self.held[hold_key(message)] = [message, now]

    def drop(self, messages: list[Message]) -> None:
        with self.lock:
            for message in messages:
                self.held.pop(hold_key(message), None)

    def due(self) -> list[Message]:
        """Messages held longer than ``renew_after`` since their last renewal."""
        now = monotonic()
        out: list[Message] = []
        with self.lock:
            for item in self.held.values():
                if now - item[1] >= self.renew_after:
                    item[1] = now
                    out.append(item[0])
        return out

    def close(self) -> None:
        self.closing = True

    def is_finished(self) -> bool:
        return self.finished

    def finish(self) -> None:
        self.closing = self.finished = True
        self.notifier.notify()


#: Longest handler error kept in a dead letter's reason (characters).
MAX_ERROR_TEXT = 300


def failure_reason(max_deliveries: int, exc: BaseException | None) -> str:
    """The dead-letter reason of a message whose handler raised ``exc`` on its last try.

    Kept with the message when it goes to the dead letters (``message.reason``, the
    dashboard, ``kvkit queue dead``): why it died, not only that it ran out of deliveries.
    """
    base = f"max_deliveries ({max_deliveries}) exceeded"
    if exc is None:
        return base
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if len(text) > MAX_ERROR_TEXT:
        text = text[: MAX_ERROR_TEXT - 3] + "..."
    return f"{base}; last error: {text}"


def message_ids(ids: Any) -> set[str] | None:
    """Validate the ``ids`` argument of the dead-letter methods: ``None`` or str ids.

    Raises:
        InvalidArgument: ``ids`` is not an iterable of str.
    """
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise InvalidArgument(f"ids must be an iterable of str, not {type(ids).__name__!r}")
    wanted: set[str] = set()
    for message_id in ids:
        if not isinstance(message_id, str):
            raise InvalidArgument(f"ids must be str, not {type(message_id).__name__!r}")
        wanted.add(message_id)
    return wanted


# -- inspection ----------------------------------------------------------------------------------
def throughput_series(
    now_ms: int, rows: list[tuple[int, int, int]], window: float
) -> list[dict[str, Any]]:
    """The buckets of the last ``window`` seconds, oldest first, empty ones included.

    Args:
        now_ms: The store's clock (Unix ms) when ``rows`` were read.
        rows: ``(bucket number, pushed, acknowledged)`` as the driver stored them.
        window: Seconds to cover (at most what the ring keeps).

    Returns:
        ``[{"t": bucket start in Unix seconds, "in": pushed, "out": acknowledged}, ...]``;
        the last bucket is the current, still filling one.
    """
    current = now_ms // RATE_BUCKET_MS
    count = max(1, min(RATE_BUCKETS, math.ceil(window * 1000 / RATE_BUCKET_MS)))
    by_bucket = {bucket: (pushed, acked) for bucket, pushed, acked in rows}
    series = []
    for bucket in range(current - count + 1, current + 1):
        pushed, acked = by_bucket.get(bucket, (0, 0))
        series.append({"t": bucket * RATE_BUCKET_MS / 1000.0, "in": pushed, "out": acked})
    return series


def queue_name_of(key: str, prefix: str) -> str | None:
    """The queue name in a storage key ``{prefix}{NAME}...`` (hash tag), or ``None``."""
    if not key.startswith(prefix + "{"):
        return None
    end = key.find("}", len(prefix) + 1)
    if end < 0:
        return None
    name = key[len(prefix) + 1 : end]
    return name or None
