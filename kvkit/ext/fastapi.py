"""FastAPI integration: one :class:`kvkit.AsyncClient` per app, dependencies, health routes.

::

    from fastapi import FastAPI
    from kvkit.ext.fastapi import CacheDep, KVKit, SessionsDep, health_router

    app = FastAPI()
    KVKit(app)                         # Settings.from_env("KVKIT_") at startup
    app.include_router(health_router())

    @app.get("/users/{user_id}")
    async def user(user_id: int, cache: CacheDep) -> dict:
        return await cache.get_or_set(f"user:{user_id}", lambda: load_user(user_id))

:class:`KVKit` opens the client in the app's lifespan (wrapping the lifespan the app
already has: kvkit starts first and closes last, so the app's own lifespan can use it) and
closes it on shutdown. Configuration errors surface at startup as
:class:`kvkit.ConfigError` naming the setting.

Dependencies (the original system's names) and their ``Annotated`` aliases:

========================  =========================  ====================================
dependency                alias                      provides
========================  =========================  ====================================
``get_redis_service``     ``RedisServiceDep``        the :class:`kvkit.AsyncClient`
                                                     (an :class:`kvkit.AsyncRedisService`)
``get_redis_cache``       ``CacheDep``               ``client.cache`` (``AsyncCache``)
``get_redis_sessions``    ``SessionsDep``            ``client.sessions``
                                                     (``AsyncSessionStore``)
``get_redis_queues``      ``QueuesDep``              ``client.queue``: ``name, **opts ->
                                                     AsyncQueue``
========================  =========================  ====================================

The other three depend on ``get_redis_service``, so in tests one override swaps
everything, health routes included::

    app.dependency_overrides[get_redis_service] = lambda: kvkit.AsyncClient("memory://")

:func:`health_router` serves ``GET /health/redis``, ``GET /health/redis/services`` and
``GET /health/full`` (bodies: :mod:`kvkit._async.health`): 200 when every check passes,
503 otherwise, within about 1.5 s even when Redis is down, never showing a secret.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Protocol

try:
    from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
    from fastapi.responses import JSONResponse
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kvkit.ext.fastapi needs FastAPI; install it with: pip install 'kvkit-sdk[fastapi]'"
    ) from exc

from .._async.client import AsyncClient
from .._async.health import (
    DEFAULT_TIMEOUT,
    full_health,
    health_client,
    redis_health,
    services_health,
)
from .._async.protocols import AsyncCache, AsyncQueue, AsyncSessionStore
from .._errors import ConfigError
from .._ratelimit_base import (
    Rate,
    RateLimitDecision,
    make_spec,
    response_headers,
    validate_cost,
    validate_limiter_name,
)
from .._settings import Settings

__all__ = [
    "CacheDep",
    "KVKit",
    "QueueFactory",
    "QueuesDep",
    "RateLimit",
    "RedisServiceDep",
    "SessionsDep",
    "get_redis_cache",
    "get_redis_queues",
    "get_redis_service",
    "get_redis_sessions",
    "health_router",
    "metrics_router",
]

log = logging.getLogger("kvkit.ext.fastapi")

_STATE_ATTR = "kvkit"


class QueueFactory(Protocol):
    """What :func:`get_redis_queues` provides: ``client.queue``."""

    def __call__(self, name: str, **options: Any) -> AsyncQueue:
        """Return the queue ``name`` (options as for ``AsyncClient.queue``)."""
        ...


class KVKit:
    """Give a FastAPI app one :class:`kvkit.AsyncClient` for its whole life.

    Args:
        app: The app; ``None`` to call :meth:`init_app` later.
        settings: Settings of the client. Default: ``Settings.from_env(env_prefix)``, read
            when the app starts.
        client: An existing client to use instead (it is not closed on shutdown: whoever
            created it owns it).
        env_prefix: Prefix of the environment variables read when neither ``settings``
            nor ``client`` is given (``"REDIS_"`` reads the original system's variables).

    Raises:
        ConfigError: both ``settings`` and ``client`` are given, or one has the wrong type.
            (Errors in the environment are raised when the app starts.)
    """

    def __init__(
        self,
        app: FastAPI | None = None,
        settings: Settings | None = None,
        client: AsyncClient | None = None,
        *,
        env_prefix: str = "KVKIT_",
    ) -> None:
        if settings is not None and client is not None:
            raise ConfigError("pass either settings or client to KVKit, not both")
        if settings is not None and not isinstance(settings, Settings):
            raise ConfigError(f"settings must be a kvkit.Settings, not {type(settings).__name__!r}")
        if client is not None and not isinstance(client, AsyncClient):
            raise ConfigError(f"client must be a kvkit.AsyncClient, not {type(client).__name__!r}")
        self._settings = settings
        self._env_prefix = env_prefix
        self._client = client
        self._owns_client = client is None
        self._health: AsyncClient | None = None
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<kvkit.ext.fastapi.KVKit client={self._client!r}>"

    def init_app(self, app: FastAPI) -> None:
        """Install kvkit on ``app``: wrap its lifespan and make the dependencies find it.

        Raises:
            RuntimeError: ``app`` already has a KVKit.
        """
        if getattr(app.state, _STATE_ATTR, None) is not None:
            raise RuntimeError("this app already has a kvkit.ext.fastapi.KVKit")
        setattr(app.state, _STATE_ATTR, self)
        inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            await self.open()
            try:
                async with inner(app) as state:
                    yield state
            finally:
                await self.aclose()

        app.router.lifespan_context = lifespan

    @property
    def client(self) -> AsyncClient:
        """The app's client.

        Created at startup, or on first use if the lifespan has not run (e.g. a
        ``TestClient`` used without ``with``); creating it does no I/O.
        """
        if self._client is None:
            settings = self._settings
            if settings is None:
                settings = Settings.from_env(self._env_prefix)
            self._client = AsyncClient(settings=settings)
        return self._client

    @property
    def health_client(self) -> AsyncClient:
        """The client health routes use: same servers, short timeouts, no retries."""
        if self._health is None:
            self._health = health_client(self.client)
        return self._health

    async def open(self) -> AsyncClient:
        """Create the client (the lifespan calls this at startup).

        Raises:
            ConfigError: a setting (or environment variable) is invalid; the message names it.
        """
        client = self.client
        log.info("kvkit client ready: %r", client)
        return client

    async def aclose(self) -> None:
        """Close the client the app owns and the health client (the lifespan's shutdown)."""
        health, self._health = self._health, None
        if health is not None and health is not self._client:
            await health.aclose()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _kvkit_of(connection: HTTPConnection) -> KVKit:
    ext = getattr(connection.app.state, _STATE_ATTR, None)
    if not isinstance(ext, KVKit):
        raise RuntimeError(
            "kvkit is not set up on this app: call kvkit.ext.fastapi.KVKit(app) "
            "(or override get_redis_service in app.dependency_overrides)"
        )
    return ext


# -- dependencies ---------------------------------------------------------------------------
async def get_redis_service(connection: HTTPConnection) -> AsyncClient:
    """Dependency: the app's :class:`kvkit.AsyncClient` (an ``AsyncRedisService``)."""
    return _kvkit_of(connection).client


async def get_redis_cache(
    client: Annotated[AsyncClient, Depends(get_redis_service)],
) -> AsyncCache:
    """Dependency: the app's cache (``client.cache``)."""
    return client.cache


async def get_redis_sessions(
    client: Annotated[AsyncClient, Depends(get_redis_service)],
) -> AsyncSessionStore:
    """Dependency: the app's session store (``client.sessions``)."""
    return client.sessions


async def get_redis_queues(
    client: Annotated[AsyncClient, Depends(get_redis_service)],
) -> QueueFactory:
    """Dependency: the app's queue factory (``client.queue``: ``name, **opts -> AsyncQueue``)."""
    return client.queue


RedisServiceDep = Annotated[AsyncClient, Depends(get_redis_service)]
"""``Annotated`` alias of :func:`get_redis_service`: ``async def f(redis: RedisServiceDep)``."""
CacheDep = Annotated[AsyncCache, Depends(get_redis_cache)]
"""``Annotated`` alias of :func:`get_redis_cache`."""
SessionsDep = Annotated[AsyncSessionStore, Depends(get_redis_sessions)]
"""``Annotated`` alias of :func:`get_redis_sessions`."""
QueuesDep = Annotated[QueueFactory, Depends(get_redis_queues)]
"""``Annotated`` alias of :func:`get_redis_queues`."""


async def _get_health_client(
    connection: HTTPConnection,
    client: Annotated[AsyncClient, Depends(get_redis_service)],
) -> AsyncClient:
    """The app's probe client, or the overriding client when get_redis_service is overridden."""
    ext = getattr(connection.app.state, _STATE_ATTR, None)
    if isinstance(ext, KVKit) and ext._client is client:
        return ext.health_client
    return client


_ProbeDep = Annotated[AsyncClient, Depends(_get_health_client)]


# -- health ---------------------------------------------------------------------------------
def health_router(
    *,
    prefix: str = "",
    tags: Sequence[str] = ("health",),
    timeout: float = DEFAULT_TIMEOUT,
    include_in_schema: bool = True,
) -> APIRouter:
    """Return a router with the three health endpoints.

    * ``GET {prefix}/health/redis``: PING latency and version of every distinct server.
    * ``GET {prefix}/health/redis/services``: a real round trip through the cache, the
      session store and a queue.
    * ``GET {prefix}/health/full``: both.

    Each answers 200 when every check passes and 503 otherwise, with a JSON body
    ``{"status", "duration_ms", "checks": [...]}`` (see :mod:`kvkit._async.health`), in at
    most about ``timeout`` seconds, without secrets. Responses are not cacheable.

    Args:
        prefix: Path prefix of the routes.
        tags: OpenAPI tags.
        timeout: Seconds the checks of one request may take together.
        include_in_schema: Whether the routes appear in the OpenAPI schema.
    """
    router = APIRouter(prefix=prefix, tags=list(tags), include_in_schema=include_in_schema)

    def respond(result: tuple[int, dict[str, Any]]) -> JSONResponse:
        code, body = result
        return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})

    @router.get("/health/redis", summary="PING every Redis server kvkit uses")
    async def health_redis(client: _ProbeDep) -> JSONResponse:
        return respond(await redis_health(client, timeout=timeout))

    @router.get("/health/redis/services", summary="Round trip through cache, sessions, queues")
    async def health_services(client: _ProbeDep) -> JSONResponse:
        return respond(await services_health(client, timeout=timeout))

    @router.get("/health/full", summary="Every server and service check")
    async def health_full(client: _ProbeDep) -> JSONResponse:
        return respond(await full_health(client, timeout=timeout))

    return router


# -- rate limits --------------------------------------------------------------------------------
class RateLimit:
    """Dependency that rate-limits a route: ``Depends(RateLimit("5/minute"))``.

    Each request costs ``cost`` units of the allowance of ``key(request)`` (default: the
    client's host) under the limiter ``name`` (default: the endpoint function's dotted
    name, so each route has its own counter even when one ``RateLimit`` guards several).
    A denied request gets a 429 with ``Retry-After`` and ``{"detail": "rate limit
    exceeded"}``; allowed and denied responses carry ``RateLimit-Limit``,
    ``RateLimit-Remaining`` and ``RateLimit-Reset`` (whole seconds, rounded up). The
    dependency's value, also stored as ``request.state.rate_limit``, is the
    :class:`kvkit.RateLimitDecision` (an endpoint that returns a ``Response`` object
    itself must copy the headers from it: FastAPI adds dependency headers only to
    responses it builds).

    The limiter runs on the app's client (``get_redis_service``, so overrides apply).

    Args:
        rate: ``"N/minute"``, ... or a :class:`kvkit.Rate`.
        key: ``key(request) -> str`` (or an ``async`` function) naming whose allowance a
            request uses (a user id, an API key, ...).
        name: The limiter's name; requests of routes sharing a name share the counter.
        algorithm: ``"sliding_window"``, ``"fixed_window"`` or ``"token_bucket"``.
        cost: Units one request takes.
        burst: Extra units of the token bucket.
        fail_open: Admit requests (and log a warning) while the backend is down.

    Raises:
        InvalidArgument: a bad rate, name, algorithm, burst or cost (at import time).
    """

    def __init__(
        self,
        rate: Any,
        *,
        key: Callable[[Request], Any] | None = None,
        name: str | None = None,
        algorithm: str = "sliding_window",
        cost: int = 1,
        burst: int | None = None,
        fail_open: bool = False,
    ) -> None:
        self._rate = Rate.parse(rate)
        self._cost = validate_cost(cost, make_spec(self._rate, algorithm, burst))
        self._name = None if name is None else validate_limiter_name(name)
        self._key = key
        self._options: dict[str, Any] = {
            "algorithm": algorithm,
            "burst": burst,
            "fail_open": fail_open,
        }
        self._limiters: weakref.WeakKeyDictionary[AsyncClient, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<kvkit.ext.fastapi.RateLimit {self._rate} {self._options['algorithm']}>"

    async def __call__(
        self,
        request: Request,
        response: Response,
        client: Annotated[AsyncClient, Depends(get_redis_service)],
    ) -> RateLimitDecision:
        """Charge the request; raise the 429 ``HTTPException`` when it is denied."""
        name = self._name
        if name is None:
            endpoint = request.scope.get("endpoint")
            name = f"{endpoint.__module__}.{endpoint.__qualname__}" if endpoint else "route"
        per_client = self._limiters.setdefault(client, {})
        limiter = per_client.get(name)
        if limiter is None:
            limiter = per_client[name] = client.rate_limiter(name, self._rate, **self._options)
        if self._key is None:
            key: Any = request.client.host if request.client else "anonymous"
        else:
            key = self._key(request)
            if inspect.isawaitable(key):
                key = await key
        decision = await limiter.hit(key, self._cost)
        request.state.rate_limit = decision
        headers = response_headers(decision)
        if not decision.allowed:
            raise HTTPException(status_code=429, detail="rate limit exceeded", headers=headers)
        response.headers.update(headers)
        return decision


# -- metrics --------------------------------------------------------------------------------
def metrics_router(
    *,
    path: str = "/metrics",
    registry: Any = None,
    include_in_schema: bool = False,
    **collector_options: Any,
) -> APIRouter:
    """Return a router serving ``GET /metrics`` in the Prometheus text format.

    The app's client's metrics (see :mod:`kvkit.ext.prometheus`); the queue gauges are
    read at scrape time, on the app's event loop, within their time limit. Needs
    ``pip install 'kvkit-sdk[prometheus]'``.

    Args:
        path: The route.
        registry: A ``prometheus_client`` registry whose metrics are served too (e.g.
            ``prometheus_client.REGISTRY`` for the process metrics).
        include_in_schema: Whether the route appears in the OpenAPI schema.
        **collector_options: Passed to :class:`kvkit.ext.prometheus.KVKitCollector`
            (``queues``, ``discover``, ``max_queues``, ``timeout``).

    Raises:
        ImportError: prometheus-client is not installed (the message says how to get it).
    """
    from .prometheus import CONTENT_TYPE_LATEST, collector_for, exposition

    router = APIRouter(include_in_schema=include_in_schema)

    @router.get(path, summary="kvkit metrics (Prometheus text format)")
    async def metrics(client: RedisServiceDep) -> Response:
        collector = collector_for(client, **collector_options)
        reading = await collector.reader.aread() if collector.queues else None
        body = exposition(collector, reading, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    return router
