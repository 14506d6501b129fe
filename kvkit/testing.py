"""The kvkit pytest plugin (entry point ``pytest11``), for applications that use kvkit.

Fixtures:

* ``kvkit_settings`` — the :class:`kvkit.Settings` of the test's clients. Override it in
  your ``conftest.py`` to change TTLs etc.; keep its ``url`` and ``prefix``.
* ``kvkit_client`` — a fresh, isolated sync :class:`kvkit.Client`.
* ``kvkit_async_client`` — a fresh, isolated :class:`kvkit.AsyncClient` (a plain fixture:
  works with pytest-asyncio and anyio alike, because constructing a client does no I/O).

By default each test gets its own ``memory://`` store (shared by its sync and async client,
dropped afterwards). ``--kvkit-url URL`` or ``KVKIT_TEST_URL=URL`` runs the same tests
against a real Redis: each test gets a unique key prefix, and every key under it is deleted
after the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ._errors import ConfigError
from ._settings import Settings
from ._urls import parse_url

__all__ = ["kvkit_async_client", "kvkit_client", "kvkit_settings"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--kvkit-url``."""
    group = parser.getgroup("kvkit")
    group.addoption(
        "--kvkit-url",
        dest="kvkit_url",
        default=None,
        help="run kvkit fixtures against this backend URL (default: KVKIT_TEST_URL or memory://)",
    )


def _test_url(config: pytest.Config) -> str | None:
    url: str | None = config.getoption("kvkit_url") or os.environ.get("KVKIT_TEST_URL") or None
    return url


def pytest_configure(config: pytest.Config) -> None:
    """Reject a bad ``--kvkit-url`` / ``KVKIT_TEST_URL`` before any test runs."""
    url = _test_url(config)
    if url is not None:
        try:
            parse_url(url)
        except ConfigError as exc:
            raise pytest.UsageError(
                f"kvkit: --kvkit-url/KVKIT_TEST_URL: ConfigError: {exc}"
            ) from None


@pytest.fixture
def kvkit_settings(request: pytest.FixtureRequest) -> Settings:
    """Settings for the test's clients: an isolated store or a unique key prefix."""
    token = uuid.uuid4().hex[:16]
    url = _test_url(request.config)
    if url is None:
        return Settings(url=f"memory://kvkit-test-{token}", prefix="kvkit")
    return Settings(url=url, prefix=f"kvkit-test-{token}")


def _cleanup(settings: Settings) -> None:
    """Delete everything the test wrote."""
    from ._sync.client import Client
    from .memory import drop_store

    with Client(settings=settings) as client:
        seen: set[Any] = set()
        for role in ("cache", "sessions", "queues"):
            backend = client.backend(role)
            if backend.url.pool_key in seen:
                continue
            seen.add(backend.url.pool_key)
            if backend.kind == "memory":
                if backend.url.name:
                    drop_store(backend.url.name)
                continue
            redis = client.redis(role)
            pattern = settings.prefix.replace("[", "\\[") + ":*"
            for node_keys in _scan(redis, pattern):
                redis.unlink(*node_keys)


def _scan(redis: Any, pattern: str) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in redis.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            yield batch
            batch = []
    if batch:
        yield batch


@pytest.fixture
def kvkit_client(kvkit_settings: Settings) -> Iterator[Any]:
    """A fresh, isolated sync ``kvkit.Client``; cleaned up after the test."""
    from ._sync.client import Client

    client = Client(settings=kvkit_settings)
    try:
        yield client
    finally:
        client.close()
        _cleanup(kvkit_settings)


@pytest.fixture
def kvkit_async_client(kvkit_settings: Settings) -> Iterator[Any]:
    """A fresh, isolated ``kvkit.AsyncClient``; cleaned up after the test."""
    from ._async.client import AsyncClient

    client = AsyncClient(settings=kvkit_settings)
    try:
        yield client
    finally:
        # The test's event loop is gone by now: release its connections without awaiting.
        for role in ("cache", "sessions", "queues"):
            client.backend(role).discard()
        _cleanup(kvkit_settings)
