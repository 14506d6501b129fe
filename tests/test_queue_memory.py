"""memory://NAME queues shared by sync and async clients; blocking pops wake on push."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

import kvkit
from kvkit._memory.queues import MemoryQueue


def _name() -> str:
    return "memory://q" + uuid.uuid4().hex[:12]


@pytest.fixture
def pop_calls(monkeypatch):
    """Count calls into the engine's pop (a polling waiter would call it many times)."""
    calls = {"n": 0}
    original = MemoryQueue.pop

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MemoryQueue, "pop", counting)
    return calls


async def test_sync_producer_wakes_async_consumer(pop_calls):
    """An async pop blocked on memory://NAME wakes when a sync client pushes from a thread."""
    url = _name()
    sync_client = kvkit.Client(url)
    async with kvkit.AsyncClient(url) as client:
        queue = client.queue("jobs")
        timer = threading.Timer(0.3, lambda: sync_client.queue("jobs").push({"from": "sync"}))
        start = time.monotonic()
        timer.start()
        message = await queue.pop(timeout=10)
        elapsed = time.monotonic() - start
        timer.join()
        assert message is not None and message.payload == {"from": "sync"}
        assert 0.2 <= elapsed < 3
        assert pop_calls["n"] <= 3  # woken by the push, not by polling
        assert await message.ack() == 1
    sync_client.close()


async def test_async_producer_wakes_sync_consumer_thread(pop_calls):
    """A sync pop blocked in a thread wakes when an async client pushes."""
    url = _name()
    sync_queue = kvkit.Client(url).queue("jobs")
    got: list[kvkit.Message | None] = []
    thread = threading.Thread(target=lambda: got.append(sync_queue.pop(timeout=10)))
    thread.start()
    async with kvkit.AsyncClient(url) as client:
        await asyncio.sleep(0.3)
        await client.queue("jobs").push("from async")
        await asyncio.to_thread(thread.join, 10)
    assert got and got[0] is not None and got[0].payload == "from async"
    assert pop_calls["n"] <= 3


async def test_many_async_waiters_each_get_one_message():
    """Several tasks blocked in pop() each receive one of the pushed messages."""
    async with kvkit.AsyncClient(_name()) as client:
        queue = client.queue("jobs")
        waiters = [asyncio.create_task(queue.pop(timeout=10)) for _ in range(3)]
        await asyncio.sleep(0.1)
        await threading_push(client.settings.url, ["a", "b", "c"])
        results = await asyncio.gather(*waiters)
        assert sorted(m.payload for m in results) == ["a", "b", "c"]


async def threading_push(url: str, payloads: list[str]) -> None:
    """Push from another thread through a sync client of the same memory store."""

    def push() -> None:
        sync_queue = kvkit.Client(url).queue("jobs")
        for payload in payloads:
            sync_queue.push(payload)

    await asyncio.to_thread(push)


async def test_delayed_message_wakes_waiter_at_due_time(pop_calls):
    """A waiter sleeps until a delayed message is due, without polling in between."""
    async with kvkit.AsyncClient(_name()) as client:
        queue = client.queue("jobs")
        await queue.push("later", delay=0.4)
        start = time.monotonic()
        message = await queue.pop(timeout=5)
        assert message is not None and message.payload == "later"
        assert 0.35 <= time.monotonic() - start < 3
        assert pop_calls["n"] <= 3


def test_expired_lease_wakes_sync_waiter(pop_calls):
    """A sync waiter is woken when another consumer's lease expires."""
    queue = kvkit.Client(_name()).queue("jobs", visibility_timeout=0.3)
    queue.push("x")
    assert queue.pop() is not None
    start = time.monotonic()
    again = queue.pop(timeout=5)
    assert again is not None and again.deliveries == 2
    assert 0.25 <= time.monotonic() - start < 3
    assert pop_calls["n"] <= 4


def test_named_store_is_shared_and_private_store_is_not():
    """memory://NAME is one queue for every client; memory:// is private to its client."""
    url = _name()
    kvkit.Client(url).queue("jobs").push(1)
    assert kvkit.Client(url).queue("jobs").pop().payload == 1
    kvkit.Client("memory://").queue("jobs").push(2)
    assert kvkit.Client("memory://").queue("jobs").pop() is None


def test_threads_on_memory_queue():
    """4 producer and 4 consumer threads on memory://: every message acked exactly once."""
    client = kvkit.Client(_name())
    per_producer, producers = 1000, 4
    lock = threading.Lock()
    acked: list[str] = []
    done = threading.Event()

    def produce(n: int) -> None:
        queue = client.queue("jobs")
        for i in range(per_producer):
            queue.push(f"{n}:{i}")

    def consume() -> None:
        queue = client.queue("jobs")
        while not done.is_set():
            for message in queue.pop_many(20, timeout=0.2):
                assert queue.ack(message) == 1
                with lock:
                    acked.append(message.payload)
                    if len(acked) == per_producer * producers:
                        done.set()

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    threads += [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    done.wait(60)
    done.set()
    for thread in threads:
        thread.join(10)
    assert len(acked) == len(set(acked)) == per_producer * producers
    stats = client.queue("jobs").stats()
    assert (stats.ready, stats.pending) == (0, 0)


def test_sync_consume_rejects_an_async_handler():
    """The sync client refuses an async def handler instead of never running it."""
    queue = kvkit.Client(_name()).queue("jobs")
    queue.push(1)

    async def handler(message):
        return None

    with pytest.raises(kvkit.InvalidArgument, match="async"):
        queue.consume(handler, max_messages=1)
    assert queue.pop().deliveries == 1  # given back untouched
