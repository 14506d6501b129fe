"""The ``kvkit`` command line (also ``python -m kvkit``).

Expected failures (bad URL, unreachable server, bad option) print one line on stderr and
exit with 1 (failure) or 2 (usage); never a traceback, never a password.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ._errors import KVKitError
from ._settings import Settings

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "url", None):
        return Settings(url=args.url)
    env_prefix = getattr(args, "env", None)
    return Settings.from_env(prefix=env_prefix or "KVKIT_")


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    """Walk through the cache, sessions and a queue with readable output."""
    from ._sync.client import Client

    settings = _settings(args) if args.url else Settings(url="memory://")
    with Client(settings=settings) as client:
        backend = client.backend("cache")
        out.write(f"kvkit demo on {backend.url.redacted} ({backend.kind})\n\n")
        cache = client.cache.namespace("demo")
        out.write("cache\n")
        cache.set("greeting", {"text": "hello", "at": time.strftime("%H:%M:%S")}, ttl=60)
        out.write(f"  set/get      greeting -> {cache.get('greeting')}\n")
        out.write(f"  ttl          greeting -> {cache.ttl('greeting'):.1f} s left\n")
        out.write(f"  incr         visits   -> {cache.incr('visits')}\n")
        calls: list[int] = []

        def slow_square() -> int:
            calls.append(1)
            return 12 * 12

        first = cache.get_or_set("square", slow_square, ttl=60)
        second = cache.get_or_set("square", slow_square, ttl=60)
        out.write(f"  get_or_set   square   -> {first}, {second} (factory ran {len(calls)}x)\n")
        for step in _extra_steps():
            step(client, out)
        cleared = cache.clear()
        out.write(f"\ncleaned up {cleared} demo keys. stats: {cache.stats.to_dict()}\n")
    return 0


def _extra_steps() -> list[Callable[[Any, TextIO], None]]:
    """Demo steps of the other services (sessions, queues), in order."""
    return []


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``kvkit`` command."""
    parser = argparse.ArgumentParser(
        prog="kvkit",
        description="kvkit: cache, sessions and queues over Redis, memory or fakeredis.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="walk through cache, sessions and a queue")
    demo.add_argument("--url", help="backend URL (default: memory://)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        code: int = args.func(args, stream)
    except KVKitError as exc:
        sys.stderr.write(f"kvkit: error: {type(exc).__name__}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("kvkit: interrupted\n")
        return 130
    return code
