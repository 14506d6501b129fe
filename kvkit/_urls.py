"""Backend URLs: the scheme registry, parsing, option validation and redaction (SPEC §2).

Parsing does no I/O, so a bad URL fails in the client's constructor. Secrets (user name
and password) are kept out of every ``repr``/``str`` and error message: only
:attr:`ParsedURL.redacted` is ever shown.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from ._errors import ConfigError

__all__ = ["ParsedURL", "SchemeSpec", "parse_url", "redact_url", "register_scheme", "schemes"]

DEFAULT_PORT = 6379
SENTINEL_PORT = 26379


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"option {name!r} must be a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"option {name!r} must be positive and finite, got {raw!r}")
    return value


def _non_negative_float(name: str, raw: str) -> float:
    if raw in ("0", "0.0"):
        return 0.0
    return _positive_float(name, raw)


def _int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"option {name!r} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"option {name!r} must be >= {minimum}, got {raw!r}")
    return value


_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


def parse_bool(raw: str) -> bool | None:
    """Read a true/false word (``1/true/yes/on``, ``0/false/no/off``); ``None`` otherwise.

    One definition for URL options, environment variables and framework config.
    """
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _bool(name: str, raw: str) -> bool:
    value = parse_bool(raw)
    if value is None:
        raise ConfigError(f"option {name!r} must be true or false, got {raw!r}")
    return value


def _choice(*choices: str) -> Callable[[str, str], str]:
    def convert(name: str, raw: str) -> str:
        if raw.lower() not in choices:
            raise ConfigError(f"option {name!r} must be one of {', '.join(choices)}; got {raw!r}")
        return raw.lower()

    return convert


def _text(name: str, raw: str) -> str:
    if not raw:
        raise ConfigError(f"option {name!r} must not be empty")
    return raw


# Option name → converter. Aliases map to one canonical name so the backends see one key.
_REDIS_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "socket_timeout": _positive_float,
    "connect_timeout": _positive_float,
    "max_connections": lambda n, r: _int(n, r, 1),
    "retries": lambda n, r: _int(n, r, 0),
    "health_check_interval": _non_negative_float,
    "client_name": _text,
}
_TLS_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "ssl_cert_reqs": _choice("none", "optional", "required"),
    "ssl_ca_certs": _text,
    "ssl_certfile": _text,
    "ssl_keyfile": _text,
    "ssl_check_hostname": _bool,
}
_ALIASES = {"socket_connect_timeout": "connect_timeout"}
_MEMORY_OPTIONS: dict[str, Callable[[str, str], Any]] = {"maxsize": lambda n, r: _int(n, r, 1)}


@attrs.frozen
class SchemeSpec:
    """One entry of the scheme registry.

    Attributes:
        scheme: The URL scheme, e.g. ``"redis"``.
        family: How the URL is parsed: ``"redis"``, ``"unix"``, ``"cluster"``,
            ``"sentinel"``, ``"memory"``, ``"fakeredis"`` or ``"custom"``.
        options: Allowed query options and their converters.
        sync_factory: ``"module:attr"`` of the sync backend class (imported lazily).
        async_factory: ``"module:attr"`` of the async backend class (imported lazily).
        tls: Whether the scheme speaks TLS.
        description: One line for error messages and docs.
    """

    scheme: str
    family: str
    options: dict[str, Callable[[str, str], Any]]
    sync_factory: str
    async_factory: str
    tls: bool = False
    description: str = ""

    def load(self, is_async: bool) -> Any:
        """Import and return the backend factory for the sync or async API."""
        target = self.async_factory if is_async else self.sync_factory
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, SchemeSpec] = {}
_entry_points_loaded = False


def register_scheme(spec: SchemeSpec) -> None:
    """Add (or replace) a scheme in the registry."""
    _REGISTRY[spec.scheme] = spec


def _builtin(scheme: str, family: str, description: str, tls: bool = False) -> None:
    if family in ("memory",):
        options = dict(_MEMORY_OPTIONS)
        impl = "memory:{}MemoryBackend"
    elif family == "fakeredis":
        options = {}
        impl = "redis:{}FakeRedisBackend"
    else:
        options = dict(_REDIS_OPTIONS)
        if tls:
            options.update(_TLS_OPTIONS)
        if family == "unix":
            options["db"] = lambda n, r: _int(n, r, 0)
        if family == "sentinel":
            # Also send the URL's user/password to the Sentinels (when they require auth).
            options["sentinel_auth"] = _bool
        impl = {
            "cluster": "cluster:{}ClusterBackend",
            "sentinel": "sentinel:{}SentinelBackend",
        }.get(family, "redis:{}RedisBackend")
    module, _, cls = impl.partition(":")
    register_scheme(
        SchemeSpec(
            scheme=scheme,
            family=family,
            options=options,
            sync_factory=f"kvkit._sync.backends.{module}:{cls.format('')}",
            async_factory=f"kvkit._async.backends.{module}:{cls.format('Async')}",
            tls=tls,
            description=description,
        )
    )


_builtin("memory", "memory", "memory://[NAME][?maxsize=N] — in-process store")
_builtin("fakeredis", "fakeredis", "fakeredis://[NAME] — the Redis driver over fakeredis")
_builtin("redis", "redis", "redis://[[user]:pass@]host[:port][/db] — Redis over TCP")
_builtin("rediss", "redis", "rediss://… — Redis over TLS (verified)", tls=True)
_builtin("unix", "unix", "unix:///path/redis.sock[?db=N] — Redis over a unix socket")
_builtin(
    "redis+cluster",
    "cluster",
    "redis+cluster://[[user]:pass@]host:port[,host:port…] — Redis Cluster (db 0 only)",
)
_builtin("rediss+cluster", "cluster", "rediss+cluster://… — Redis Cluster over TLS", tls=True)
_builtin(
    "redis+sentinel",
    "sentinel",
    "redis+sentinel://[[user]:pass@]host:port[,host:port…]/SERVICE[/db] — master via Sentinel",
)


def _load_entry_points() -> None:
    """Register third-party schemes from the ``kvkit.backends`` entry-point group.

    Each entry point's name is the scheme and its object is a :class:`SchemeSpec`.
    Loaded once, lazily, only when an unknown scheme is met, so ``import kvkit`` stays cheap.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="kvkit.backends"):
        if ep.name in _REGISTRY:
            continue
        spec = ep.load()
        if not isinstance(spec, SchemeSpec):
            raise ConfigError(
                f"entry point {ep.name!r} in group 'kvkit.backends' must be a kvkit SchemeSpec"
            )
        register_scheme(spec)


def schemes() -> list[str]:
    """Return the registered scheme names, sorted."""
    return sorted(_REGISTRY)


@attrs.frozen(repr=False)
class ParsedURL:
    """A validated backend URL.

    Attributes:
        spec: The registry entry of the scheme.
        hosts: ``(host, port)`` pairs (several for cluster and sentinel).
        username: User name, if any (never shown).
        password: Password, if any (never shown).
        db: Database number.
        path: Unix socket path (``unix://``).
        name: Store name (``memory://NAME``, ``fakeredis://NAME``) or Sentinel service.
        options: Validated query options.
        redacted: The URL with its secrets replaced by ``***``: the only form ever shown.
    """

    spec: SchemeSpec
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    db: int
    path: str | None
    name: str | None
    options: dict[str, Any]
    redacted: str

    @property
    def scheme(self) -> str:
        """The URL scheme."""
        return self.spec.scheme

    @property
    def host(self) -> str:
        """The first host."""
        return self.hosts[0][0] if self.hosts else ""

    @property
    def port(self) -> int:
        """The first port."""
        return self.hosts[0][1] if self.hosts else 0

    @property
    def pool_key(self) -> tuple[Any, ...]:
        """Identity of the server+db+credentials: roles with equal keys share one pool."""
        return (
            self.spec.scheme,
            self.hosts,
            self.username,
            self.password,
            self.db,
            self.path,
            self.name,
            tuple(sorted(self.options.items())),
        )

    def __repr__(self) -> str:
        return f"ParsedURL({self.redacted!r})"

    __str__ = __repr__


def _split_userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, sep, hostpart = netloc.rpartition("@")
    if not sep:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None), hostpart


def _parse_hostport(item: str, redacted: str, default: int = DEFAULT_PORT) -> tuple[str, int]:
    if item.startswith("["):  # IPv6 literal
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ConfigError(f"missing host in {redacted}")
    if not port_text:
        return host, default
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"invalid port {port_text!r} in {redacted}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} out of range in {redacted}")
    return host, port


def redact_url(url: str) -> str:
    """Return ``url`` with any user name and password replaced by ``***``.

    Works on malformed URLs too (best effort), because it is used in error messages about
    them.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        # No scheme separator: still hide anything that looks like credentials.
        return "***" if "@" in url else url
    netloc_end = len(rest)
    for ch in "/?#":
        idx = rest.find(ch)
        if idx != -1:
            netloc_end = min(netloc_end, idx)
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    userinfo, at, hostpart = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = ("***" if user else "") + (":***" if colon else "")
    return f"{scheme}://{shown}@{hostpart}{tail}"


def _supported() -> str:
    return ", ".join(f"{s}://" for s in schemes())


def parse_url(url: Any) -> ParsedURL:
    """Parse and validate a backend URL. Does no I/O.

    Args:
        url: The URL.

    Returns:
        The parsed URL.

    Raises:
        ConfigError: the scheme is unknown, the URL is malformed or an option is unknown
            or invalid. The message never contains a secret.
    """
    if not isinstance(url, str) or not url:
        raise ConfigError(f"a backend URL must be a non-empty str, not {type(url).__name__!r}")
    redacted = redact_url(url)
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigError(
            f"malformed URL {redacted!r}: expected scheme://…; supported: {_supported()}"
        )
    scheme = scheme.lower()
    spec = _REGISTRY.get(scheme)
    if spec is None:
        _load_entry_points()
        spec = _REGISTRY.get(scheme)
    if spec is None:
        raise ConfigError(
            f"unknown URL scheme {scheme!r} in {redacted!r}; supported: {_supported()}"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"malformed URL {redacted!r}") from exc.__cause__
    if parts.fragment:
        raise ConfigError(f"unexpected #fragment in {redacted!r}")

    options: dict[str, Any] = {}
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"malformed query string in {redacted!r}") from None
    for raw_name, raw_value in query:
        option = _ALIASES.get(raw_name, raw_name)
        convert = spec.options.get(option)
        if convert is None:
            allowed = ", ".join(sorted(spec.options)) or "none"
            raise ConfigError(
                f"unknown option {raw_name!r} for {scheme}:// in {redacted!r}; "
                f"supported options: {allowed}"
            )
        if option in options:
            raise ConfigError(f"option {raw_name!r} given twice in {redacted!r}")
        options[option] = convert(raw_name, raw_value)

    username, password, hostpart = _split_userinfo(parts.netloc)
    family = spec.family
    hosts: tuple[tuple[str, int], ...] = ()
    db = 0
    path: str | None = None
    name: str | None = None
    url_path = unquote(parts.path)

    if family in ("memory", "fakeredis"):
        if username or password:
            raise ConfigError(f"{scheme}:// takes no credentials: {redacted!r}")
        name = unquote(hostpart) or None
        if url_path not in ("", "/"):
            raise ConfigError(f"unexpected path in {redacted!r}; use {scheme}://NAME")
    elif family == "unix":
        if hostpart:
            raise ConfigError(
                f"unix:// URLs have no host, use unix:///path/redis.sock: {redacted!r}"
            )
        if not url_path.startswith("/"):
            raise ConfigError(f"unix:// needs an absolute socket path: {redacted!r}")
        path = url_path
        db = options.pop("db", 0)
    elif family == "custom":
        hosts = tuple(_parse_hostport(h, redacted) for h in hostpart.split(",") if h)
        path = url_path or None
    else:
        items = [h for h in hostpart.split(",")]
        if family in ("redis",) and len(items) > 1:
            raise ConfigError(
                f"{scheme}:// takes one host; use redis+cluster:// for several: {redacted!r}"
            )
        if items == [""]:
            items = ["localhost"] if family == "redis" else []
        if not items or any(not h for h in items):
            raise ConfigError(f"missing host in {redacted!r}")
        default_port = SENTINEL_PORT if family == "sentinel" else DEFAULT_PORT
        hosts = tuple(_parse_hostport(h, redacted, default_port) for h in items)
        segments = [s for s in url_path.split("/") if s]
        if family == "sentinel":
            if not segments:
                raise ConfigError(
                    f"missing SERVICE name: {scheme}://host:port/SERVICE[/db] in {redacted!r}"
                )
            name = segments.pop(0)
        if len(segments) > 1:
            raise ConfigError(f"unexpected path in {redacted!r}")
        if segments:
            try:
                db = int(segments[0])
            except ValueError:
                raise ConfigError(
                    f"database must be a number, got {segments[0]!r} in {redacted!r}"
                ) from None
            if db < 0:
                raise ConfigError(f"database must be >= 0 in {redacted!r}")
        if family == "cluster" and db != 0:
            raise ConfigError(f"Redis Cluster only has database 0: {redacted!r}")
    return ParsedURL(
        spec=spec,
        hosts=hosts,
        username=username,
        password=password,
        db=db,
        path=path,
        name=name,
        options=options,
        redacted=redacted,
    )
