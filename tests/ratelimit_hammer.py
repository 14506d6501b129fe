"""Worker of tests/test_ratelimit_contention.py: threads hammering one limiter key.

``python -m tests.ratelimit_hammer URL PREFIX START DURATION THREADS`` waits until the
Unix time START, then runs THREADS threads calling ``hit`` on one key for DURATION
seconds, and prints one JSON list per hit: ``[time before, time after, allowed]``.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import kvkit

NAME, RATE, KEY = "hammer", "50/2s", "hot"


def main(url: str, prefix: str, start: float, duration: float, threads: int) -> None:
    """Hammer, then print the log."""
    client = kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix))
    limiter = client.rate_limiter(NAME, RATE)
    logs: list[list[list[float | bool]]] = [[] for _ in range(threads)]

    def hammer(log: list[list[float | bool]]) -> None:
        while time.time() < start:
            time.sleep(0.001)
        end = start + duration
        while True:
            before = time.time()
            if before >= end:
                return
            allowed = limiter.hit(KEY).allowed
            log.append([before, time.time(), allowed])

    workers = [threading.Thread(target=hammer, args=(log,)) for log in logs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    json.dump([entry for log in logs for entry in log], sys.stdout)


if __name__ == "__main__":
    url, prefix, start, duration, threads = sys.argv[1:6]
    main(url, prefix, float(start), float(duration), int(threads))
