"""Blocking pops longer than the socket timeout, on real Redis (sync and async)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

import kvkit

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _settings(redis_url: str) -> kvkit.Settings:
    # A 1-second socket timeout: a single 10-second blocking read would time out.
    return kvkit.Settings(url=redis_url, prefix="t" + uuid.uuid4().hex[:12], socket_timeout=1.0)


def test_long_pop_returns_a_message_pushed_later(redis_url):
    """pop(timeout=10) with socket_timeout=1 returns the message pushed after ~2 s."""
    with kvkit.Client(settings=_settings(redis_url)) as client:
        queue = client.queue("blocking")
        pusher = threading.Timer(2.0, lambda: queue.push("late"))
        start = time.monotonic()
        pusher.start()
        try:
            message = queue.pop(timeout=10)
        finally:
            pusher.join()
        elapsed = time.monotonic() - start
        assert message is not None and message.payload == "late"
        assert 1.5 <= elapsed < 6
        queue.ack(message)
        queue.purge(dead=True)


def test_long_pop_returns_none_after_its_timeout(redis_url):
    """pop(timeout=3) with socket_timeout=1 returns None after about 3 s, not an error."""
    with kvkit.Client(settings=_settings(redis_url)) as client:
        queue = client.queue("blocking")
        start = time.monotonic()
        assert queue.pop(timeout=3) is None
        assert 2.9 <= time.monotonic() - start < 6


async def test_long_pop_async(redis_url):
    """The async pop(timeout=10) with socket_timeout=1 gets a message pushed after ~2 s."""
    async with kvkit.AsyncClient(settings=_settings(redis_url)) as client:
        queue = client.queue("blocking")

        async def push_later() -> None:
            await asyncio.sleep(2.0)
            await queue.push("late")

        start = time.monotonic()
        task = asyncio.create_task(push_later())
        message = await queue.pop(timeout=10)
        await task
        assert message is not None and message.payload == "late"
        assert 1.5 <= time.monotonic() - start < 6
        await message.ack()
        start = time.monotonic()
        assert await queue.pop(timeout=3) is None
        assert 2.9 <= time.monotonic() - start < 6
        await queue.purge(dead=True)


def test_pop_forever_returns_when_a_message_arrives(redis_url):
    """pop(timeout=None) waits across many socket timeouts until a message arrives."""
    with kvkit.Client(settings=_settings(redis_url)) as client:
        queue = client.queue("blocking")
        pusher = threading.Timer(2.5, lambda: queue.push("finally"))
        pusher.start()
        try:
            message = queue.pop(timeout=None)
        finally:
            pusher.join()
        assert message is not None and message.payload == "finally"
        queue.ack(message)
        queue.purge(dead=True)
