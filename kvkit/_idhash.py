"""Naming a session id in messages without revealing it.

A session id is a bearer secret: whoever knows it is logged in. Errors, log lines and
reprs therefore never show one; they show :func:`id_hash` instead, which is enough to
correlate log lines about one session and useless for taking it over.
"""

from __future__ import annotations

import hashlib

from ._errors import DecodeError

__all__ = ["id_hash", "named_decode_error"]

_HASH_CHARS = 8


def id_hash(session_id: str) -> str:
    """Return a short, stable, non-reversible name for ``session_id``.

    Args:
        session_id: The id (any ``str``; lone surrogates are hashed too).

    Returns:
        ``"#"`` followed by the first 8 hex digits of SHA-256 of the id's UTF-8 bytes,
        e.g. ``"#3f2a9c1e"``: 32 bits, which identify one session among many in a log
        but say nothing usable about the 256-bit id.
    """
    raw = session_id.encode("utf-8", "surrogatepass")
    return "#" + hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]


def named_decode_error(session_id: str, exc: DecodeError) -> DecodeError:
    """``exc`` again, its message prefixed with the hash of ``session_id``.

    Storage layers must not put the key (which contains the id) in their messages; this
    adds the one safe name of the session, so that a corrupted session can still be found.
    Callers raise it ``from exc``.
    """
    return DecodeError(f"session {id_hash(session_id)}: {exc}")
