"""Backend URLs: the scheme registry, parsing, option validation and redaction.

Parsing does no I/O, so a bad URL fails in the client's constructor. Secrets (user name
and password) are kept out of every ``repr``/``str`` and error message: only
:attr:`ParsedURL.redacted` is ever shown.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import attrs

from ._errors import ConfigError
from ._ttl import check_seconds

__all__ = ["ParsedURL", "SchemeSpec", "parse_url", "redact_url", "register_scheme", "schemes"]

DEFAULT_PORT = 6379
SENTINEL_PORT = 26379


_INT_MAX = 2**31 - 1
"""Upper bound of integer options and of the database number: Redis reads both as a C int
(``SELECT`` and the ``databases`` setting stop at 2**31-1), and nothing larger is sane."""

_DIGITS = re.compile(r"[0-9]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"option {name!r} must be a number of seconds, got {raw!r}") from None
    return check_seconds(value, f"option {name!r}", error=ConfigError)


def _non_negative_float(name: str, raw: str) -> float:
    if raw in ("0", "0.0"):
        return 0.0
    return _positive_float(name, raw)


def _int(name: str, raw: str, minimum: int) -> int:
    # Plain ASCII digits only: int() would also take "1_0", " 7 " and other scripts' digits.
    if not _DIGITS.fullmatch(raw.lstrip("-")):
        raise ConfigError(f"option {name!r} must be an integer, got {raw!r}")
    value = int(raw)
    if not minimum <= value <= _INT_MAX:
        raise ConfigError(f"option {name!r} must be in {minimum}..{_INT_MAX}, got {raw!r}")
    return value


def _db(name: str, raw: str) -> int:
    return _int(name, raw, 0)


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(name: str, raw: str) -> str:
    if not raw:
        raise ConfigError(f"option {name!r} must not be empty")
    if _CONTROL.search(raw):  # e.g. %00 or %0A decoded from the query
        raise ConfigError(f"option {name!r} must not contain control characters")
    return raw


def _client_name(name: str, raw: str) -> str:
    # Redis rejects CLIENT SETNAME with spaces, newlines or anything outside '!'..'~': say
    # so now rather than as a BackendError on the first connection.
    if not raw or any(not "!" <= ch <= "~" for ch in raw):
        raise ConfigError(
            f"option {name!r} must be non-empty printable ASCII without spaces "
            f"(Redis CLIENT SETNAME), got {raw!r}"
        )
    return raw


# Option name → converter. Aliases map to one canonical name so the backends see one key.
_REDIS_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "socket_timeout": _positive_float,
    "connect_timeout": _positive_float,
    "max_connections": lambda n, r: _int(n, r, 1),
    "retries": lambda n, r: _int(n, r, 0),
    "health_check_interval": _non_negative_float,
    "client_name": _client_name,
    # Async clients share round trips between concurrent tasks unless this is false.
    "auto_pipeline": _bool,
}
# Entries of the in-process near cache in front of cache reads (0: off). Not on Sentinel:
# a failover moves the master without closing the invalidation connection to the old one.
_NEAR_CACHE_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "near_cache": lambda n, r: _int(n, r, 0),
}
# Credentials given as query options, as redis-py accepts them: they become
# ParsedURL.username/password (never options) and their values are never shown.
_SECRET_OPTIONS = frozenset(("username", "password"))
_TLS_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "ssl_cert_reqs": _choice("none", "optional", "required"),
    "ssl_ca_certs": _text,
    "ssl_certfile": _text,
    "ssl_keyfile": _text,
    "ssl_check_hostname": _bool,
}
_ALIASES = {"socket_connect_timeout": "connect_timeout"}
_MEMORY_OPTIONS: dict[str, Callable[[str, str], Any]] = {"maxsize": lambda n, r: _int(n, r, 1)}
# Options whose values redact_url() shows: kvkit's own, none of them secret. A third-party
# scheme's options are hidden (kvkit cannot know whether they hold a token).
_SHOWN_OPTIONS = frozenset(
    [
        *_REDIS_OPTIONS,
        *_NEAR_CACHE_OPTIONS,
        *_TLS_OPTIONS,
        *_ALIASES,
        *_MEMORY_OPTIONS,
        "db",
        "sentinel_auth",
    ]
)


FAMILIES = frozenset(("redis", "unix", "cluster", "sentinel", "memory", "fakeredis", "custom"))
"""How a URL of each family is parsed (see :attr:`SchemeSpec.family`)."""


@attrs.frozen
class SchemeSpec:
    """One entry of the scheme registry.

    Attributes:
        scheme: The URL scheme, e.g. ``"redis"``: lower case, as URL schemes are compared
            case-insensitively.
        family: How the URL is parsed: ``"redis"``, ``"unix"``, ``"cluster"``,
            ``"sentinel"``, ``"memory"``, ``"fakeredis"`` or ``"custom"``
            (``scheme://[user:password@]host[:port][,host[:port]…][/path]``: hosts in
            :attr:`ParsedURL.hosts`, the path in :attr:`ParsedURL.path`).
        options: Allowed query options and their converters. A converter is called with
            the option's name and raw text and returns the value, or raises
            :class:`kvkit.ConfigError`.
        sync_factory: The sync backend class, or ``"module:attr"`` naming it (imported
            lazily, on first use of the scheme).
        async_factory: The async backend class, or ``"module:attr"`` naming it.
        tls: Whether the scheme speaks TLS.
        description: One line for error messages and docs.
    """

    scheme: str
    family: str
    options: dict[str, Callable[[str, str], Any]]
    sync_factory: str | Callable[..., Any]
    async_factory: str | Callable[..., Any]
    tls: bool = False
    description: str = ""

    def load(self, is_async: bool) -> Any:
        """Import and return the backend factory for the sync or async API."""
        target = self.async_factory if is_async else self.sync_factory
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, SchemeSpec] = {}
_entry_points_loaded = False


def register_scheme(spec: SchemeSpec) -> None:
    """Add a scheme to the registry, or replace the entry of that scheme.

    Args:
        spec: The registry entry.

    Raises:
        ConfigError: ``spec`` is not a :class:`SchemeSpec`, its scheme is not a lower-case
            URL scheme, its family is unknown or a factory string is not ``"module:attr"``.
    """
    if not isinstance(spec, SchemeSpec):
        raise ConfigError(f"register_scheme() takes a SchemeSpec, not {type(spec).__name__!r}")
    # parse_url() lower-cases the scheme before the lookup: "Acme" could never be found.
    if not _SCHEME.fullmatch(spec.scheme) or spec.scheme != spec.scheme.lower():
        raise ConfigError(
            f"invalid scheme {spec.scheme!r}: a lower-case letter followed by lower-case "
            "letters, digits, '+', '-' or '.'"
        )
    if spec.family not in FAMILIES:
        raise ConfigError(
            f"unknown family {spec.family!r} of scheme {spec.scheme!r}; "
            f"one of {', '.join(sorted(FAMILIES))}"
        )
    for factory in (spec.sync_factory, spec.async_factory):
        if isinstance(factory, str):
            module, colon, attr = factory.partition(":")
            if not (module and colon and attr):
                raise ConfigError(
                    f"backend factory {factory!r} of scheme {spec.scheme!r} must be 'module:attr'"
                )
        elif not callable(factory):
            raise ConfigError(
                f"backend factory of scheme {spec.scheme!r} must be a class or 'module:attr'"
            )
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
        options.update(dict.fromkeys(_SECRET_OPTIONS, _text))
        if tls:
            options.update(_TLS_OPTIONS)
        if family == "unix":
            options["db"] = _db
        if family == "sentinel":
            # Also send the URL's user/password to the Sentinels (when they require auth).
            options["sentinel_auth"] = _bool
        else:
            options.update(_NEAR_CACHE_OPTIONS)
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
# Valkey speaks the Redis protocol and runs kvkit's Lua scripts unchanged: the same driver.
_builtin("valkey", "redis", "valkey://[[user]:pass@]host[:port][/db] — Valkey over TCP")
_builtin("valkeys", "redis", "valkeys://… — Valkey over TLS (verified)", tls=True)
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
        if not isinstance(spec, SchemeSpec) or spec.scheme != ep.name:
            raise ConfigError(
                f"entry point {ep.name!r} in group 'kvkit.backends' must be a kvkit SchemeSpec "
                "of the scheme it is named after"
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


# -- splitting ------------------------------------------------------------------------------
# One splitter serves parse_url() and redact_url(), so what is parsed as the user info is
# exactly what is hidden. It follows RFC 3986 (as redis-py's urlparse does): the authority
# ends at the first "/", "?" or "#", and the user info is everything before the authority's
# LAST "@" (so a raw "@" or ":" in a password is fine). A password with a raw "/", "?" or
# "#" cannot be told apart from a path or query: such URLs are rejected, and shown hidden.

# A host list as it may be shown: names (no reserved characters or spaces) or bracketed IPv6
# literals, each with an optional numeric port.
_HOST_ITEM = re.compile(r"(\[[0-9A-Za-z:.%\-]+\]|[^\s\[\]:/?#@,%]+)(:[0-9]+)?")
# A URL without "://" is shown only when it looks like a plain host[:port][/db].
_BARE = re.compile(r"[A-Za-z0-9.\-_]+(:[0-9]+)?(/[0-9]*)?")
_ENCODE_HINT = (
    "percent-encode '/', '?', '#' and '@' in a user name or password (%2F, %3F, %23, %40), "
    "and '@' in option values"
)


@attrs.frozen(repr=False)  # holds the raw user info: never shown, not even in a debugger
class _Parts:
    """A URL cut into its RFC 3986 components (raw, not yet unquoted)."""

    scheme: str
    userinfo: str | None  # None: no "@" in the authority
    hostpart: str
    path: str
    query: str | None  # None: no "?"
    fragment: str | None  # None: no "#"

    @property
    def misplaced_at(self) -> bool:
        """Whether an "@" follows the authority outside a ``?password=``/``?username=`` value.

        That is what a password with a raw "/", "?" or "#" looks like.
        """
        if "@" in self.path or (self.fragment is not None and "@" in self.fragment):
            return True
        return any(
            "@" in segment and _option_name(segment) not in _SECRET_OPTIONS
            for segment in (self.query or "").split("&")
        )


def _option_name(segment: str) -> str:
    """The option name of one raw ``name=value`` query segment."""
    return unquote(segment.partition("=")[0])


def _split(url: str) -> _Parts | None:
    """Cut ``url`` into components; ``None`` if it has no valid ``scheme://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return None
    end = len(rest)
    for ch in "/?#":
        index = rest.find(ch)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    userinfo: str | None
    userinfo, at, hostpart = authority.rpartition("@")
    if not at:
        userinfo = None
    tail, hash_sign, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    return _Parts(
        scheme=scheme,
        userinfo=userinfo,
        hostpart=hostpart,
        path=path,
        query=query if question else None,
        fragment=fragment if hash_sign else None,
    )


def _secret_in_query(query: str | None) -> bool:
    """Whether the query carries ``password=``/``username=`` (raw '&' may have split it)."""
    return any(_option_name(segment) in _SECRET_OPTIONS for segment in (query or "").split("&"))


def _shown_query(query: str) -> str:
    """The query with every value that may be secret replaced by ``***``."""
    shown = []
    for segment in query.split("&"):
        name, eq = _option_name(segment), "=" in segment
        if eq and name in _SHOWN_OPTIONS:
            shown.append(segment)
        elif eq and name in _SECRET_OPTIONS:
            shown.append(f"{name}=***")
        else:  # an unknown name may be a piece of a password split by a raw '&'
            shown.append("***")
    return "&".join(shown)


def redact_url(url: str) -> str:
    """Return ``url`` with its user name and password replaced by ``***``.

    Works on malformed URLs too, because it is used in error messages about them: what the
    URL grammar cannot place (an ``@`` after the host, an invalid host) is hidden whole
    rather than guessed at. ``?password=``/``?username=`` values are hidden, as are values
    of options kvkit does not know.
    """
    parts = _split(url)
    if parts is None:
        # No scheme separator: show only what is plainly a host[:port][/db].
        return url if _BARE.fullmatch(url) else "***"
    hidden = f"{parts.scheme}://***"
    if parts.misplaced_at:
        return hidden
    if parts.hostpart and not all(_HOST_ITEM.fullmatch(h) for h in parts.hostpart.split(",")):
        # Not a host: perhaps "user:password" with the "@host" forgotten.
        return hidden
    shown = parts.scheme + "://"
    if parts.userinfo is not None:
        user, colon, _ = parts.userinfo.partition(":")
        shown += ("***" if user else "") + (":***" if colon else "") + "@"
    shown += parts.hostpart + parts.path
    if parts.query is not None:
        shown += "?" + _shown_query(parts.query)
    if parts.fragment is not None:
        shown += "#***"
    return shown


# -- hosts ----------------------------------------------------------------------------------


def _check_hostname(host: str, redacted: str) -> None:
    """Reject what no resolver accepts (the socket layer would raise a raw UnicodeError)."""
    if any(ch.isspace() or ch in '%[]\\"<>^`{|}' for ch in host):
        raise ConfigError(f"invalid host name in {redacted!r}: unexpected character")
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""  # an empty or over-long label, or a name IDNA cannot encode
    name = ascii_name[:-1] if ascii_name.endswith(".") else ascii_name  # FQDN "h.example."
    labels = name.split(".")
    if not name or len(name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise ConfigError(
            f"invalid host name in {redacted!r}: each dot-separated label must have 1-63 "
            "characters (after IDNA encoding) and the name at most 253"
        )


def _parse_hostport(item: str, redacted: str, default: int = DEFAULT_PORT) -> tuple[str, int]:
    if item.startswith("["):  # IPv6 literal
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"invalid IPv6 host in {redacted!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"invalid IPv6 address in {redacted!r}") from None
        port_text = rest[1:]
        has_port = bool(rest)
    else:
        host, colon, port_text = item.partition(":")
        has_port = bool(colon)
        if not host:
            raise ConfigError(f"missing host in {redacted!r}")
        _check_hostname(host, redacted)
    if not has_port:
        return host, default
    # The port text is never echoed: with the "@host" forgotten it is the password.
    if not _DIGITS.fullmatch(port_text):
        raise ConfigError(f"invalid port in {redacted!r}: expected a number in 1..65535")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} out of range 1..65535 in {redacted!r}")
    return host, port


def _supported() -> str:
    return ", ".join(f"{s}://" for s in schemes())


# -- parsing --------------------------------------------------------------------------------


def _parse_options(
    spec: SchemeSpec, query: str | None, redacted: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate the query; return ``(options, credentials given as options)``."""
    if not query:
        return {}, {}
    # With a password in the query, a raw '&' in it would turn its pieces into option
    # names or values: then neither is echoed.
    quiet = _secret_in_query(query)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigError(f"malformed query string in {redacted!r}") from None
    options: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        option = _ALIASES.get(raw_name, raw_name)
        convert = spec.options.get(option)
        if convert is None:
            allowed = ", ".join(sorted(spec.options)) or "none"
            named = "" if quiet else f" {raw_name!r}"
            raise ConfigError(
                f"unknown option{named} for {spec.scheme}:// in {redacted!r}; "
                f"supported options: {allowed}"
            )
        if option in options or option in secrets:
            raise ConfigError(f"option {raw_name!r} given twice in {redacted!r}")
        try:
            value = convert(raw_name, raw_value)
        except ConfigError:
            if quiet or option in _SECRET_OPTIONS:
                raise ConfigError(
                    f"invalid value of option {option!r} in {redacted!r} (not shown: the URL "
                    "carries a password; percent-encode '&', '#' and '+' in it)"
                ) from None
            raise
        if option in _SECRET_OPTIONS:
            secrets[option] = value
        else:
            options[option] = value
    return options, secrets


def _credentials(
    userinfo: str | None, secrets: dict[str, str], redacted: str
) -> tuple[str | None, str | None]:
    """The user name and password from the user info and/or ``?username=&password=``."""
    username: str | None = None
    password: str | None = None
    if userinfo is not None:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    for field, value in secrets.items():
        if (username if field == "username" else password) is not None:
            # redis-py lets the user info win silently; two values are a mistake to report.
            raise ConfigError(f"{field} given twice (user info and ?{field}=) in {redacted!r}")
        if field == "username":
            username = value
        else:
            password = value
    return username, password


def _parse_db(text: str, redacted: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ConfigError(f"database must be a number, got {text!r} in {redacted!r}")
    db = int(text)
    if db > _INT_MAX:
        raise ConfigError(f"database must be in 0..{_INT_MAX} in {redacted!r}")
    return db


def parse_url(url: Any) -> ParsedURL:
    """Parse and validate a backend URL. Does no I/O.

    Host names (IDNA, label and name lengths), ports (1..65535), the database number
    (0..2**31-1; whether the server has that many databases is known only to the server)
    and every option are checked here, so a bad URL fails in the client's constructor.

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
    if _CONTROL.search(url):
        raise ConfigError(f"URL {redacted!r} contains a control character (newline, tab, …)")
    parts = _split(url)
    if parts is None:
        raise ConfigError(
            f"malformed URL {redacted!r}: expected scheme://…; supported: {_supported()}"
        )
    scheme = parts.scheme.lower()
    spec = _REGISTRY.get(scheme)
    if spec is None:
        _load_entry_points()
        spec = _REGISTRY.get(scheme)
    if spec is None:
        raise ConfigError(
            f"unknown URL scheme {scheme!r} in {redacted!r}; supported: {_supported()}"
        )
    if parts.misplaced_at:
        raise ConfigError(f"unexpected '@' after the host in {redacted!r}; {_ENCODE_HINT}")
    if parts.fragment is not None:
        raise ConfigError(f"unexpected #fragment in {redacted!r}; percent-encode '#' as %23")
    options, secrets = _parse_options(spec, parts.query, redacted)
    username, password = _credentials(parts.userinfo, secrets, redacted)

    hostpart = parts.hostpart
    family = spec.family
    hosts: tuple[tuple[str, int], ...] = ()
    db = 0
    path: str | None = None
    name: str | None = None
    url_path = unquote(parts.path)

    if family in ("memory", "fakeredis"):
        if parts.userinfo is not None:
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
        if _CONTROL.search(url_path):  # %00 would reach connect() as a raw ValueError
            raise ConfigError(f"control character in the socket path of {redacted!r}")
        path = url_path
        db = options.pop("db", 0)
    elif family == "custom":
        hosts = tuple(_parse_hostport(h, redacted) for h in hostpart.split(",") if h)
        path = url_path or None
    else:
        items = hostpart.split(",")
        if family == "redis" and len(items) > 1:
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
            if any(ch.isspace() for ch in name) or _CONTROL.search(name):
                raise ConfigError(f"invalid Sentinel service name in {redacted!r}")
        if len(segments) > 1:
            raise ConfigError(f"unexpected path in {redacted!r}")
        if segments:
            db = _parse_db(segments[0], redacted)
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
