"""The kvkit pytest plugin (entry point ``pytest11``), for applications that use kvkit.

Fixtures:

* ``kvkit_settings`` — the :class:`kvkit.Settings` of the test's clients. Override it in
  your ``conftest.py`` to change TTLs etc.; keep its ``url`` and ``prefix``.
* ``kvkit_client`` — a fresh, isolated sync :class:`kvkit.Client`.
* ``kvkit_async_client`` — a fresh, isolated :class:`kvkit.AsyncClient` (a plain fixture:
  works with pytest-asyncio and anyio alike, because constructing a client does no I/O).

By default each test gets its own ``memory://`` store, shared by its sync and async clients
(and by any client the application builds from ``kvkit_settings``) and dropped afterwards.
``--kvkit-url URL`` or ``KVKIT_TEST_URL=URL`` runs the same tests against another backend:

* ``memory://`` (with or without a name or options): exactly the default — a fresh
  store per test (``memory://kvkit-test-<random>``, keeping the URL's options);
* ``fakeredis://`` without a name: one fakeredis server for the session, named so that
  every client of a test shares it, with a unique key prefix per test (as on Redis);
* anything else (``redis://``, ``fakeredis://NAME``, Cluster, Sentinel…): each test gets
  a unique key prefix.

Whichever fixtures a test uses — even only ``kvkit_settings``, as a Flask test that builds
``KVKit(app)`` from it must — every key under the test's prefix is deleted (and its memory
store dropped) after the test.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ._errors import ConfigError
from ._settings import ROLES, Settings
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


# One fakeredis server per test session for ``fakeredis://`` without a name: a private
# server per client would keep a test's sync and async clients from sharing data.
_SESSION_TOKEN = uuid.uuid4().hex[:16]


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


def _with_name(url: str, name: str) -> str:
    """``url`` (an in-process scheme) with its store name replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, name, "", parts.query, ""))


def _test_settings(url: str | None, token: str) -> Settings:
    """The settings of one test: the same sharing for a URL's default and explicit forms."""
    if url is None:
        return Settings(url=f"memory://kvkit-test-{token}", prefix="kvkit")
    scheme = parse_url(url).scheme
    if scheme == "memory":
        return Settings(url=_with_name(url, f"kvkit-test-{token}"), prefix="kvkit")
    if scheme == "fakeredis" and parse_url(url).name is None:
        url = _with_name(url, f"kvkit-test-{_SESSION_TOKEN}")
    return Settings(url=url, prefix=f"kvkit-test-{token}")


@pytest.fixture
def kvkit_settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings for the test's clients: an isolated store or a unique key prefix.

    Everything written under them is deleted after the test, whichever fixtures or
    clients wrote it.
    """
    settings = _test_settings(_test_url(request.config), uuid.uuid4().hex[:16])
    try:
        yield settings
    finally:
        _cleanup(settings)


def _cleanup(settings: Settings) -> None:
    """Delete everything the test wrote: drop its memory store, unlink its keys."""
    from ._memory import drop_store
    from ._sync.client import Client
    from ._tools import unlink_prefixed

    with Client(settings=settings) as client:
        seen: set[Any] = set()
        for role in ROLES:
            backend = client.backend(role)
            if backend.url.pool_key in seen:
                continue
            seen.add(backend.url.pool_key)
            if backend.kind == "memory":
                if backend.url.name:
                    drop_store(backend.url.name)
                continue
            # The prefix ends in a fixed-length random token: it starts no other test's keys.
            unlink_prefixed(client.redis(role), settings.prefix, backend.url.redacted)


@pytest.fixture
def kvkit_client(kvkit_settings: Settings) -> Iterator[Any]:
    """A fresh, isolated sync ``kvkit.Client``; its data is deleted after the test."""
    from ._sync.client import Client

    client = Client(settings=kvkit_settings)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def kvkit_async_client(kvkit_settings: Settings) -> Iterator[Any]:
    """A fresh, isolated ``kvkit.AsyncClient``; its data is deleted after the test."""
    from ._async.client import AsyncClient

    client = AsyncClient(settings=kvkit_settings)
    try:
        yield client
    finally:
        _close_async(client)


def _close_async(client: Any) -> None:
    """Close an async client from synchronous teardown code.

    The test's event loop may be gone (or not running) by now; ``aclose()`` run on a new
    loop releases connections bound to another loop without awaiting them.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(client.aclose())
        return
    # A loop runs in this thread (an unusual runner): close from a helper thread instead.
    worker = threading.Thread(target=asyncio.run, args=(client.aclose(),))
    worker.start()
    worker.join()
