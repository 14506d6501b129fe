"""Naming a session id in messages without revealing it.

A session id is a bearer secret: whoever knows it is logged in. Errors, log lines and
reprs therefore never show one; they show :func:`id_hash` instead, which is enough to
correlate log lines about one session and useless for taking it over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from ._errors import DecodeError

__all__ = ["decode_errors_name", "id_hash"]

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


@contextmanager
def decode_errors_name(session_id: str) -> Iterator[None]:
    """Prefix a :class:`~kvkit.DecodeError` raised inside with the session's hash.

    Storage layers must not put the key (which contains the id) in their messages; this
    adds the one safe name of the session, so that a corrupted session can still be found.
    """
    try:
        yield
    except DecodeError as exc:
        raise DecodeError(f"session {id_hash(session_id)}: {exc}") from exc
