"""Crash recovery: a consumer SIGKILLed while holding a message does not lose it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import kvkit

pytestmark = pytest.mark.redis

# The child pops one message and is killed before it can acknowledge it.
CHILD = textwrap.dedent(
    """
    import sys, time, kvkit
    url, prefix = sys.argv[1], sys.argv[2]
    client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix))
    queue = client.queue("crash", visibility_timeout=1.0)
    message = queue.pop(timeout=10)
    print("popped", message.id, message.deliveries, flush=True)
    time.sleep(60)
    """
)


def _kill_child_holding_a_message(redis_url: str, prefix: str) -> str:
    """Start the child, wait until it holds the message, SIGKILL it; return the id."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_url, prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[0] == "popped", line
        assert line[2] == "1"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        return line[1]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_killed_consumer_message_is_redelivered(redis_url):
    """Another consumer gets the killed consumer's message after the visibility timeout."""
    prefix = "t" + uuid.uuid4().hex[:12]
    with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as client:
        queue = client.queue("crash", visibility_timeout=1.0)
        pushed = queue.push({"job": 42})
        killed_at = time.monotonic()
        assert _kill_child_holding_a_message(redis_url, prefix) == pushed
        assert queue.pop() is None  # the dead consumer's lease still runs
        message = queue.pop(timeout=10)
        assert message is not None
        assert message.id == pushed
        assert message.payload == {"job": 42}
        assert message.deliveries == 2
        assert time.monotonic() - killed_at < 9
        assert queue.ack(message) == 1
        stats = queue.stats()
        assert (stats.ready, stats.pending, stats.dead) == (0, 0, 0)
        queue.purge(dead=True)


async def test_killed_consumer_message_is_redelivered_async(redis_url):
    """The same recovery, observed by an async consumer blocked in pop()."""
    prefix = "t" + uuid.uuid4().hex[:12]
    settings = kvkit.Settings(url=redis_url, prefix=prefix)
    async with kvkit.AsyncClient(settings=settings) as client:
        queue = client.queue("crash", visibility_timeout=1.0)
        pushed = await queue.push("payload")
        assert _kill_child_holding_a_message(redis_url, prefix) == pushed
        message = await queue.pop(timeout=10)
        assert message is not None and message.id == pushed and message.deliveries == 2
        assert await message.ack() == 1
        await queue.purge(dead=True)
