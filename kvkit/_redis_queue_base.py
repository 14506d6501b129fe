"""The no-I/O half of the Redis queue driver: its scripts, key names and reply parsing.

Written once and shared by :mod:`kvkit._async.backends.redis_queue` and its generated sync
twin, which only send commands and hand the replies to these functions. The key layout
is described in that module.
"""

from __future__ import annotations

import functools
from typing import Any

from ._lua import LuaScript
from ._queue_types import RawMessage

__all__ = [
    "ACK",
    "DEAD_LETTER",
    "DROP_DEAD",
    "EXPIRE",
    "EXTEND",
    "GC",
    "NACK",
    "PURGE",
    "PUSH",
    "RECLAIM",
    "REQUEUE",
    "STATS",
    "THROUGHPUT",
    "UNREAD",
    "as_text",
    "field_text",
    "is_nogroup",
    "queue_keys",
    "raw_message",
    "raw_messages",
    "stored_count",
    "stream_entries",
    "throughput_rows",
]

# Most digits of a stored counter: any 18-digit number fits Redis' signed 64-bit integers.
_MAX_DIGITS = 18

PUSH = LuaScript.load("queue/push")
RECLAIM = LuaScript.load("queue/reclaim")
ACK = LuaScript.load("queue/ack")
NACK = LuaScript.load("queue/nack")
EXTEND = LuaScript.load("queue/extend")
EXPIRE = LuaScript.load("queue/expire")
DEAD_LETTER = LuaScript.load("queue/dead_letter")
DROP_DEAD = LuaScript.load("queue/drop_dead")
REQUEUE = LuaScript.load("queue/requeue")
PURGE = LuaScript.load("queue/purge")
GC = LuaScript.load("queue/gc")
STATS = LuaScript.load("queue/stats")
UNREAD = LuaScript.load("queue/unread")
THROUGHPUT = LuaScript.load("queue/throughput")


@functools.lru_cache(maxsize=1024)
def queue_keys(key: str) -> tuple[str, str, str, str, str]:
    """``(stream, delayed, dead, ids, cursors)`` of the queue with base key ``key``."""
    return (
        f"{key}:stream",
        f"{key}:delayed",
        f"{key}:dead",
        f"{key}:ids",
        f"{key}:cursors",
    )


def is_nogroup(exc: BaseException) -> bool:
    """Whether ``exc`` says the consumer group (or the stream) does not exist."""
    return "NOGROUP" in str(exc.__cause__ or exc)


def as_text(value: Any) -> str:
    """A reply item (bytes or already text) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


_new_raw = tuple.__new__


def stored_count(value: Any) -> int | None:
    """A stored counter (``enqueued_ms``, ``deliveries``...) or ``None`` if it is not one.

    kvkit writes them as plain decimal digits; anything else (another process's ``abc``,
    a sign, an exponent, more digits than a 64-bit integer holds) is not trusted.
    """
    if type(value) is bytes and 0 < len(value) <= _MAX_DIGITS and value.isdigit():
        return int(value)
    return None


def field_text(value: bytes) -> str:
    """A stored text field as ``str``; bytes that are not UTF-8 are shown escaped."""
    return value.decode("utf-8", "backslashreplace")


def raw_message(receipt: Any, fields: Any, lease: int) -> RawMessage:
    """Build a :class:`RawMessage` from a stream entry's fields (flat list or dict).

    Never raises on what another process may have written into the stream: a malformed
    entry comes back with no payload and the reason, which makes the queue service
    dead-letter it alone (one bad entry must not block the rest of the queue).
    """
    eid = receipt.decode() if isinstance(receipt, bytes) else str(receipt)
    if isinstance(fields, dict):
        m = fields
    else:
        it = iter(fields)
        m = dict(zip(it, it, strict=False))
    mid, payload = m.get(b"id"), m.get(b"payload")
    enqueued, prior = m.get(b"enqueued_ms"), m.get(b"prior_deliveries")
    problem: str | None = None
    if mid is None:
        text_id = eid
    else:
        try:
            text_id = mid.decode()
        except UnicodeDecodeError:
            text_id, problem = field_text(mid), "id is not UTF-8"
    # A fresh push stores no time: its entry id holds it.
    enqueued_ms = int(eid.partition("-")[0]) if enqueued is None else stored_count(enqueued)
    if enqueued_ms is None:
        problem = problem or "enqueued_ms is not a number of milliseconds"
    prior_n = 0 if prior is None else stored_count(prior)
    if prior_n is None:
        problem = problem or "prior_deliveries is not a count"
    # tuple.__new__ skips NamedTuple's Python-level constructor.
    return _new_raw(
        RawMessage,
        (
            eid,
            text_id,
            payload if problem is None else None,
            enqueued_ms or 0,
            (prior_n or 0) + lease,
            lease,
            None if problem is None else f"malformed entry: {problem}",
        ),
    )


def stream_entries(reply: Any) -> list[Any]:
    """The ``(entry id, fields)`` entries of an XREADGROUP reply on one stream.

    Accepts every shape it comes in: raw RESP3 (``{stream: entries}``), raw RESP2 and
    redis-py's parsed form (``[[stream, entries]]``); ``None``/empty for no entries.
    """
    if not reply:
        return []
    if isinstance(reply, dict):
        value = next(iter(reply.values())) or []
        if value and isinstance(value[0], list) and isinstance(value[0][0], (list, tuple)):
            value = value[0]  # a parsed RESP3 reply wraps the entries once more
        return list(value)
    return list(reply[0][1])


def raw_messages(entries: list[Any], lease: int | None) -> list[RawMessage]:
    """:class:`RawMessage` of each stream entry (see :func:`raw_message`).

    ``lease`` is the delivery counter of every entry (1: new messages, read as
    ``[entry id, fields]``), or ``None`` for reclaimed entries, which come as
    ``[entry id, fields, counter]``.
    """
    if lease is None:
        return [raw_message(e[0], e[1], int(e[2])) for e in entries]
    new, raw = _new_raw, RawMessage
    out: list[RawMessage] = []
    append = out.append
    # A fresh push's entry (id and payload; the entry id holds the enqueue time), as a raw
    # reply has it, is read inline: a pop reads many. Anything else takes _raw.
    for eid, f in entries:
        if (
            type(f) is list
            and len(f) == 4
            and f[0] == b"id"
            and f[2] == b"payload"
            and type(eid) is bytes
        ):
            try:
                mid = f[1].decode()
            except UnicodeDecodeError:  # another process's entry: _raw reports it
                append(raw_message(eid, f, lease))
                continue
            append(
                new(
                    raw,
                    (
                        eid.decode(),
                        mid,
                        f[3],
                        int(eid[: eid.find(b"-")]),
                        lease,
                        lease,
                        None,
                    ),
                )
            )
        else:
            append(raw_message(eid, f, lease))
    return out


def throughput_rows(reply: Any) -> tuple[int, list[tuple[int, int, int]]]:
    """Parse the throughput script's reply: ``(now_ms, [(bucket, pushed, acked), ...])``.

    The ring's slots hold ``b<slot>`` (bucket number), ``i<slot>`` and ``o<slot>``; a field
    that is not a number (another writer's) is ignored rather than failing the read.
    """
    now, flat = reply
    fields = {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
    rows = []
    for name, bucket in fields.items():
        if not name.startswith("b"):
            continue
        slot = name[1:]
        try:
            rows.append(
                (int(bucket), int(fields.get(f"i{slot}", 0)), int(fields.get(f"o{slot}", 0)))
            )
        except ValueError:
            continue
    return int(now), rows
