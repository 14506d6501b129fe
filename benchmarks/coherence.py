"""Near-cache coherence: how soon a near-cached reader sees another process's writes.

    python -m benchmarks.coherence [--url URL] [--writes 1000] [--flavour sync,async,plain]

A *writer process* (a kvkit client without near cache) sets one key to 1, 2, ... N, a few
milliseconds apart, and records ``time.monotonic()`` right after each write's reply. The
*reader* (this process, ``?near_cache=1000``, sync or async) reads the key in a tight
loop -- near-cache hits, never yielding to anything but the reads -- and records when it
first sees each value. ``CLOCK_MONOTONIC`` is one clock for every process of the machine,
so the two records compare directly.

Reported per flavour: for every write, the delay from the writer's reply until the reader
first saw that value *or a newer one* (p50/p99/max over all writes; a negative delay --
seen before the writer had its reply -- counts as 0), values never seen as such
(overwritten before the reader looked: their successor's sighting counts), and
*regressions*: reads that returned an older value after a newer one had been seen (must
be 0). The ``plain`` flavour is the control: the same sync reader without near cache
(every read a round trip), i.e. what the machine's scheduling alone costs. Without
``--url`` a private redis-server is started on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import kvkit

KEY = "coherence"
RESULTS = Path(__file__).resolve().parent / "results"


def _writer(url: str, prefix: str, writes: int) -> None:
    """The writer process: wait for "go", write 1..N, print the reply times as JSON."""
    with kvkit.Client(settings=kvkit.Settings(url=url, prefix=prefix)) as client:
        cache = client.cache
        cache.set(KEY, 0)
        print("ready", flush=True)
        sys.stdin.readline()
        replies = []
        for n in range(1, writes + 1):
            cache.set(KEY, n)
            replies.append(time.monotonic())
            time.sleep(random.uniform(0.004, 0.008))
        print(json.dumps(replies), flush=True)


def _start_writer(url: str, prefix: str, writes: int) -> subprocess.Popen[str]:
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.coherence", "--writer", url, prefix, str(writes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the writer process did not start")
    return proc


def _finish_writer(proc: subprocess.Popen[str]) -> list[float]:
    assert proc.stdout is not None
    replies: list[float] = json.loads(proc.stdout.readline())
    proc.wait(timeout=10)
    return replies


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def _sync_reader(url: str, prefix: str, writes: int, near: bool = True) -> dict[str, Any]:
    settings = kvkit.Settings(url=f"{url}?near_cache=1000" if near else url, prefix=prefix)
    proc = _start_writer(url, prefix, writes)
    with kvkit.Client(settings=settings) as client:
        cache = client.cache
        deadline = time.monotonic() + 5
        while near and cache.stats.near_hits == 0 and time.monotonic() < deadline:
            cache.get(KEY)
            time.sleep(0.01)
        seen: dict[int, float] = {}
        last, regressions, reads = 0, 0, 0
        _go(proc)
        deadline = time.monotonic() + writes * 0.01 + 10
        while last < writes and time.monotonic() < deadline:
            value = cache.get(KEY)
            now = time.monotonic()
            reads += 1
            if value != last:
                if value < last:
                    regressions += 1
                else:
                    seen[value] = now
                    last = value
        stats = cache.stats
        near_ratio = stats.near_hits / max(stats.hits, 1)
    return _summary(_finish_writer(proc), seen, regressions, reads, near_ratio)


def _async_reader(url: str, prefix: str, writes: int) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        settings = kvkit.Settings(url=f"{url}?near_cache=1000", prefix=prefix)
        proc = _start_writer(url, prefix, writes)
        async with kvkit.AsyncClient(settings=settings) as client:
            cache = client.cache
            deadline = time.monotonic() + 5
            while cache.stats.near_hits == 0 and time.monotonic() < deadline:
                await cache.get(KEY)
                await asyncio.sleep(0.01)
            seen: dict[int, float] = {}
            last, regressions, reads = 0, 0, 0
            _go(proc)
            deadline = time.monotonic() + writes * 0.01 + 10
            while last < writes and time.monotonic() < deadline:
                value = await cache.get(KEY)  # never yields on a near hit: the worst case
                now = time.monotonic()
                reads += 1
                if value != last:
                    if value < last:
                        regressions += 1
                    else:
                        seen[value] = now
                        last = value
            stats = cache.stats
            near_ratio = stats.near_hits / max(stats.hits, 1)
        return _summary(_finish_writer(proc), seen, regressions, reads, near_ratio)

    return asyncio.run(run())


def _summary(
    replies: list[float], seen: dict[int, float], regressions: int, reads: int, near: float
) -> dict[str, Any]:
    if not seen:
        raise RuntimeError("the reader saw no write")
    # For write n: when the reader first saw n *or a newer value* (a value overwritten
    # before the reader looked counts as seen when its successor was).
    delays = []
    first_at = float("inf")
    for n in range(len(replies), 0, -1):
        first_at = min(first_at, seen.get(n, float("inf")))
        if first_at != float("inf"):
            delays.append(max(0.0, first_at - replies[n - 1]))
    delays.sort()

    def pct(q: float) -> float:
        return delays[min(len(delays) - 1, round(q * (len(delays) - 1)))] * 1000

    return {
        "writes": len(replies),
        "seen": len(seen),
        "never_seen": len(replies) - len(seen),
        "regressions": regressions,
        "reads": reads,
        "near_hit_ratio": round(near, 4),
        "delay_ms_p50": round(statistics.median(delays) * 1000, 3),
        "delay_ms_p99": round(pct(0.99), 3),
        "delay_ms_max": round(delays[-1] * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; print and write ``results/coherence.{json,md}``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coherence")
    parser.add_argument("--url", help="Redis server (default: a private redis-server)")
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--flavour", default="sync,async,plain")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--writer", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.writer:
        _writer(args.writer[0], args.writer[1], int(args.writer[2]))
        return 0
    from .cli import _server

    results: dict[str, Any] = {}
    with _server(args.url) as (url, where):
        if url is None:
            raise SystemExit("no Redis server: redis-server not on PATH and no --url")
        for flavour in [f.strip() for f in args.flavour.split(",") if f.strip()]:
            reader = {
                "sync": _sync_reader,
                "async": _async_reader,
                # The control: the same reader without near cache (a round trip per read).
                "plain": lambda *a: _sync_reader(*a, near=False),
            }[flavour]
            prefix = "kvcoh" + uuid.uuid4().hex[:8]
            results[flavour] = reader(url, prefix, args.writes)
            print(flavour, json.dumps(results[flavour]), flush=True)
    lines = [
        "| reader | writes | seen | regressions | delay p50 | delay p99 | delay max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for flavour, r in results.items():
        lines.append(
            f"| {flavour} | {r['writes']} | {r['seen']} | {r['regressions']} | "
            f"{r['delay_ms_p50']} ms | {r['delay_ms_p99']} ms | {r['delay_ms_max']} ms |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coherence.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "coherence.md").write_text(
        "# Near-cache coherence\n\n`python -m benchmarks.coherence` "
        f"({where}; writer: another process).\n\n{table}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
