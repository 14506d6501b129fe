"""The no-I/O half of the session service: id format, key names and the data codec.

Written once and shared by :class:`kvkit.AsyncSessionStore`'s implementation and its
generated sync twin; the id rules and key layout are described in
:mod:`kvkit._async.sessions`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import attrs

from ._errors import DecodeError, InvalidArgument, SerializationError
from ._idhash import id_hash
from ._keys import validate_key
from ._serde import Codec

__all__ = [
    "ID_LENGTH",
    "SessionInfo",
    "SessionKeys",
    "SessionRecord",
    "decode_data",
    "diff_data",
    "encode_data",
    "encode_meta",
    "session_info",
    "snapshot_data",
    "update_args",
    "user_tag",
    "well_formed",
]

log = logging.getLogger("kvkit.sessions")

ID_LENGTH = 47
"""Length of a session id: a 4-character slot tag and a 43-character secret."""
_TAG_LENGTH = 4
_SECRET_BYTES = 32  # 256 bits -> 43 URL-safe characters
_ID_RE = re.compile(r"[A-Za-z0-9_-]{47}")  # ID_LENGTH URL-safe base64 characters


def user_tag(user_id: str) -> str:
    """The slot tag of a user's sessions: 4 URL-safe characters of SHA-256(user_id)."""
    digest = hashlib.sha256(user_id.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest[:3]).decode("ascii")


def well_formed(session_id: str) -> bool:
    """Whether ``session_id`` has the format of the ids the store issues."""
    return len(session_id) == ID_LENGTH and _ID_RE.fullmatch(session_id) is not None


class SessionKeys:
    """Session ids and the keys they map to, below one prefix.

    Args:
        prefix: Key prefix of every session key (e.g. ``"kvkit:session:"``).
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, session_id: Any) -> str | None:
        """The session key of a well-formed id; ``None`` for any other ``str``.

        Raises:
            InvalidArgument: ``session_id`` is not a ``str``.
        """
        if type(session_id) is not str:
            if not isinstance(session_id, str):
                raise InvalidArgument(
                    f"session id must be a str, not {type(session_id).__name__!r}"
                )
            session_id = str.__str__(session_id)
        if not well_formed(session_id):
            return None
        return f"{self.prefix}{{{session_id[:_TAG_LENGTH]}}}{session_id[_TAG_LENGTH:]}"

    def index(self, user_id: Any) -> str:
        """The key of the user's index of sessions.

        Raises:
            InvalidArgument: ``user_id`` is not a valid key.
        """
        user_id = validate_key(user_id, "user_id")
        return f"{self.prefix}{{{user_tag(user_id)}}}user:{user_id}"

    def id_of(self, key: str) -> str | None:
        """Invert :meth:`key` (``None`` for anything that is not a session key)."""
        rest = key[len(self.prefix) :]
        if not key.startswith(self.prefix) or len(rest) != ID_LENGTH + 2:
            return None
        if rest[0] != "{" or rest[_TAG_LENGTH + 1] != "}":
            return None
        session_id = rest[1 : _TAG_LENGTH + 1] + rest[_TAG_LENGTH + 2 :]
        return session_id if _ID_RE.fullmatch(session_id) else None

    def new(self, user_id: str | None) -> tuple[str, str]:
        """A fresh ``(id, key)``.

        The tag is random, or the user's, so that all of one user's sessions and the
        user's index share a Cluster hash slot.
        """
        tag = secrets.token_urlsafe(3) if user_id is None else user_tag(user_id)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        return tag + secret, f"{self.prefix}{{{tag}}}{secret}"

    def successor(self, session_id: str) -> tuple[str, str]:
        """A fresh ``(id, key)`` for rotating a well-formed id: same tag, new secret."""
        tag = session_id[:_TAG_LENGTH]
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        return tag + secret, f"{self.prefix}{{{tag}}}{secret}"


def encode_data(codec: Codec, data: Any, what: str) -> dict[str, bytes]:
    """Encode each top-level item of ``data``; raise before anything is written.

    Raises:
        InvalidArgument: ``data`` is not a mapping.
        SerializationError: a name is not a ``str`` or a value cannot be encoded.
    """
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{what} must be a Mapping, not {type(data).__name__!r}")
    encode = codec.encode
    out: dict[str, bytes] = {}
    for name, value in data.items():
        out[_data_name(name)] = encode(name, value)
    return out


def decode_data(codec: Codec, fields: dict[str, bytes] | None) -> dict[str, Any] | None:
    """Decode the items :func:`encode_data` wrote (``None`` stays ``None``)."""
    if fields is None:
        return None
    decode = codec.decode
    return {name: decode(name, raw) for name, raw in fields.items()}


def _data_name(name: Any) -> str:
    """Check a top-level data name: a ``str`` (subclasses become plain ``str``)."""
    if not isinstance(name, str):
        raise SerializationError(f"session data keys must be str, not {type(name).__name__!r}")
    text = str.__str__(name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationError("session data key is not valid UTF-8 text") from None
    return text


def update_args(
    codec: Codec, changes: Mapping[str, Any] | None, remove: Any
) -> tuple[dict[str, bytes], list[str]]:
    """Check and encode the arguments of ``update``: ``(fields to set, names to remove)``.

    Raises:
        InvalidArgument: ``changes`` is not a mapping, ``remove`` is a ``str`` or holds a
            non-``str``, or a name is in both.
        SerializationError: a value cannot be encoded.
    """
    fields = {} if changes is None else encode_data(codec, changes, "changes")
    if isinstance(remove, (str, bytes)) or not isinstance(remove, Iterable):
        raise InvalidArgument(f"remove must be an iterable of str, not {type(remove).__name__!r}")
    removed: list[str] = []
    for name in remove:
        if not isinstance(name, str):
            raise InvalidArgument(f"remove must hold str names, not {type(name).__name__!r}")
        removed.append(_data_name(name))
    both = fields.keys() & set(removed)
    if both:
        raise InvalidArgument(f"{sorted(both)!r} both in changes and in remove")
    return fields, removed


# -- session metadata ("your devices") -------------------------------------------------------
class SessionRecord(NamedTuple):
    """What a session driver reports about one live session of a user (no I/O type).

    Times are milliseconds since the epoch on the backend's clock (the server's on Redis).
    """

    key: str
    created_ms: int
    last_seen_ms: int
    meta: bytes | None


@attrs.frozen
class SessionInfo:
    """One live session of a user, as ``sessions.user_sessions(user_id, details=True)`` lists it.

    What a "your devices" page shows. It never holds the session id (a bearer secret):
    ``id_hash`` names the session instead, and
    :func:`kvkit.ext.starlette.session_id_hash` gives the current request's, to mark
    "this device".

    Attributes:
        id_hash: Short, stable, non-reversible name of the session (``"#3f2a9c1e"``).
        created: When the session was created (an aware UTC datetime). Login creates a
            new session, so this is when the user logged in on that device. Sessions
            stored before kvkit recorded it report the first time they were used since.
        last_seen: The session's last use: the last call that restarted its idle TTL
            (``get``, ``update``, ``set``, ``touch``, ``rotate``), an aware UTC datetime.
        meta: The dict given as ``create(..., meta=...)`` or
            ``kvkit.ext.starlette.login(request, user_id, meta=...)`` (``{}`` if none).
    """

    id_hash: str
    created: dt.datetime
    last_seen: dt.datetime
    meta: dict[str, Any] = attrs.field(factory=dict)


def encode_meta(codec: Codec, meta: Any) -> bytes | None:
    """Encode a session's metadata (``None`` stays ``None``); raise before anything is written.

    Raises:
        InvalidArgument: ``meta`` is not a mapping.
        SerializationError: a name is not a ``str`` or a value cannot be encoded.
    """
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise InvalidArgument(f"meta must be a Mapping, not {type(meta).__name__!r}")
    for name in meta:
        _data_name(name)
    return codec.encode("meta", dict(meta))


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def session_info(codec: Codec, session_id: str, record: SessionRecord) -> SessionInfo:
    """The public view of a driver's record (metadata that does not decode reads as ``{}``).

    Stored bytes are input: undecodable metadata of one session is logged (by the
    session's hash, never its id) and does not fail the listing.
    """
    meta: dict[str, Any] = {}
    if record.meta is not None:
        try:
            decoded = codec.decode("meta", record.meta)
        except DecodeError as exc:
            log.warning("session %s: its metadata cannot be decoded: %s", id_hash(session_id), exc)
        else:
            if isinstance(decoded, dict):
                meta = decoded
            else:
                log.warning("session %s: its metadata is not a mapping", id_hash(session_id))
    return SessionInfo(
        id_hash(session_id), _utc(record.created_ms), _utc(record.last_seen_ms), meta
    )


# Values of these exact types cannot change in place: a snapshot keeps them as they are,
# and comparing type and value finds a change (float is left out: -0.0 == 0.0). Anything
# else (a list, a dict, ...) may be changed in place, so the snapshot keeps its encoding.
# Encoding only those spares a web request encoding the whole session twice (once when
# it is loaded, once when it is saved).
_IMMUTABLE = frozenset((str, int, bool, type(None)))
_MISSING = object()


class _Encoded:
    """A snapshot entry: the encoding of a value that may change in place."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


def snapshot_data(codec: Codec, data: Mapping[str, Any]) -> dict[str, Any]:
    """What ``data`` holds now, to tell later (:func:`diff_data`) which items were changed.

    Raises:
        SerializationError: a value that may change in place cannot be encoded.
    """
    encode = codec.encode
    return {
        name: value if type(value) in _IMMUTABLE else _Encoded(encode(name, value))
        for name, value in data.items()
    }


def diff_data(
    codec: Codec, before: Mapping[str, Any], data: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Compare ``data`` with the snapshot ``before``.

    Returns:
        The changed or new items, the removed names, and the snapshot of ``data``.

    Raises:
        SerializationError: a value that may change in place cannot be encoded.
    """
    encode = codec.encode
    changes: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, value in data.items():
        old = before.get(name, _MISSING)
        if type(value) in _IMMUTABLE:
            after[name] = value
            if type(old) is not type(value) or old != value:
                changes[name] = value
        else:
            new = after[name] = _Encoded(encode(name, value))
            if type(old) is not _Encoded or old.raw != new.raw:
                changes[name] = value
    removed = [name for name in before if name not in data]
    return changes, removed, after
