"""``kvkit.Settings``: every knob of a client, with the original system's defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._errors import ConfigError
from ._ttl import check_seconds
from ._urls import parse_bool, parse_url, redact_url

__all__ = ["ROLES", "Settings"]

ROLES: Final = ("cache", "sessions", "queues")
"""The roles of a client, in the order every tool reports them; each may have its own URL."""


def _redacted(value: str | None) -> str:
    return "None" if value is None else repr(redact_url(value))


def _check_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    try:
        parse_url(value)
    except ConfigError as exc:  # redacted already; say which field
        raise ConfigError(f"Settings.{attribute.name}: {exc}") from None


def _check_positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "session_max_age":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"Settings.{attribute.name} must be a number, not {type(value).__name__!r}"
        )
    check_seconds(value, f"Settings.{attribute.name}", error=ConfigError)


def _check_int(minimum: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"Settings.{attribute.name} must be an int, not {type(value).__name__!r}"
            )
        if value < minimum:
            raise ConfigError(f"Settings.{attribute.name} must be >= {minimum}, got {value!r}")

    return check


def _check_prefix(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # One key segment: with a ':' a prefix could alias another client's role space
    # (prefix "kvkit:cache" keys are inside the cache of prefix "kvkit", whose clear()
    # would delete them).
    if not isinstance(value, str) or not value or any(c in value for c in ":{}*?[]"):
        raise ConfigError(
            "Settings.prefix must be a non-empty str without ':' (it is one key segment), "
            f"glob or hash-tag characters ({{}}*?[]), got {value!r}"
        )


def _check_bool(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"Settings.{attribute.name} must be a bool, not {type(value).__name__!r}")


@attrs.frozen(kw_only=True)
class Settings:
    """Configuration of a :class:`kvkit.Client` / :class:`kvkit.AsyncClient`.

    ``memory://`` is the default only when *no* URL is configured. When some role has a
    URL and another role has none, that role uses ``url``; without ``url`` the
    constructor raises :class:`kvkit.ConfigError` naming the missing fields, because a
    role silently kept in each process's memory loses data between workers.

    Attributes:
        url: Backend URL used by every role without its own URL (``None``: not set; every
            role then uses ``memory://`` if no role URL is set either).
        cache_url: URL of the cache role (``None``: ``url``).
        session_url: URL of the sessions role (``None``: ``url``).
        queue_url: URL of the queues role (``None``: ``url``).
        prefix: First segment of every key (``{prefix}:cache:…``).
        cache_ttl: Default cache TTL in seconds.
        session_ttl: Idle TTL of sessions in seconds (slides on access).
        temp_ttl: The ``"temp"`` TTL preset in seconds.
        long_ttl: The ``"long"`` TTL preset in seconds.
        session_max_age: Absolute lifetime of a session in seconds (``None``: unlimited).
        max_connections: Size of each connection pool.
        socket_timeout: Seconds to wait for a reply (and for a free pooled connection).
        connect_timeout: Seconds to wait for a connection to open.
        retries: Retries of idempotent operations after a connection error.
        cache_fail_open: Whether cache reads/writes degrade to misses/no-ops when the
            backend is unreachable.
        metrics: Whether the client records operation metrics (counts, latencies, cache
            hits and misses; see ``client.metrics_snapshot()``).
        near_cache: Entries of the in-process near cache in front of cache reads on Redis
            (0: off), kept coherent by Redis client tracking; a URL's ``?near_cache=N``
            overrides it. No effect on ``memory://`` (already in-process) and
            ``fakeredis://`` (no client tracking); refused on ``redis+sentinel://``.
    """

    url: str | None = attrs.field(default=None, validator=_check_url, repr=_redacted)
    cache_url: str | None = attrs.field(default=None, validator=_check_url, repr=_redacted)
    session_url: str | None = attrs.field(default=None, validator=_check_url, repr=_redacted)
    queue_url: str | None = attrs.field(default=None, validator=_check_url, repr=_redacted)
    prefix: str = attrs.field(default="kvkit", validator=_check_prefix)
    cache_ttl: float = attrs.field(default=3600, validator=_check_positive)
    session_ttl: float = attrs.field(default=86400, validator=_check_positive)
    temp_ttl: float = attrs.field(default=300, validator=_check_positive)
    long_ttl: float = attrs.field(default=604800, validator=_check_positive)
    session_max_age: float | None = attrs.field(default=None, validator=_check_positive)
    max_connections: int = attrs.field(default=20, validator=_check_int(1))
    socket_timeout: float = attrs.field(default=5.0, validator=_check_positive)
    connect_timeout: float = attrs.field(default=5.0, validator=_check_positive)
    retries: int = attrs.field(default=3, validator=_check_int(0))
    cache_fail_open: bool = attrs.field(default=False, validator=_check_bool)
    metrics: bool = attrs.field(default=True, validator=_check_bool)
    near_cache: int = attrs.field(default=0, validator=_check_int(0))

    def __attrs_post_init__(self) -> None:
        missing = _missing_role_urls(self.url, self.cache_url, self.session_url, self.queue_url)
        if missing:
            raise ConfigError(
                _missing_message(
                    [f"Settings.{name}" for name in missing],
                    [f"Settings.{name}" for name in _ROLE_FIELDS if name not in missing],
                    "Settings.url",
                )
                + " (Client/AsyncClient: pass url=, or every role's URL)"
            )

    def role_url(self, role: str) -> str:
        """Return the URL that ``role`` ("cache", "sessions" or "queues") uses."""
        own = {"cache": self.cache_url, "sessions": self.session_url, "queues": self.queue_url}[
            role
        ]
        if own is not None:
            return own
        # Only reachable with no URL at all (the constructor rejects a partial setup).
        return self.url if self.url is not None else DEFAULT_URL

    @classmethod
    def from_env(
        cls,
        prefix: str = "KVKIT_",
        environ: Mapping[str, str] | None = None,
        *,
        source: str = "environment variable",
    ) -> Settings:
        """Build settings from environment variables.

        Reads ``{prefix}URL``, ``{prefix}CACHE_URL``, ``{prefix}SESSION_URL``,
        ``{prefix}QUEUE_URL``, ``{prefix}PREFIX``, ``{prefix}CACHE_TTL``,
        ``{prefix}SESSION_TTL``, ``{prefix}TEMP_CACHE_TTL``, ``{prefix}LONG_CACHE_TTL``,
        ``{prefix}SESSION_MAX_AGE``, ``{prefix}MAX_CONNECTIONS``, ``{prefix}SOCKET_TIMEOUT``,
        ``{prefix}CONNECT_TIMEOUT``, ``{prefix}RETRIES``, ``{prefix}CACHE_FAIL_OPEN``,
        ``{prefix}METRICS`` and ``{prefix}NEAR_CACHE``.
        Unset or empty variables keep the defaults. With ``prefix="REDIS_"`` this reads the
        original ``RedisService`` variables. ``memory://`` is used only when none of the
        four URL variables is set; a role URL set without the others and without
        ``{prefix}URL`` is an error, never a silent in-process store.

        Args:
            prefix: Prefix of the variable names.
            environ: Mapping to read instead of ``os.environ``.
            source: What the mapping is, for error messages (e.g. ``"Flask config key"``).

        Returns:
            The settings.

        Raises:
            ConfigError: a variable is malformed, or a role's URL variable is missing while
                another role's is set and ``{prefix}URL`` is not; the message names the
                variable(s) and never echoes a URL's secrets.
        """
        env = os.environ if environ is None else environ
        fields = attrs.fields_dict(cls)
        kwargs: dict[str, Any] = {}
        for suffix, name, convert in _ENV_FIELDS:
            var = prefix + suffix
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            shown = redact_url(raw) if name.endswith("url") else raw
            try:
                value = convert(raw.strip())
                # Run the field's own validator here so the error can name the variable.
                validator = fields[name].validator
                if validator is not None:
                    validator(None, fields[name], value)
            except (ValueError, ConfigError) as exc:
                raise ConfigError(f"{source} {var}={shown!r} is invalid: {_reason(exc)}") from None
            kwargs[name] = value
        urls = [kwargs.get(name) for name in ("url", *_ROLE_FIELDS)]
        missing = _missing_role_urls(*urls)
        if missing:
            names = {name: prefix + suffix for suffix, name, _ in _ENV_FIELDS}
            given = [names[name] for name in _ROLE_FIELDS if name not in missing]
            raise ConfigError(
                _missing_message([names[n] for n in missing], given, names["url"], source=source)
            )
        return cls(**kwargs)


DEFAULT_URL = "memory://"
"""What every role uses when no URL at all is configured."""

_ROLE_FIELDS = ("cache_url", "session_url", "queue_url")


def _missing_role_urls(
    url: str | None, cache_url: str | None, session_url: str | None, queue_url: str | None
) -> list[str]:
    """The role URL fields that would silently fall back to memory://, in field order.

    memory:// is the default only when nothing is configured. A role without a
    URL uses ``url``; with neither, and another role configured, it is missing.
    """
    roles = {"cache_url": cache_url, "session_url": session_url, "queue_url": queue_url}
    if url is not None or all(value is None for value in roles.values()):
        return []
    return [name for name, value in roles.items() if value is None]


def _missing_message(missing: list[str], given: list[str], main: str, source: str = "") -> str:
    """Say which URL settings are missing, which are set, and the two ways to fix it."""
    plural = len(missing) > 1
    what = f"{source}{'s' if plural and source else ''} " if source else ""
    return (
        f"{what}{', '.join(missing)} {'are' if plural else 'is'} not set while "
        f"{', '.join(given)} {'are' if len(given) > 1 else 'is'}, and {main} is not set "
        f"either: set {' and '.join(missing)}, or {main} for every role without its own "
        "URL. kvkit does not fall back to memory:// silently (memory:// is the default "
        "only when no URL is configured at all)"
    )


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "could not convert" in text or "invalid literal" in text:
        return "not a number"
    return text


def _env_bool(raw: str) -> bool:
    value = parse_bool(raw)
    if value is None:
        raise ValueError("expected true/false")
    return value


def _env_number(raw: str) -> float:
    value = float(raw)
    return int(value) if value.is_integer() and "." not in raw and "e" not in raw.lower() else value


_ENV_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("URL", "url", str),
    ("CACHE_URL", "cache_url", str),
    ("SESSION_URL", "session_url", str),
    ("QUEUE_URL", "queue_url", str),
    ("PREFIX", "prefix", str),
    ("CACHE_TTL", "cache_ttl", _env_number),
    ("SESSION_TTL", "session_ttl", _env_number),
    ("TEMP_CACHE_TTL", "temp_ttl", _env_number),
    ("LONG_CACHE_TTL", "long_ttl", _env_number),
    ("SESSION_MAX_AGE", "session_max_age", _env_number),
    ("MAX_CONNECTIONS", "max_connections", int),
    ("SOCKET_TIMEOUT", "socket_timeout", float),
    ("CONNECT_TIMEOUT", "connect_timeout", float),
    ("RETRIES", "retries", int),
    ("CACHE_FAIL_OPEN", "cache_fail_open", _env_bool),
    ("METRICS", "metrics", _env_bool),
    ("NEAR_CACHE", "near_cache", int),
)
