"""Plain data types of the queue API, shared by the sync and async clients (no I/O).

:class:`Message` is what ``pop`` returns and :class:`QueueStats` what ``stats`` returns.
:class:`RawMessage` is the internal record a queue driver hands to the queue service before
the payload is decoded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import attrs

from ._errors import InvalidArgument

__all__ = ["Message", "QueueStats", "RawMessage", "new_message"]


class RawMessage(NamedTuple):
    """A message as stored, before decoding (internal: drivers -> queue service).

    Attributes:
        receipt: Backend handle of this delivery (the stream entry id on Redis).
        id: The message id (stable across redeliveries, requeues and delays).
        payload: The encoded payload, or ``None`` when the stored entry has none.
        enqueued_ms: When the message was first pushed (Unix time, milliseconds).
        deliveries: How many times the message has been delivered, this one included.
        lease: Delivery counter of the current lease (detects a lease taken over by
            another consumer); 0 when unknown.
        reason: Why a dead letter was dead-lettered (dead letters); for a popped entry,
            why it is malformed (another process wrote it), else ``None``.
    """

    receipt: str
    id: str
    payload: bytes | None
    enqueued_ms: int
    deliveries: int
    lease: int = 0
    reason: str | None = None


@attrs.frozen
class Message:
    """One message delivered by a queue.

    A message is leased to the consumer that popped it for the queue's visibility timeout:
    acknowledge it with :meth:`ack` when done (or give it back with :meth:`nack`); a message
    that is not acknowledged in time is delivered again.

    On the async client :meth:`ack`, :meth:`nack` and :meth:`extend` return awaitables.

    Attributes:
        id: The message id returned by ``push`` (stable across redeliveries).
        payload: The decoded payload. For a dead letter whose stored bytes cannot be
            decoded, the raw ``bytes``.
        queue: Name of the queue the message belongs to.
        deliveries: How many times the message has been delivered, this delivery included
            (1 on the first delivery). For a dead letter: how often it was delivered.
        enqueued_at: When the message was first pushed (Unix time in seconds).
        reason: For dead letters, why the message was dead-lettered; otherwise ``None``.
    """

    id: str
    payload: Any
    queue: str
    deliveries: int
    enqueued_at: float
    # Internal: (queue service, receipt, lease counter) of the delivery, or None. One
    # positional field rather than three keyword ones: a pop builds many messages, and
    # this halves the cost of each. It takes no part in equality or repr.
    _handle: tuple[Any, str | None, int] | None = attrs.field(default=None, eq=False, repr=False)
    reason: str | None = attrs.field(default=None, kw_only=True)

    def _bound(self) -> Any:
        if self._handle is None or self._handle[0] is None:
            raise InvalidArgument(f"message {self.id!r} was not delivered by a queue")
        return self._handle[0]

    def ack(self) -> Any:
        """Acknowledge the message (delete it from the queue); return 1, or 0 if it was not leased.

        Same as ``queue.ack(message)``; awaitable on the async client.
        """
        return self._bound().ack(self)

    def nack(self, delay: Any = None) -> Any:
        """Give the message back for redelivery, after ``delay`` seconds if given.

        Same as ``queue.nack(message, delay=delay)``; awaitable on the async client.
        """
        return self._bound().nack(self, delay=delay)

    def extend(self, seconds: Any = None) -> Any:
        """Renew the lease (default: a full visibility timeout); return whether it was held.

        Same as ``queue.extend(message, seconds)``; awaitable on the async client.
        """
        return self._bound().extend(self, seconds)


_new_object = object.__new__
_slot_setters = tuple(
    Message.__dict__[name].__set__
    for name in ("id", "payload", "queue", "deliveries", "enqueued_at", "_handle", "reason")
)


def new_message(
    id: str,
    payload: Any,
    queue: str,
    deliveries: int,
    enqueued_at: float,
    handle: tuple[Any, str | None, int],
) -> Message:
    """Internal: ``Message(id, payload, queue, deliveries, enqueued_at, handle)``, faster.

    A pop builds a Message per delivery; setting the slots directly skips the generated
    ``__init__``'s per-field ``object.__setattr__`` lookups (what ``attrs`` does for a
    frozen class), about a quarter of a Message's cost. Same object, same fields.
    """
    message = _new_object(Message)
    s_id, s_payload, s_queue, s_deliveries, s_enqueued, s_handle, s_reason = _slot_setters
    s_id(message, id)
    s_payload(message, payload)
    s_queue(message, queue)
    s_deliveries(message, deliveries)
    s_enqueued(message, enqueued_at)
    s_handle(message, handle)
    s_reason(message, None)
    return message


@attrs.frozen
class QueueStats:
    """A snapshot of one queue, from the point of view of one consumer group.

    Attributes:
        ready: Messages waiting to be delivered.
        pending: Messages delivered and not yet acknowledged (in flight).
        delayed: Messages pushed (or given back) with a delay that is not over yet.
        dead: Messages in the dead-letter queue.
        consumers: Consumers of the group that hold at least one message in flight
            (popped and neither acknowledged nor given back) -- the busy ones;
            a consumer waiting on an empty queue does not count.
        oldest_pending_s: Age of the in-flight lease closest to expiry, measured as
            ``visibility_timeout`` minus its remaining time: the seconds since delivery,
            or since an ``extend()`` that renewed it for the full visibility timeout (an
            ``extend(m, s)`` with a shorter ``s`` makes it ``visibility_timeout - s``);
            ``None`` when nothing is in flight.
        oldest_ready_s: Seconds the oldest ready message has been waiting for this group
            (since it was pushed, given back or became due); ``None`` when none is ready.
            A growing value means the consumers do not keep up (or none is running).
    """

    ready: int
    pending: int
    delayed: int
    dead: int
    consumers: int
    oldest_pending_s: float | None = None
    oldest_ready_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return attrs.asdict(self)
