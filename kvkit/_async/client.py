"""``kvkit.AsyncClient``: roles, backends and services behind one object."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import ConfigError, InvalidArgument, KVKitError
from .._lock_base import LockInfo, lock_prefix
from .._metrics import Recorder
from .._queue_base import queue_options
from .._ratelimit_base import limiter_parts
from .._serde import Codec, Serializer
from .._settings import ROLES, Settings
from .._ttl import TTLResolver
from .._types import Check, Health
from .._urls import ParsedURL, parse_url
from .backends.base import AsyncBackend
from .cache import AsyncCacheService
from .locks import AsyncLockService, held_locks
from .probe import ping_check
from .queue import AsyncQueueService
from .ratelimit import AsyncRateLimiterService
from .service import AsyncRedisServiceMixin

if TYPE_CHECKING:
    from .sessions import AsyncSessionService

__all__ = ["AsyncClient"]


# SYNC-TEXT: "and used from several event loops in turn (loop-bound connections are
#   re-created when the running loop changes)." -> "and shared by threads."
# SYNC-TEXT: ">>> await client" -> ">>> client"
class AsyncClient(AsyncRedisServiceMixin):
    """Cache, sessions and queues over the backends chosen by URL.

    Constructing a client does no I/O: connections open on first use, so a client can be
    created at import time, before ``fork``, and used from several event loops in turn
    (loop-bound connections are re-created when the running loop changes).

    Args:
        url: Backend URL for every role (overrides ``settings.url``). ``None`` with no other
            argument reads :meth:`Settings.from_env`.
        cache: URL of the cache role.
        sessions: URL of the sessions role.
        queues: URL of the queues role.
        settings: Full settings; URL arguments override its URL fields.
        serializer: Custom value serializer (``dumps``/``loads``); default JSON.

    Raises:
        ConfigError: a URL, option or setting is invalid.

    Example:
        >>> client = kvkit.AsyncClient("memory://")
        >>> await client.cache.set("k", {"v": 1})
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        cache: str | None = None,
        sessions: str | None = None,
        queues: str | None = None,
        settings: Settings | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        if settings is None:
            settings = (
                Settings.from_env()
                if url is None and not (cache or sessions or queues)
                else Settings()
            )
        elif not isinstance(settings, Settings):
            raise ConfigError(f"settings must be a kvkit.Settings, not {type(settings).__name__!r}")
        overrides: dict[str, Any] = {}
        for field, value in (
            ("url", url),
            ("cache_url", cache),
            ("session_url", sessions),
            ("queue_url", queues),
        ):
            if value is not None:
                overrides[field] = value
        if overrides:
            settings = attrs.evolve(settings, **overrides)
        self.settings = settings
        self._codec = Codec(serializer)
        # One backend per distinct server+db+credentials: roles that share it share a pool.
        self._backends: dict[tuple[Any, ...], AsyncBackend] = {}
        self._role_backend: dict[str, AsyncBackend] = {}
        for role in ROLES:
            parsed = parse_url(settings.role_url(role))
            backend = self._backends.get(parsed.pool_key)
            if backend is None:
                backend = self._backends[parsed.pool_key] = _make_backend(parsed, settings)
            self._role_backend[role] = backend
        # Settings bounds the presets (ConfigError), so resolving them here cannot fail.
        self._cache_ttl = TTLResolver(settings.cache_ttl, settings.temp_ttl, settings.long_ttl)
        self._cache: AsyncCacheService | None = None
        self._sessions: AsyncSessionService | None = None
        self._metrics = Recorder(settings.metrics)
        # Names given to queue(), newest last, bounded: the queues this client knows.
        self._queue_names: dict[str, None] = {}

    @classmethod
    def from_env(cls, prefix: str = "KVKIT_", environ: Any = None) -> AsyncClient:
        """Create a client from environment variables (see :meth:`Settings.from_env`)."""
        return cls(settings=Settings.from_env(prefix, environ))

    def __repr__(self) -> str:
        roles = ", ".join(f"{r}={self._role_backend[r].url.redacted!r}" for r in ROLES)
        return f"<kvkit.{type(self).__name__} {roles}>"

    # -- services ------------------------------------------------------------------------------
    @property
    def cache(self) -> AsyncCacheService:
        """The cache (keys under ``{prefix}:cache:``)."""
        if self._cache is None:
            settings = self.settings
            backend = self._role_backend["cache"]
            self._cache = self._metrics.build(
                AsyncCacheService,
                "cache",
                backend.url,
                backend.cache_driver(),
                prefix=f"{settings.prefix}:cache:",
                lock_prefix=f"{settings.prefix}:lock:",
                ttl=self._cache_ttl,
                codec=self._codec,
                fail_open=settings.cache_fail_open,
                where=backend.url.redacted,
                totals=self._metrics.cache_totals,
            )
        return self._cache

    @property
    def sessions(self) -> AsyncSessionService:
        """The server-side session store (keys under ``{prefix}:session:``)."""
        if self._sessions is None:
            from .sessions import AsyncSessionService

            settings = self.settings
            backend = self._role_backend["sessions"]
            self._sessions = self._metrics.build(
                AsyncSessionService,
                "sessions",
                backend.url,
                backend.session_driver(),
                prefix=f"{settings.prefix}:session:",
                ttl=settings.session_ttl,
                max_age=settings.session_max_age,
                temp_ttl=settings.temp_ttl,
                long_ttl=settings.long_ttl,
                codec=self._codec,
                where=backend.url.redacted,
            )
        return self._sessions

    def queue(self, name: str, **options: Any) -> AsyncQueueService:
        """Return the queue ``name`` (keys under ``{prefix}:queue:{name}``).

        Args:
            name: Queue name.
            **options: ``visibility_timeout``, ``max_deliveries``, ``group``, ``consumer``,
                ``maxlen``, ``dedupe_window`` (see :class:`kvkit.AsyncQueue`).

        Raises:
            InvalidArgument: the name or an option is invalid, or an option is unknown.
        """
        backend = self._role_backend["queues"]
        queue = self._metrics.build(
            AsyncQueueService,
            "queue",
            backend.url,
            backend.queue_driver(),
            name=name,
            prefix=f"{self.settings.prefix}:queue:",
            codec=self._codec,
            where=backend.url.redacted,
            **queue_options(options),
        )
        known = self._queue_names
        if name not in known:
            known[name] = None
            if len(known) > _KNOWN_QUEUES:
                del known[next(iter(known))]
        return queue

    async def queue_names(self, *, limit: int = 1000, discover: bool = True) -> list[str]:
        """Return the names of the queues under this client's prefix, sorted.

        The queues this client opened with :meth:`queue` (the last 1000), plus, with
        ``discover``, the queues found on the queues role's backend: any that holds
        messages, delayed messages or dead letters, whoever created it. On Redis that
        SCANs the keyspace (every primary on Cluster), never ``KEYS``: it walks every key
        of the database, so call it now and then, not per request.

        Args:
            limit: Return at most this many names.
            discover: Look for queues on the backend (``False``: no I/O).

        Raises:
            InvalidArgument: ``limit`` is not a positive int.
            BackendError: the backend failed.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"limit must be a positive int, got {limit!r}")
        found = set(list(self._queue_names)[-limit:])
        if discover:
            driver = self._role_backend["queues"].queue_driver()
            found.update(await driver.names(f"{self.settings.prefix}:queue:", limit))
        return sorted(found)[:limit]

    # -- metrics ----------------------------------------------------------------------------------
    @property
    def metrics(self) -> Recorder:
        """The recorder of this client's operation metrics (for exporters; see ``kvkit.ext``)."""
        return self._metrics

    def metrics_snapshot(self) -> dict[str, Any]:
        """Return this client's operation metrics as a plain dict (no I/O).

        ``{"enabled", "bounds", "operations", "cache"}``: ``operations`` holds one dict per
        ``(service, op, backend)`` seen so far, with ``count``, ``ok``, ``error``, ``sum``
        (seconds), ``buckets`` (counts per latency bucket: ``bounds`` are their upper
        bounds in seconds, the last bucket is unbounded) and ``p50``/``p99`` estimated
        from them; ``cache`` holds ``hits``, ``misses`` and ``hit_ratio`` of every cache
        view of the client. Empty (``enabled`` false) with ``Settings.metrics=False``.
        """
        return self._metrics.snapshot()

    def rate_limiter(
        self,
        name: str,
        rate: Any,
        *,
        algorithm: str = "sliding_window",
        burst: int | None = None,
        fail_open: bool = False,
    ) -> AsyncRateLimiterService:
        """Return the rate limit ``name`` (state under ``{prefix}:limit:{name}:{key}``).

        Limiters live on the cache role's backend. No I/O: create them once (at import
        time, per route) and share them. Limiters of the same name share their state, so
        give each limit its own name.

        Args:
            name: The limit's name (no ``:``, ``{`` or ``}``).
            rate: ``"N/second"``, ``"N/minute"``, ``"N/hour"``, ``"N/day"``, ``"N/Ks"``
                (N per K seconds) or a :class:`kvkit.Rate`.
            algorithm: ``"sliding_window"`` (exact), ``"fixed_window"`` or
                ``"token_bucket"`` (GCRA).
            burst: Extra units the token bucket admits at once (default 0).
            fail_open: Allow hits (and log a warning) when the backend fails, instead of
                raising :class:`kvkit.BackendError`.

        Raises:
            InvalidArgument: the name, rate, algorithm or burst is invalid.
        """
        checked, parsed, spec = limiter_parts(name, rate, algorithm, burst)
        backend = self._role_backend["cache"]
        return self._metrics.build(
            AsyncRateLimiterService,
            "limiter",
            backend.url,
            backend.limiter_driver(),
            name=checked,
            rate=parsed,
            spec=spec,
            prefix=self.settings.prefix,
            fail_open=fail_open,
            where=backend.url.redacted,
        )

    def lock(
        self, name: str, *, ttl: Any = 30, timeout: Any = 10, auto_renew: bool = True
    ) -> AsyncLockService:
        """Return the distributed lock ``name`` (on the cache role's backend). No I/O.

        Args:
            name: The lock's name (no ``{``/``}``; keys ``{prefix}:lock:{name}``).
            ttl: Seconds the lock lives without renewal (a dead holder blocks others at
                most this long).
            timeout: Seconds ``acquire()`` and ``with`` wait; ``0`` tries once, ``None``
                waits forever.
            auto_renew: Renew every ``ttl / 3`` while held.

        Raises:
            InvalidArgument: a bad name, ``ttl``, ``timeout`` or ``auto_renew``.
        """
        backend = self._role_backend["cache"]
        return self._metrics.build(
            AsyncLockService,
            "lock",
            backend.url,
            backend.lock_driver(),
            name=name,
            prefix=lock_prefix(self.settings.prefix),
            ttl=ttl,
            timeout=timeout,
            auto_renew=auto_renew,
            where=backend.url.redacted,
        )

    async def locks(self) -> list[LockInfo]:
        """Return the locks held now under this client's prefix, sorted by name.

        Meant for tools (``kvkit locks list``): on Redis it scans the keyspace.

        Raises:
            BackendError: the backend failed.
        """
        driver = self._role_backend["cache"].lock_driver()
        return await held_locks(driver, lock_prefix(self.settings.prefix))

    def backend(self, role: str = "cache") -> AsyncBackend:
        """Return the backend object serving ``role`` (for integrations and tests)."""
        try:
            return self._role_backend[role]
        except KeyError:
            raise ConfigError(f"unknown role {role!r}; roles are {', '.join(ROLES)}") from None

    def redis(self, role: str = "cache") -> Any:
        """Return the underlying redis-py client of ``role``, for power users. No I/O.

        Raises:
            ConfigError: the role is not on a Redis backend, or the role is unknown.
        """
        return self.backend(role).redis()

    # -- health -----------------------------------------------------------------------------------
    async def ping(self) -> dict[str, float]:
        """Round-trip each role's backend; return the latency in seconds per role.

        Raises:
            BackendError: a backend is unreachable.
        """
        out: dict[str, float] = {}
        for role in ROLES:
            start = time.perf_counter()
            await self._role_backend[role].ping()
            out[role] = time.perf_counter() - start
        return out

    async def health(self) -> Health:
        """Check every role; never raises for backend failures (they become failed checks)."""
        checks: list[Check] = []
        for role in ROLES:
            backend = self._role_backend[role]
            try:
                result = await ping_check(backend)
            except KVKitError as exc:
                checks.append(
                    Check(
                        role=role,
                        backend=backend.kind,
                        url=backend.url.redacted,
                        ok=False,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
                continue
            checks.append(
                Check(
                    role=role,
                    backend=backend.kind,
                    url=backend.url.redacted,
                    ok=True,
                    latency_ms=result["latency_ms"],
                    server_version=result["server_version"],
                )
            )
        status = "pass" if all(c.ok for c in checks) else "fail"
        return Health(status=status, checks=checks)

    # -- lifecycle --------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close every connection pool. The client reconnects if used again."""
        for backend in self._backends.values():
            await backend.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# How many queue names a client remembers from queue() (the oldest are forgotten).
_KNOWN_QUEUES = 1000


def _make_backend(url: ParsedURL, settings: Settings) -> AsyncBackend:
    factory = url.spec.load(is_async=True)
    backend = factory(url, settings)
    # A registered scheme may name any class: a backend of the other flavour (or none)
    # would fail later, far from its cause, with an AttributeError or an unawaited call.
    if not isinstance(backend, AsyncBackend):
        raise ConfigError(
            f"the backend factory of {url.scheme}:// returned {type(backend).__name__!r}, "
            "not a kvkit.backends.AsyncBackend"
        )
    return backend
