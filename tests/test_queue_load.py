"""Load: 4 producer and 4 consumer threads on real Redis, 5 000 messages per producer."""

from __future__ import annotations

import threading
import uuid

import pytest

import kvkit

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PRODUCERS = 4
CONSUMERS = 4
PER_PRODUCER = 5000
TOTAL = PRODUCERS * PER_PRODUCER


def test_four_producers_four_consumers(redis_url):
    """Every message is processed, none is acked twice, and the stream ends empty."""
    prefix = "t" + uuid.uuid4().hex[:12]
    settings = kvkit.Settings(url=redis_url, prefix=prefix, max_connections=20)
    with kvkit.Client(settings=settings) as client:
        lock = threading.Lock()
        acked: list[str] = []
        not_acked: list[str] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def produce(n: int) -> None:
            try:
                queue = client.queue("load")
                payloads = [f"{n}:{i}" for i in range(PER_PRODUCER)]
                # Half one by one, half in batches: both paths under contention.
                half = PER_PRODUCER // 2
                for payload in payloads[:half]:
                    queue.push(payload)
                for start in range(half, PER_PRODUCER, 250):
                    queue.push_many(payloads[start : start + 250])
            except BaseException as exc:
                errors.append(exc)

        def consume() -> None:
            try:
                queue = client.queue("load")
                while not done.is_set():
                    for message in queue.pop_many(50, timeout=0.5):
                        result = queue.ack(message)
                        with lock:
                            (acked if result == 1 else not_acked).append(message.payload)
                            if len(acked) >= TOTAL:
                                done.set()
            except BaseException as exc:
                errors.append(exc)
                done.set()

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(PRODUCERS)]
        threads += [threading.Thread(target=consume) for _ in range(CONSUMERS)]
        for thread in threads:
            thread.start()
        done.wait(timeout=240)
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert not not_acked
        assert len(acked) == TOTAL
        assert len(set(acked)) == TOTAL
        expected = {f"{n}:{i}" for n in range(PRODUCERS) for i in range(PER_PRODUCER)}
        assert set(acked) == expected
        queue = client.queue("load")
        stats = queue.stats()
        assert (stats.ready, stats.pending, stats.delayed, stats.dead) == (0, 0, 0, 0)
        redis = client.redis("queues")
        assert redis.xlen(queue.key + ":stream") == 0
        assert redis.hlen(queue.key + ":ids") == 0
        queue.purge(dead=True)
