"""Shared payloads and identically configured clients for both sides of a comparison."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
from redis.backoff import NoBackoff

import kvkit

from .harness import Env, Skip

PREFIX = "kvbench"
"""kvkit's key prefix here; its cache keys are ``kvbench:cache:<key>``."""

KEY = "user:123"
VALUE: dict[str, Any] = {
    "id": 123,
    "name": "alice",
    "roles": ["admin", "dev"],
    "active": True,
    "score": 12.5,
}
"""A small realistic cache value (what a web backend caches per user)."""

TTL = 300
"""Seconds; both sides write with this TTL (kvkit sends ``PX 300000``, baselines ``EX 300``)."""

MANY = 100
"""Batch size of the ``*_many`` rows."""

KVKIT_KEY = f"{PREFIX}:cache:{KEY}"
BASE_KEY = f"{PREFIX}:bases:{KEY}"
"""The baselines' key: as long as kvkit's full key, so both send the same bytes."""


def many_keys(n: int = MANY) -> list[str]:
    """``["user:0", "user:1", ...]``."""
    return [f"user:{i}" for i in range(n)]


def many_values(n: int = MANY) -> dict[str, Any]:
    """``{"user:i": VALUE with id i}``, the mapping of the ``*_many`` rows."""
    return {key: {**VALUE, "id": i} for i, key in enumerate(many_keys(n))}


# --------------------------------------------------------------------------- codecs

Dumps = Callable[[Any], bytes | str]
Loads = Callable[[bytes], Any]


def _orjson() -> tuple[Dumps, Loads]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is in kvkit[fast]
        raise Skip("orjson is not installed") from None
    return orjson.dumps, orjson.loads


CODECS: dict[str, Callable[[], tuple[Dumps, Loads]]] = {
    # What a redis-py user writes by hand: json.dumps -> str (redis-py encodes it as UTF-8).
    "json": lambda: (json.dumps, json.loads),
    "orjson": _orjson,
}


# --------------------------------------------------------------------------- clients

#: redis-py connection settings kvkit uses (see kvkit/_async/backends/redis.py), so the
#: baselines differ from kvkit only in the layer on top of redis-py. hiredis is picked up
#: automatically by both when installed.
POOL_KWARGS: dict[str, Any] = {
    "max_connections": 20,
    "timeout": 5.0,
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "health_check_interval": 30,
}


def _url(env: Env) -> str:
    if env.url is None:
        raise Skip("no Redis server")
    return env.url


def redis_sync(env: Env) -> redis.Redis:
    """A redis-py client with kvkit's pool: ``BlockingConnectionPool(max_connections=20)``."""
    from redis.retry import Retry

    pool = redis.BlockingConnectionPool.from_url(
        _url(env), retry=Retry(NoBackoff(), 0), **POOL_KWARGS
    )
    return redis.Redis.from_pool(pool)


def redis_async(env: Env) -> redis.asyncio.Redis:
    """The redis.asyncio twin of :func:`redis_sync`."""
    from redis.asyncio.retry import Retry

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        _url(env), retry=Retry(NoBackoff(), 0), **POOL_KWARGS
    )
    return redis.asyncio.Redis.from_pool(pool)


def settings(url: str) -> kvkit.Settings:
    """kvkit settings of the benchmarks: defaults (pool of 20) and the ``kvbench`` prefix."""
    return kvkit.Settings(url=url, prefix=PREFIX)


def kvkit_sync(env: Env, options: str = "") -> kvkit.Client:
    """A sync kvkit client on the benchmark server (``options``: a URL query to add)."""
    url = _url(env)
    if options:
        url += ("&" if "?" in url else "?") + options
    return kvkit.Client(settings=settings(url))


def kvkit_async(env: Env, options: str = "") -> kvkit.AsyncClient:
    """An async kvkit client on the benchmark server (``options``: a URL query to add)."""
    url = _url(env)
    if options:
        url += ("&" if "?" in url else "?") + options
    return kvkit.AsyncClient(settings=settings(url))


def host_port(env: Env) -> tuple[str, int, int, str | None]:
    """``(host, port, db, password)`` of a ``redis://`` URL, for peers that want them.

    Raises:
        Skip: the URL is not plain TCP ``redis://`` (those peers cannot take it).
    """
    parts = urlsplit(_url(env))
    if parts.scheme != "redis":
        raise Skip(f"this peer library is only benchmarked over redis:// (not {parts.scheme}://)")
    db = int(parts.path.strip("/") or 0)
    password = unquote(parts.password) if parts.password else None
    return parts.hostname or "127.0.0.1", parts.port or 6379, db, password


def assert_same_server(raw: redis.Redis, full_key: str) -> None:
    """Fail unless ``full_key`` (just written by kvkit) is visible to the baseline client."""
    if raw.get(full_key) is None:
        raise RuntimeError(f"the baseline client does not see kvkit's key {full_key!r}")


async def aassert_same_server(raw: redis.asyncio.Redis, full_key: str) -> None:
    """Async :func:`assert_same_server`."""
    if await raw.get(full_key) is None:
        raise RuntimeError(f"the baseline client does not see kvkit's key {full_key!r}")


def cleanup(url: str) -> int:
    """Delete every ``kvbench:*`` key the benchmarks wrote; return how many."""
    client = redis.Redis.from_url(url)
    try:
        doomed = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
        for i in range(0, len(doomed), 500):
            client.unlink(*doomed[i : i + 500])
        return len(doomed)
    finally:
        client.close()
