"""Import the original system's sessions into kvkit (``kvkit migrate-sessions``).

The original ``RedisService`` stored each session as one JSON string under
``session:<id>`` (in db 1), written with ``SETEX``. kvkit keeps sessions written under a
caller-chosen id in its legacy namespace (``client.session_set``; see
:mod:`kvkit._async.service`), so this copies every old session there with the TTL it has
left: ``client.session_get(old_id)`` then returns it, and users stay logged in across the
cutover. The old keys are only read (``SCAN``, never ``KEYS``), never changed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs

from ._errors import InvalidArgument, SerializationError

__all__ = ["MigrationReport", "migrate_sessions"]

log = logging.getLogger("kvkit.migrate")


@attrs.frozen
class MigrationReport:
    """What :func:`migrate_sessions` did (counts only: session ids are secrets).

    Attributes:
        migrated: Sessions written to the target (or that would be, in a dry run).
        undecodable: Values that are not a UTF-8 JSON object; skipped.
        expired: Keys that expired between the scan and the read; skipped.
        invalid: Ids kvkit cannot use as a session id (not UTF-8, too long…); skipped.
    """

    migrated: int = 0
    undecodable: int = 0
    expired: int = 0
    invalid: int = 0


def migrate_sessions(
    source: str, target: Any, *, prefix: str = "session:", dry_run: bool = False
) -> MigrationReport:
    """Copy the JSON sessions under ``{prefix}*`` of ``source`` into ``target``'s sessions.

    Args:
        source: URL of the original system's session server (e.g. ``redis://host/1``).
        target: The sync :class:`kvkit.Client` whose session store receives them, through
            ``target.session_set(id, data, expire=<remaining TTL>)``; a key without TTL
            gets ``Settings.session_ttl``.
        prefix: The literal key prefix of the old sessions; the rest of a key is the id.
        dry_run: Count what would be migrated; write nothing.

    Returns:
        The counts.

    Raises:
        ConfigError: ``source`` is not a Redis URL.
        BackendError: a server failed (the counts so far are logged).
    """
    from ._redis_errors import REDIS_ERRORS, translate
    from ._sync.client import Client
    from ._tools import key_batches

    counts = {"migrated": 0, "undecodable": 0, "expired": 0, "invalid": 0}
    raw_prefix = prefix.encode()
    with Client(source) as old:
        redis = old.redis("sessions")
        where = old.backend("sessions").url.redacted
        try:
            for keys in key_batches(redis, prefix):
                _copy(redis, keys, raw_prefix, target, dry_run, counts)
        except REDIS_ERRORS as exc:
            log.warning("session migration stopped by a server error; so far: %s", counts)
            raise translate(exc, where) from exc
    return MigrationReport(**counts)


def _copy(
    redis: Any,
    keys: list[Any],
    raw_prefix: bytes,
    target: Any,
    dry_run: bool,
    counts: dict[str, int],
) -> None:
    """Read one batch of old sessions (one round trip) and write each to ``target``."""
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute()
    for index, key in enumerate(keys):
        value, pttl = replies[2 * index], replies[2 * index + 1]
        raw_key = key if isinstance(key, bytes) else str(key).encode()
        if value is None or pttl == -2:
            counts["expired"] += 1
            continue
        try:
            session_id = raw_key[len(raw_prefix) :].decode("utf-8")
        except UnicodeDecodeError:
            counts["invalid"] += 1
            continue
        try:
            data = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            counts["undecodable"] += 1
            continue
        # Remaining lifetime, to the millisecond; a key without TTL gets the default.
        expire = None if pttl is None or pttl < 0 else max(pttl, 1) / 1000.0
        if not dry_run:
            try:
                target.session_set(session_id, data, expire=expire)
            except (InvalidArgument, SerializationError):
                # Never log the id: it is a live bearer secret.
                counts["invalid"] += 1
                continue
        counts["migrated"] += 1
