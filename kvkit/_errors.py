"""The kvkit exception hierarchy.

Every error kvkit raises derives from :class:`KVKitError`. The builtin base classes are
mixed in so that callers who already catch ``ValueError``/``TypeError``/``ConnectionError``/
``TimeoutError`` keep working.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ConfigError",
    "DecodeError",
    "InvalidArgument",
    "KVKitError",
    "LockNotOwned",
    "LockTimeout",
    "SerializationError",
]


class KVKitError(Exception):
    """Base class of every exception raised by kvkit."""


class ConfigError(KVKitError, ValueError):
    """A URL, scheme, query option, setting or environment value is invalid."""


class InvalidArgument(KVKitError, ValueError):
    """An argument (key, TTL, count, timeout, ...) is invalid; nothing was sent."""


class SerializationError(KVKitError, TypeError):
    """A value cannot be encoded; nothing was written."""


class DecodeError(KVKitError, ValueError):
    """Bytes read from the store cannot be decoded."""


class BackendError(KVKitError):
    """The backend failed to carry out an operation."""


class BackendUnavailable(BackendError, ConnectionError):
    """The backend could not be reached, after retries where those are allowed."""


class BackendTimeout(BackendError, TimeoutError):
    """The backend did not answer in time, or no pooled connection became free in time."""


class AuthenticationError(BackendError):
    """The backend rejected the credentials (wrong password or ACL); never retried."""


class LockTimeout(KVKitError, TimeoutError):
    """A lock could not be acquired within its timeout (``with lock:``)."""


class LockNotOwned(KVKitError):
    """A lock was released that this holder no longer owns (it expired or was taken over)."""
