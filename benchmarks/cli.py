"""``python -m benchmarks``: run the comparisons and write the report.

Usage::

    python -m benchmarks [--url URL] [--quick] [--only cache,memory,...] [--rounds N]
                         [--out DIR] [--list]

Without ``--url`` a private ``redis-server`` is started on a free port of 127.0.0.1
(``tests/servers.py``) and stopped afterwards; with ``--url`` that server is used (never
the well-known 127.0.0.1:6379 unless you pass it yourself) and every ``kvbench:*`` key the
run wrote is deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import (  # noqa: F401  (they register their rows)
    asgi_sessions,
    cache_memory,
    cache_redis,
    e2e,
    imports,
    locks,
    metrics,
    near,
    queues,
    ratelimit,
    scaling,
    sessions,
)
from .common import cleanup
from .harness import Env, Result, run_comparison, select
from .report import (
    library_versions,
    load_average,
    machine_info,
    markdown,
    write_json,
    write_png,
    write_scaling_png,
)

RESULTS = Path(__file__).resolve().parent / "results"
FULL_ROUNDS = 7
QUICK_ROUNDS = 3
QUICK_SCALE = 0.3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="kvkit vs redis-py and peer libraries: interleaved rounds, median ratios.",
    )
    parser.add_argument(
        "--url",
        help="Redis server to use (default: start a private redis-server on a free port)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROUNDS} rounds of {QUICK_SCALE:g}x the operations (< 1 min)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated groups/modes/tags: cache, memory, sessions, queues, ratelimit, "
        "locks, e2e, scaling, import, sync, async, concurrent, threads, timed, peers, many, "
        "fakeredis, asgi, metrics, near, ceiling",
    )
    parser.add_argument("--rounds", type=int, help="rounds per row (default 7, quick 3)")
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: benchmarks/results for a full run, "
        "benchmarks/results/scratch otherwise, so partial runs never replace the "
        "published results)",
    )
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    return parser


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[tuple[str | None, str]]:
    """Yield ``(url, where)``: the given URL, or a private redis-server's (None if none)."""
    if url is not None:
        yield url, "given with --url"
        return
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.servers import RedisServer, redis_available

    if not redis_available():
        print("redis-server not on PATH and no --url: Redis rows are skipped", file=sys.stderr)
        yield None, "none"
        return
    with RedisServer() as server:
        yield server.url, "private redis-server started by the benchmark"


def _server_version(url: str | None) -> str | None:
    if url is None:
        return None
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return str(client.info("server").get("redis_version"))
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """Run the selected rows; print the table; write md/json/png. Returns the exit code."""
    args = _parser().parse_args(argv)
    only = [name for name in args.only.split(",") if name.strip()]
    comparisons = select(only)
    if args.list:
        for c in comparisons:
            tags = ",".join(sorted(c.names()))
            print(f"{c.label:<52} vs {c.baseline:<46} target {c.target_text:<16} [{tags}]")
        return 0
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    if rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    scale = QUICK_SCALE if args.quick else 1.0
    partial = bool(args.quick or only or args.rounds)
    out: Path = args.out or (RESULTS / "scratch" if partial else RESULTS)

    start = time.perf_counter()
    load_start = load_average()
    results: list[Result] = []
    with _server(args.url) as (url, where):
        env = Env(url=url, quick=args.quick)
        version = _server_version(url)
        print(f"server: {url or '-'} ({where}); {len(comparisons)} rows, {rounds} rounds\n")
        try:
            for i, comparison in enumerate(comparisons, 1):
                result = run_comparison(comparison, env, rounds=rounds, scale=scale)
                results.append(result)
                _progress(i, len(comparisons), result)
        finally:
            if url is not None and args.url is not None:
                cleanup(url)
    seconds = time.perf_counter() - start

    meta: dict[str, Any] = {
        "machine": machine_info(version, where, (load_start, load_average())),
        "versions": library_versions(),
        "config": {
            "rounds": rounds,
            "quick": args.quick,
            "scale": scale,
            "only": only,
            "seconds": round(seconds, 1),
            "url": None if args.url is None else "given",
        },
    }
    report = markdown(results, meta)
    print()
    print(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(report)
    write_json(out / "results.json", results, meta)
    ratio_rows = [r for r in results if r.comparison.group != "scaling"]
    skipped = write_png(out / "ratios.png", ratio_rows, meta)
    scaling_skipped = write_scaling_png(out / "scaling.png", results, meta)
    written = ["results.md", "results.json"] + ([] if skipped else ["ratios.png"])
    written += [] if scaling_skipped else ["scaling.png"]
    print(f"wrote {', '.join(written)} to {out}")
    if skipped:
        print(f"chart skipped: {skipped}")
    print(f"total {seconds:.0f} s")
    return 0


def _progress(i: int, total: int, result: Result) -> None:
    c = result.comparison
    if result.skipped is not None:
        line = f"skipped ({result.skipped})"
    else:
        line = (
            f"{result.ratio:5.2f}x ({min(result.ratios):.2f}-{max(result.ratios):.2f}) "
            f"{result.status:<6} {result.seconds:5.1f}s"
        )
    print(f"[{i:2}/{total}] {c.label:<44} vs {c.baseline:<46} {line}", flush=True)
