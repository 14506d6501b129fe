"""Health checks behind the FastAPI and Flask health endpoints, written once.

Each function returns ``(http_status, body)``: 200 when every check passed, 503 otherwise.
The body is JSON-ready and the same for every framework::

    {
      "status": "pass",                      # or "fail"
      "duration_ms": 1.9,
      "checks": [
        {"name": "server", "roles": ["cache", "sessions", "queues"], "backend": "redis",
         "url": "redis://:***@10.0.0.5:6379/0", "ok": true, "latency_ms": 0.41,
         "server_version": "7.2.4", "error": null},
        {"name": "cache", "roles": ["cache"], ...},
        ...
      ]
    }

* :func:`redis_health` (``GET /health/redis``): one ``server`` check per distinct server
  (roles sharing a server and db share one check): PING latency and server version.
* :func:`services_health` (``GET /health/redis/services``): a real round trip through each
  service -- ``cache`` (set, get, delete a probe key in the ``__health__`` namespace),
  ``sessions`` (create, get, delete a session) and ``queues`` (push, pop, ack on the
  ``__health__`` queue). ``latency_ms`` is the whole round trip.

Probes leave nothing behind, because health checks run against production servers: every
probe key and session is written with a TTL of :data:`PROBE_TTL` seconds and deleted at
once; on Redis the keys of the ``__health__`` queue are given that TTL after each round
trip, so they vanish a minute after the last check. Probes never read or write application data.
* :func:`full_health` (``GET /health/full``): both.

Bounded time: all checks of one call run concurrently under one time limit (default
1.5 s); a check still running then fails with ``TimeoutError``, so a dead or unreachable
server answers 503 in about that time instead of waiting for connect timeouts and retries.
:func:`health_client` derives a client with short socket timeouts and no retries for the
checks to use. Bodies carry only redacted URLs and error texts of kvkit's own errors
(which never contain secrets).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

from .._compat import AsyncTimeLimit
from .._health_base import (
    DEFAULT_TIMEOUT,
    PROBE_NAME,
    PROBE_TIMEOUT,
    PROBE_TTL,
    HealthCheckFailed,
    check_body,
    check_fields,
    ms_since,
)
from .._settings import ROLES
from .probe import ping_check

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["DEFAULT_TIMEOUT", "full_health", "health_client", "redis_health", "services_health"]

_IN_PROCESS = frozenset({"memory", "fakeredis"})

# A check: the fields known up front, and the call that completes them (or raises).
_Check = tuple[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]]]


def health_client(client: AsyncClient) -> AsyncClient:
    """Return a client for health checks on the same servers as ``client``.

    It has short socket/connect timeouts (:data:`PROBE_TIMEOUT`) and no retries, so a
    check against a dead server fails fast and leaves no work running behind it. When
    every role is in-process (``memory://``, ``fakeredis://``), nothing can hang and the
    data may be private to ``client``, so ``client`` itself is returned.

    The caller closes the returned client when it is not ``client``.
    """
    if all(client.backend(role).kind in _IN_PROCESS for role in ROLES):
        return client
    settings = client.settings
    probe = attrs.evolve(
        settings,
        socket_timeout=min(settings.socket_timeout, PROBE_TIMEOUT),
        connect_timeout=min(settings.connect_timeout, PROBE_TIMEOUT),
        retries=0,
        metrics=False,  # its operations are the checks', not the application's
    )
    return type(client)(settings=probe)


async def redis_health(
    client: AsyncClient, *, timeout: float = DEFAULT_TIMEOUT
) -> tuple[int, dict[str, Any]]:
    """PING every distinct server of ``client``: latency and version (``/health/redis``).

    Args:
        client: The client to check (see :func:`health_client`).
        timeout: Seconds all checks may take together.

    Returns:
        ``(200 or 503, body)``; never raises for backend failures.
    """
    return await _run(_server_checks(client), timeout)


async def services_health(
    client: AsyncClient, *, timeout: float = DEFAULT_TIMEOUT
) -> tuple[int, dict[str, Any]]:
    """Round-trip through the cache, sessions and a queue (``/health/redis/services``).

    Args:
        client: The client to check (see :func:`health_client`).
        timeout: Seconds all checks may take together.

    Returns:
        ``(200 or 503, body)``; never raises for backend failures.
    """
    return await _run(service_checks(client), timeout)


async def full_health(
    client: AsyncClient, *, timeout: float = DEFAULT_TIMEOUT
) -> tuple[int, dict[str, Any]]:
    """Every server check and every service check (``/health/full``).

    Args:
        client: The client to check (see :func:`health_client`).
        timeout: Seconds all checks may take together.

    Returns:
        ``(200 or 503, body)``; never raises for backend failures.
    """
    return await _run(_server_checks(client) + service_checks(client), timeout)


# -- running ----------------------------------------------------------------------------------
async def _run(checks: list[_Check], timeout: float) -> tuple[int, dict[str, Any]]:
    start = time.perf_counter()
    outcomes = await AsyncTimeLimit.gather([call for _, call in checks], timeout)
    return check_body([fields for fields, _ in checks], outcomes, start)


def _base(name: str, roles: list[str], client: AsyncClient) -> dict[str, Any]:
    backend = client.backend(roles[0])
    return check_fields(name, roles, backend.kind, backend.url.redacted)


# -- checks ---------------------------------------------------------------------------------------
def _server_checks(client: AsyncClient) -> list[_Check]:
    """One PING check per distinct backend (roles sharing a pool share a check)."""
    groups: dict[int, list[str]] = {}
    for role in ROLES:
        groups.setdefault(id(client.backend(role)), []).append(role)
    checks: list[_Check] = []
    for roles in groups.values():
        backend = client.backend(roles[0])
        checks.append((_base("server", roles, client), functools.partial(ping_check, backend)))
    return checks


def service_checks(client: AsyncClient) -> list[_Check]:
    """The ``cache``, ``sessions`` and ``queues`` round trips (also run by ``kvkit check``)."""

    async def cache() -> dict[str, Any]:
        start = time.perf_counter()
        # A namespace of its own: probes neither collide with nor count in client.cache.
        view = client.cache.namespace(PROBE_NAME)
        token = secrets.token_hex(8)
        await view.set(token, token, PROBE_TTL)
        found = await view.get(token)
        await view.delete(token)
        if found != token:
            raise HealthCheckFailed("cache did not return the value just stored")
        return {"latency_ms": ms_since(start)}

    async def sessions() -> dict[str, Any]:
        start = time.perf_counter()
        store = client.sessions
        token = secrets.token_hex(8)
        session_id = await store.create({"probe": token}, ttl=PROBE_TTL)
        found = await store.get(session_id)
        await store.delete(session_id)
        if found != {"probe": token}:
            raise HealthCheckFailed("session store did not return the session just created")
        return {"latency_ms": ms_since(start)}

    async def queues() -> dict[str, Any]:
        start = time.perf_counter()
        # One consumer name per process: a fresh name per check would register a new
        # consumer in the group every time.
        queue = client.queue(
            PROBE_NAME,
            consumer=f"health-{socket.gethostname()}-{os.getpid()}",
            visibility_timeout=5.0,
        )
        message_id = await queue.push({"probe": secrets.token_hex(8)})
        try:
            # Concurrent checks may pop each other's probe; any probe proves the round trip.
            message = await queue.pop(timeout=0)
            if message is None:
                raise HealthCheckFailed("queue did not deliver the message just pushed")
            await queue.ack(message)
        finally:
            # Also after a failed pop: the probe message must not stay without a TTL.
            await queue.expire_keys(PROBE_TTL, message_ids=[message_id])
        return {"latency_ms": ms_since(start)}

    return [
        (_base("cache", ["cache"], client), cache),
        (_base("sessions", ["sessions"], client), sessions),
        (_base("queues", ["queues"], client), queues),
    ]
