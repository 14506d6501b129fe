"""The no-I/O half of the Redis session driver: its scripts and its hash layout.

The layout (see :mod:`kvkit._async.backends.redis_sessions`): a session is a hash whose data
fields are ``d:<name>`` and whose metadata fields start with ``_``. Written once here and
shared by the async driver and its generated sync twin.
"""

from __future__ import annotations

from ._errors import DecodeError
from ._lua import LuaScript
from ._sessions_base import SessionRecord

__all__ = [
    "CREATE",
    "DELETE",
    "DELETE_MEMBERS",
    "DETAILS",
    "GET",
    "MEMBERS",
    "REPLACE",
    "ROTATE",
    "TOUCH",
    "UPDATE",
    "data_fields",
    "field_pairs",
    "hash_field",
    "records",
]

CREATE = LuaScript.load("sessions/create")
GET = LuaScript.load("sessions/get")
REPLACE = LuaScript.load("sessions/replace")
UPDATE = LuaScript.load("sessions/update")
DELETE = LuaScript.load("sessions/delete")
TOUCH = LuaScript.load("sessions/touch")
ROTATE = LuaScript.load("sessions/rotate")
MEMBERS = LuaScript.load("sessions/members")
DELETE_MEMBERS = LuaScript.load("sessions/delete_members")
DETAILS = LuaScript.load("sessions/details")


def field_pairs(fields: dict[str, bytes]) -> list[bytes]:
    """Flatten data fields to ``d:<name>``/value pairs (the hash layout)."""
    out: list[bytes] = []
    for name, value in fields.items():
        out.append(hash_field(name))
        out.append(value)
    return out


def data_fields(flat: list[bytes]) -> dict[str, bytes]:
    """The data fields of a flat ``HGETALL`` reply (metadata fields skipped)."""
    out: dict[str, bytes] = {}
    items = iter(flat)
    for field, value in zip(items, items, strict=False):  # pairs of one iterator
        if field[:2] == b"d:":
            try:
                out[field[2:].decode("utf-8")] = value
            except UnicodeDecodeError as exc:
                # No key in the message: it contains the session id, a bearer secret (the
                # service adds the id's hash).
                raise DecodeError("a field name of the session is not UTF-8") from exc
    return out


def hash_field(name: str) -> bytes:
    """The hash field holding data item ``name``."""
    return b"d:" + name.encode("utf-8")


def records(flat: list[bytes]) -> list[SessionRecord]:
    """The records of a flat ``details`` reply: key, created ms, last seen ms, metadata."""
    out: list[SessionRecord] = []
    items = iter(flat)
    for key, created, seen, meta in zip(items, items, items, items, strict=False):
        out.append(
            SessionRecord(
                key.decode("utf-8", "replace"), int(created), int(seen), bytes(meta) or None
            )
        )
    return out
