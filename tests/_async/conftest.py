"""Fixtures of the conformance suite: one client per backend."""

from __future__ import annotations

import pytest

import kvkit
from tests.backends import BACKENDS, settings_for


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
async def client(request: pytest.FixtureRequest, backend: str):
    """A client isolated from every other test (own store or own key prefix)."""
    async with kvkit.AsyncClient(settings=settings_for(request, backend)) as c:
        yield c


@pytest.fixture
async def cache(client):
    """The client's cache."""
    yield client.cache
    await client.cache.clear()


@pytest.fixture
async def make_queue(client):
    """Factory of queues on the test's client; every queue is purged afterwards."""
    made = []

    def make(name="jobs", **options):
        queue = client.queue(name, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.purge(dead=True)
