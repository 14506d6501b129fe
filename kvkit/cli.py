"""The ``kvkit`` command line (also ``python -m kvkit``).

``kvkit demo``, ``kvkit check``, ``kvkit queue stats|dead|requeue|purge NAME`` and
``kvkit bench``. Without ``--url``, commands read :meth:`kvkit.Settings.from_env`.

Expected failures (bad URL or option, unreachable server, failed check) print one line on
stderr and exit with 1 (failure) or 2 (usage); never a traceback, never a password.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ._errors import ConfigError, KVKitError
from ._settings import Settings

__all__ = ["build_parser", "main"]

ROLES = ("cache", "sessions", "queues")


class _Fail(Exception):
    """An expected failure: message for stderr, exit code 1."""


def _settings(args: argparse.Namespace) -> Settings:
    """``--url``, else the environment (whose default URL is ``memory://``)."""
    url = getattr(args, "url", None)
    if url:
        return Settings(url=url)
    return Settings.from_env(prefix=getattr(args, "env", None) or "KVKIT_")


def _client(settings: Settings) -> Any:
    from ._sync.client import Client

    return Client(settings=settings)


# -- demo ----------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace, out: TextIO) -> int:
    """Walk through the cache, sessions and a queue with readable output."""
    with _client(_settings(args)) as client:
        backend = client.backend("cache")
        out.write(f"kvkit demo on {backend.url.redacted} ({backend.kind})\n")

        out.write("\n1. cache\n")
        cache = client.cache.namespace("demo")
        cache.set("greeting", {"text": "hello", "at": time.strftime("%H:%M:%S")}, ttl=60)
        out.write(f"   set/get      greeting -> {cache.get('greeting')}\n")
        out.write(f"   ttl          greeting -> {cache.ttl('greeting'):.1f} s left\n")
        out.write(f"   incr         visits   -> {cache.incr('visits')}\n")
        calls: list[int] = []

        def slow_square() -> int:
            calls.append(1)
            return 12 * 12

        first = cache.get_or_set("square", slow_square, ttl=60)
        second = cache.get_or_set("square", slow_square, ttl=60)
        out.write(f"   get_or_set   square   -> {first}, {second} (factory ran {len(calls)}x)\n")

        out.write("\n2. sessions\n")
        sessions = client.sessions
        sid = sessions.create({"cart": []}, user_id="ada")
        out.write(f"   create       -> id {sid[:12]}… ({len(sid)} chars)\n")
        sessions.update(sid, {"cart": ["book"]})
        out.write(f"   update/get   -> {sessions.get(sid)}\n")
        new_sid = sessions.rotate(sid)
        out.write(
            f"   rotate       -> old id valid: {sessions.exists(sid)}, "
            f"new id valid: {new_sid is not None and sessions.exists(new_sid)}\n"
        )
        out.write(f"   delete_user  -> logged out {sessions.delete_user('ada')} session(s)\n")

        out.write("\n3. queue\n")
        queue = client.queue("kvkit-demo", visibility_timeout=5)
        ids = queue.push_many([{"to": "ada@example.com"}, {"to": "bob@example.com"}])
        out.write(f"   push_many    -> {len(ids)} messages\n")
        handled: list[Any] = []
        processed = queue.consume(lambda m: handled.append(m.payload["to"]), max_messages=2)
        out.write(f"   consume      -> processed {processed}: {', '.join(handled)}\n")
        stats = queue.stats()
        out.write(
            f"   stats        -> ready={stats.ready} pending={stats.pending} dead={stats.dead}\n"
        )
        queue.purge()
        cleared = cache.clear()
        out.write(f"\ncleaned up ({cleared} cache keys). cache stats: {cache.stats.to_dict()}\n")
    return 0


# -- check -----------------------------------------------------------------------------------
def _timed(func: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = func()
    return result, (time.perf_counter() - start) * 1000.0


def _run_checks(client: Any) -> list[dict[str, Any]]:
    """Every check of ``kvkit check``: a list of rows (role, check, ok, ms, detail)."""
    rows: list[dict[str, Any]] = []

    def record(role: str, name: str, func: Callable[[], Any]) -> Any:
        try:
            result, ms = _timed(func)
        except KVKitError as exc:
            rows.append(
                {
                    "role": role,
                    "check": name,
                    "ok": False,
                    "ms": None,
                    "detail": f"{type(exc).__name__}: {exc}",
                }
            )
            return None
        ok = result is not False
        detail = "" if result in (True, None) else str(result)
        rows.append(
            {
                "role": role,
                "check": name,
                "ok": bool(ok),
                "ms": round(ms, 3),
                "detail": "" if ok else (detail or "failed"),
            }
        )
        return result

    token = secrets.token_hex(8)
    probe_prefix = f"{client.settings.prefix}:check:{token}:"
    for role in ROLES:
        backend = client.backend(role)
        driver = backend.cache_driver()
        record(role, "ping", backend.ping)
        key = probe_prefix + role

        def set_get(driver: Any = driver, key: str = key) -> bool:
            driver.set(key, b"ok", 30_000)
            return bool(driver.get(key) == b"ok")

        record(role, "set/get", set_get)

    # Role isolation: roles on different URLs must not see each other's keys.
    for role in ROLES:
        backend = client.backend(role)
        for other in ROLES:
            if other == role:
                continue
            other_backend = client.backend(other)
            if other_backend is backend:
                continue

            def isolated(other_backend: Any = other_backend, role: str = role) -> Any:
                seen = other_backend.cache_driver().get(probe_prefix + role)
                return True if seen is None else f"key written through {role} is visible here"

            record(other, f"isolated from {role}", isolated)
    for role in ROLES:
        if all(client.backend(o) is client.backend(role) for o in ROLES):
            rows.append(
                {
                    "role": role,
                    "check": "isolation",
                    "ok": True,
                    "ms": None,
                    "detail": "all roles share one server+db; isolated by key prefix",
                }
            )
            break

    def cache_round_trip() -> bool:
        cache = client.cache.namespace("__kvkit_check__")
        cache.set(token, {"n": 1}, ttl=30)
        ok: bool = cache.get(token) == {"n": 1}
        cache.delete(token)
        return ok

    def sessions_round_trip() -> bool:
        sid = client.sessions.create({"check": token}, ttl=30)
        ok = client.sessions.get(sid) == {"check": token}
        return ok and bool(client.sessions.delete(sid))

    def queue_round_trip() -> bool:
        queue = client.queue("__kvkit_check__")
        queue.push({"check": token})
        for _ in range(1000):  # skip leftovers of an earlier interrupted check
            message = queue.pop(timeout=2)
            if message is None:
                return False
            queue.ack(message)
            if message.payload == {"check": token}:
                return True
        return False

    record("cache", "service round trip", cache_round_trip)
    record("sessions", "service round trip", sessions_round_trip)
    record("queues", "service round trip", queue_round_trip)
    for role in ROLES:
        driver = client.backend(role).cache_driver()
        with contextlib.suppress(KVKitError):
            driver.delete(probe_prefix + role)
    return rows


def _check(args: argparse.Namespace, out: TextIO) -> int:
    """Verify every role: PING, SET/GET, isolation, a round trip through each service."""
    settings = _settings(args)
    with _client(settings) as client:
        rows = _run_checks(client)
        urls = {role: client.backend(role).url.redacted for role in ROLES}
    ok = all(row["ok"] for row in rows)
    if args.json:
        out.write(
            json.dumps({"status": "pass" if ok else "fail", "urls": urls, "checks": rows}, indent=2)
            + "\n"
        )
        return 0 if ok else 1
    for role in ROLES:
        out.write(f"{role:9} {urls[role]}\n")
    out.write("\n")
    width = max(len(r["check"]) for r in rows)
    out.write(f"{'role':9} {'check':{width}}  {'result':6}  {'ms':>8}\n")
    for row in rows:
        ms = "" if row["ms"] is None else f"{row['ms']:.2f}"
        result = "ok" if row["ok"] else "FAIL"
        line = f"{row['role']:9} {row['check']:{width}}  {result:6}  {ms:>8}"
        if row["detail"]:
            line += f"  {row['detail']}"
        out.write(line + "\n")
    out.write(f"\n{'all checks passed' if ok else 'some checks FAILED'}\n")
    return 0 if ok else 1


# -- queue ---------------------------------------------------------------------------------
def _queue(args: argparse.Namespace, out: TextIO) -> int:
    """Inspect a queue and handle its dead letters."""
    with _client(_settings(args)) as client:
        queue = client.queue(args.name)
        if args.action == "stats":
            stats = queue.stats()
            data = stats.to_dict() if hasattr(stats, "to_dict") else dict(vars(stats))
            if args.json:
                out.write(json.dumps(data, indent=2, default=str) + "\n")
            else:
                for field, value in data.items():
                    out.write(f"{field:18} {value}\n")
        elif args.action == "dead":
            messages = queue.dead_letters(args.count)
            if args.json:
                out.write(
                    json.dumps([_message_dict(m) for m in messages], indent=2, default=str) + "\n"
                )
            elif not messages:
                out.write(f"no dead letters in {args.name!r}\n")
            else:
                for m in messages:
                    shown = json.dumps(m.payload, default=str)[:200]
                    out.write(
                        f"{m.id}  deliveries={m.deliveries}  reason={m.reason}  payload={shown}\n"
                    )
        elif args.action == "requeue":
            count = queue.requeue_dead(args.ids or None)
            out.write(f"requeued {count} dead letter(s) of {args.name!r}\n")
        elif args.action == "purge":
            if not args.yes:
                if not sys.stdin.isatty():
                    raise _Fail("refusing to purge without confirmation: pass --yes")
                answer = input(f"purge every message of queue {args.name!r}? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    out.write("aborted\n")
                    return 1
            count = queue.purge(dead=args.dead)
            out.write(f"purged {count} message(s) from {args.name!r}\n")
    return 0


def _message_dict(message: Any) -> dict[str, Any]:
    return {
        "id": message.id,
        "payload": message.payload,
        "deliveries": message.deliveries,
        "enqueued_at": message.enqueued_at,
        "reason": message.reason,
    }


# -- bench -----------------------------------------------------------------------------------
def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def _bench(args: argparse.Namespace, out: TextIO) -> int:
    """Per-operation latency (p50/p99) and throughput against the configured backend."""
    settings = _settings(args)
    if args.ops < 1:
        raise _Fail("--ops must be at least 1")
    tty = out.isatty() if hasattr(out, "isatty") else False
    with _client(settings) as client:
        cache = client.cache.namespace(f"__kvkit_bench_{secrets.token_hex(4)}__")
        value = {"id": 123, "name": "alice", "roles": ["admin", "dev"], "active": True}
        keys = [f"k{i}" for i in range(100)]
        cache.set_many(dict.fromkeys(keys, value), ttl=300)
        queue = client.queue(f"__kvkit_bench_{secrets.token_hex(4)}__")
        sid = client.sessions.create({"user": "alice"}, ttl=300)
        counter = iter(range(10**12))
        operations: list[tuple[str, Callable[[], Any]]] = [
            ("cache.set", lambda: cache.set("k0", value, ttl=300)),
            ("cache.get", lambda: cache.get("k0")),
            ("cache.get_many(100)", lambda: cache.get_many(keys)),
            ("sessions.get", lambda: client.sessions.get(sid)),
            ("sessions.update", lambda: client.sessions.update(sid, {"n": next(counter)})),
            ("queue.push", lambda: queue.push(value)),
            ("queue.pop+ack", lambda: queue.ack(queue.pop())),
        ]
        results = []
        try:
            for name, op in operations:
                op()  # warm up (connections, scripts)
                samples: list[float] = []
                started = time.perf_counter()
                for i in range(args.ops):
                    t0 = time.perf_counter()
                    op()
                    samples.append(time.perf_counter() - t0)
                    if tty and (i % 50 == 0 or i == args.ops - 1):
                        done = (i + 1) * 30 // args.ops
                        out.write(
                            f"\r{name:20} [{'#' * done}{'.' * (30 - done)}] {i + 1}/{args.ops}"
                        )
                        out.flush()
                total = time.perf_counter() - started
                if tty:
                    out.write("\r" + " " * 70 + "\r")
                samples.sort()
                results.append(
                    (name, _percentile(samples, 0.5), _percentile(samples, 0.99), args.ops / total)
                )
        finally:
            cache.clear()
            queue.purge()
            client.sessions.delete(sid)
        backend = client.backend("cache")
    out.write(f"kvkit bench on {backend.url.redacted} ({backend.kind}), {args.ops} ops each\n\n")
    out.write(f"{'operation':22} {'p50 (us)':>10} {'p99 (us)':>10} {'ops/s':>10}\n")
    for name, p50, p99, rate in results:
        out.write(f"{name:22} {p50 * 1e6:10.1f} {p99 * 1e6:10.1f} {rate:10,.0f}\n")
    return 0


# -- entry point ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(2, f"kvkit: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``kvkit`` command."""
    parser = _Parser(
        prog="kvkit",
        description="kvkit: cache, sessions and queues over Redis, memory or fakeredis.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="walk through cache, sessions and a queue")
    demo.add_argument("--url", help="backend URL (default: KVKIT_URL, else memory://)")
    demo.set_defaults(func=_demo)

    check = sub.add_parser("check", help="verify every role: PING, SET/GET, isolation, services")
    source = check.add_mutually_exclusive_group()
    source.add_argument("--url", help="backend URL for every role")
    source.add_argument(
        "--env", metavar="PREFIX", help="read settings from PREFIX* variables (e.g. REDIS_)"
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=_check)

    queue = sub.add_parser("queue", help="inspect a queue and handle dead letters")
    queue.add_argument("action", choices=["stats", "dead", "requeue", "purge"])
    queue.add_argument("name", help="queue name")
    queue.add_argument("--url", help="backend URL (default: from KVKIT_* variables)")
    queue.add_argument("--json", action="store_true", help="machine-readable output (stats, dead)")
    queue.add_argument("--count", type=int, default=100, help="dead letters to show (default 100)")
    queue.add_argument("--ids", nargs="*", help="requeue only these dead-letter ids")
    queue.add_argument("--yes", action="store_true", help="purge without asking")
    queue.add_argument("--dead", action="store_true", help="purge: also the dead-letter queue")
    queue.set_defaults(func=_queue)

    bench = sub.add_parser("bench", help="latency (p50/p99) and throughput per operation")
    bench.add_argument("--url", help="backend URL (default: KVKIT_URL, else memory://)")
    bench.add_argument("--ops", type=int, default=1000, help="operations per row (default 1000)")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        code: int = args.func(args, stream)
    except ConfigError as exc:
        sys.stderr.write(f"kvkit: error: {exc}\n")
        return 2
    except KVKitError as exc:
        sys.stderr.write(f"kvkit: error: {type(exc).__name__}: {exc}\n")
        return 1
    except _Fail as exc:
        sys.stderr.write(f"kvkit: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("kvkit: interrupted\n")
        return 130
    return code
