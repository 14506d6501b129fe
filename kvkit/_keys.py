"""Key validation (non-empty ``str`` of at most 1024 UTF-8 bytes) and key patterns."""

from __future__ import annotations

from typing import Any

from ._errors import InvalidArgument

MAX_KEY_BYTES = 1024


def validate_key(key: Any, what: str = "key") -> str:
    """Return ``key`` if it is a valid kvkit key, else raise.

    Args:
        key: The candidate key.
        what: How to call it in the error message ("key", "session id", ...).

    Returns:
        The key, unchanged.

    Raises:
        InvalidArgument: ``key`` is not a ``str``, is empty, or is longer than 1024
            UTF-8 bytes.
    """
    # ASCII keys (str.isascii() is O(1) in CPython) are one byte per character, so the
    # common case skips the encode; anything else is measured in UTF-8 bytes.
    if type(key) is str and 0 < len(key) <= MAX_KEY_BYTES and key.isascii():
        return key
    if not isinstance(key, str):
        raise InvalidArgument(f"{what} must be a str, not {type(key).__name__!r}")
    if not key:
        raise InvalidArgument(f"{what} must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates cannot be stored
        raise InvalidArgument(f"{what} is not valid UTF-8 text") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidArgument(f"{what} is {size} UTF-8 bytes long; the limit is {MAX_KEY_BYTES}")
    return key


def validate_keys(keys: Any, what: str = "keys") -> list[str]:
    """Validate an iterable of keys (not a bare ``str``) and return them as a list.

    Raises:
        InvalidArgument: ``keys`` is a ``str``/``bytes`` or not iterable, or any key is
            invalid.
    """
    if isinstance(keys, (str, bytes)) or not hasattr(keys, "__iter__"):
        raise InvalidArgument(f"{what} must be an iterable of str, not {type(keys).__name__!r}")
    return [validate_key(k) for k in keys]


NAMESPACE_MARK = "#"
"""First character of a cache namespace segment (``{prefix}:cache:#users:1``).

Cache keys may not start with it and namespace names may not contain ``:``, so a key and a
namespace can never produce the same Redis key, and a namespace's ``clear()`` (everything
under ``…#name:``) can only reach that namespace. Plain keys keep the readable layout
``{prefix}:cache:{key}``.
"""


def validate_cache_key(key: Any, what: str = "key") -> str:
    """Return ``key`` if it is a valid cache key: a kvkit key not starting with ``#``.

    Raises:
        InvalidArgument: ``key`` is not a valid key (see :func:`validate_key`) or starts
            with :data:`NAMESPACE_MARK`, which is reserved for namespaces.
    """
    # The common case in one test, like validate_key's (this is on every cache call).
    if type(key) is str and 0 < len(key) <= MAX_KEY_BYTES and key.isascii() and key[0] != "#":
        return key
    checked = validate_key(key, what)
    if checked[0] == NAMESPACE_MARK:
        raise InvalidArgument(
            f"cache {what} must not start with {NAMESPACE_MARK!r} (reserved for namespaces), "
            f"got {checked!r}"
        )
    return checked


def validate_cache_keys(keys: Any) -> list[str]:
    """Validate an iterable of cache keys (see :func:`validate_keys`) and return a list."""
    if isinstance(keys, (str, bytes)) or not hasattr(keys, "__iter__"):
        validate_keys(keys)  # raises the same error as for any other batch of keys
    # One pass: get_many/delete_many are hot paths and checking each key once is enough.
    return [validate_cache_key(k) for k in keys]


def validate_namespace_name(name: Any) -> str:
    """Return ``name`` if it can name a cache namespace.

    Raises:
        InvalidArgument: not a valid key, or it contains ``:`` (the segment separator) or
            ``{``/``}`` (Cluster hash tags).
    """
    checked = validate_key(name, "namespace name")
    for char in ":{}":
        if char in checked:
            raise InvalidArgument(f"namespace name must not contain {char!r}, got {checked!r}")
    return checked


def glob_escape(text: str) -> str:
    """Return ``text`` as a Redis ``SCAN MATCH`` pattern that matches exactly ``text``.

    Args:
        text: A literal key prefix.

    Returns:
        ``text`` with every glob metacharacter (star, question mark, brackets,
        backslash) escaped by a backslash.
    """
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
