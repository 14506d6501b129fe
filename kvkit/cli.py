"""The ``kvkit`` command line (also ``python -m kvkit``).

``kvkit demo``, ``kvkit check``, ``kvkit queue stats|dead|requeue|purge NAME``,
``kvkit limits peek|reset NAME KEY``, ``kvkit locks list``, ``kvkit bench``,
``kvkit dashboard``, ``kvkit migrate-sessions`` and ``kvkit --version``.

Where the backend comes from (every command):

* ``--url URL``: every role on ``URL`` (``--prefix`` sets the key prefix, default ``kvkit``);
* ``--env PREFIX``: :meth:`kvkit.Settings.from_env` with that prefix. A missing trailing
  ``_`` is added (``--env REDIS`` reads ``REDIS_URL``, ``REDIS_CACHE_URL``, …). At least one
  of ``{PREFIX}URL``, ``{PREFIX}CACHE_URL``, ``{PREFIX}SESSION_URL``, ``{PREFIX}QUEUE_URL``
  must be set: an unset or mistyped prefix is a usage error, never a silent ``memory://``;
* neither: the ``KVKIT_*`` variables. ``demo`` and ``bench`` then default to ``memory://``;
  ``check``, ``queue``, ``limits``, ``locks``, ``dashboard`` and ``migrate-sessions``
  refuse to run on nothing (they would inspect a fresh, empty in-process store and report
  on it).

Exit codes: 0 success, 1 failure (a failed check, an unreachable server), 2 usage error
(bad option, URL, variable or missing configuration), 130 interrupted. Expected failures
print one line on stderr: never a traceback, a password or a session id. A closed stdout
(``kvkit check | head -3``) ends the command quietly with exit code 1.

The tools leave nothing behind and never touch application data: ``demo`` and ``bench``
use a random namespace, random user ids and a random queue name, write everything with a
TTL of at most 60 s and delete it all afterwards; ``check`` runs the health probes (see
:mod:`kvkit._async.health`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TextIO

import attrs

from . import __version__
from ._errors import ConfigError, InvalidArgument, KVKitError
from ._settings import ROLES, Settings
from ._ttl import check_seconds

__all__ = ["build_parser", "main"]

_URL_VARIABLES = ("URL", "CACHE_URL", "SESSION_URL", "QUEUE_URL")
TOOL_TTL = 60
"""Seconds anything the tools write may live if they are killed before cleaning up."""
CHECK_TIMEOUT = 10.0
"""Default ``--timeout`` of ``kvkit check``: seconds all its checks may take together."""


class _Fail(Exception):
    """An expected failure: message for stderr, exit code 1."""


class _Usage(Exception):
    """A usage error: message for stderr, exit code 2."""


# -- settings --------------------------------------------------------------------------------
def _env_prefix(raw: str) -> str:
    prefix = raw.strip()
    if not prefix:
        raise _Usage("--env needs a variable prefix, e.g. --env KVKIT_ or --env REDIS_")
    return prefix if prefix.endswith("_") else prefix + "_"


def _settings(args: argparse.Namespace, *, need_config: bool) -> Settings:
    """The settings chosen by ``--url`` / ``--env`` / ``KVKIT_*`` (see the module docstring).

    Raises:
        _Usage: ``--url`` is empty, or the chosen prefix configures no URL (for commands
            with ``need_config``, or whenever ``--env`` was given).
        ConfigError: a URL or variable is malformed.
    """
    if args.url is not None:
        if not args.url.strip():
            raise _Usage("--url is empty")
        settings = Settings(url=args.url)
    else:
        explicit = args.env is not None
        prefix = _env_prefix(args.env) if explicit else "KVKIT_"
        settings = Settings.from_env(prefix=prefix)  # ConfigError names a bad variable
        if not any(os.environ.get(prefix + name, "").strip() for name in _URL_VARIABLES):
            names = ", ".join(prefix + name for name in _URL_VARIABLES)
            if explicit:
                raise _Usage(f"--env {args.env.strip()}: none of {names} is set")
            if need_config:
                raise _Usage(
                    f"no backend configured: pass --url URL or --env PREFIX, or set one of "
                    f"{names} (use --url memory:// for the in-process store)"
                )
    if args.prefix is not None:
        settings = attrs.evolve(settings, prefix=args.prefix)
    return settings


def _client(settings: Settings) -> Any:
    from ._sync.client import Client

    return Client(settings=settings)


def _drop_queue(client: Any, queue: Any) -> None:
    """Delete every key of ``queue``, a queue this tool created under a random name."""
    queue.purge(dead=True)
    try:
        redis = client.redis("queues")
    except ConfigError:
        return  # an in-process store: it ends with this process
    from ._tools import unlink_prefixed

    # By pattern, so that keys the purge keeps (the empty stream, counters, retry records)
    # go too, whatever the queue's key layout.
    unlink_prefixed(redis, queue.key, client.backend("queues").url.redacted)


@contextlib.contextmanager
def _cleanup(what: str) -> Iterator[None]:
    """Run a cleanup step; report (not raise) a backend failure, which must not hide another."""
    try:
        yield
    except KVKitError as exc:
        sys.stderr.write(f"kvkit: warning: could not clean up {what}: {type(exc).__name__}\n")


# -- demo ----------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace, out: TextIO) -> int:
    """Walk through the cache, sessions and a queue with readable output."""
    token = secrets.token_hex(4)
    with _client(_settings(args, need_config=False)) as client:
        backend = client.backend("cache")
        out.write(f"kvkit demo on {backend.url.redacted} ({backend.kind})\n")
        # Names of its own: the demo may run against production and must not touch an
        # application's data.
        cache = client.cache.namespace(f"kvkit-demo-{token}")
        user = f"kvkit-demo-user-{token}"
        queue = client.queue(f"kvkit-demo-{token}", visibility_timeout=5)
        sessions = client.sessions
        new_sid: str | None = None
        cleared = 0
        try:
            out.write("\n1. cache\n")
            cache.set("greeting", {"text": "hello", "at": time.strftime("%H:%M:%S")}, TOOL_TTL)
            out.write(f"   set/get      greeting -> {cache.get('greeting')}\n")
            out.write(f"   ttl          greeting -> {cache.ttl('greeting'):.1f} s left\n")
            out.write(f"   incr         visits   -> {cache.incr('visits', ttl=TOOL_TTL)}\n")
            calls: list[int] = []

            def slow_square() -> int:
                calls.append(1)
                return 12 * 12

            first = cache.get_or_set("square", slow_square, ttl=TOOL_TTL)
            second = cache.get_or_set("square", slow_square, ttl=TOOL_TTL)
            out.write(
                f"   get_or_set   square   -> {first}, {second} (factory ran {len(calls)}x)\n"
            )

            out.write("\n2. sessions\n")
            sid = sessions.create({"cart": []}, user_id=user, ttl=TOOL_TTL)
            out.write(f"   create       -> a new id of {len(sid)} chars (never printed)\n")
            sessions.update(sid, {"cart": ["book"]})
            out.write(f"   update/get   -> {sessions.get(sid)}\n")
            new_sid = sessions.rotate(sid)
            out.write(
                f"   rotate       -> old id valid: {sessions.exists(sid)}, "
                f"new id valid: {new_sid is not None and sessions.exists(new_sid)}\n"
            )
            out.write(f"   delete_user  -> logged out {sessions.delete_user(user)} session(s)\n")

            out.write("\n3. queue\n")
            ids = queue.push_many([{"to": "ada@example.com"}, {"to": "bob@example.com"}])
            out.write(f"   push_many    -> {len(ids)} messages\n")
            handled: list[Any] = []
            processed = queue.consume(lambda m: handled.append(m.payload["to"]), max_messages=2)
            out.write(f"   consume      -> processed {processed}: {', '.join(handled)}\n")
            stats = queue.stats()
            out.write(
                f"   stats        -> ready={stats.ready} pending={stats.pending} "
                f"dead={stats.dead}\n"
            )
        finally:
            with _cleanup("the demo's cache namespace"):
                cleared = cache.clear()
            with _cleanup("the demo's sessions"):
                sessions.delete_user(user)
                if new_sid is not None:
                    sessions.delete(new_sid)
            with _cleanup("the demo's queue"):
                _drop_queue(client, queue)
        out.write(f"\ncleaned up ({cleared} cache keys). cache stats: {cache.stats.to_dict()}\n")
    return 0


# -- check -----------------------------------------------------------------------------------
_CHECK_WIDTH = 22


def _row(role: str, name: str, ok: bool, ms: float | None, detail: str) -> dict[str, Any]:
    return {"role": role, "check": name, "ok": ok, "ms": ms, "detail": detail}


async def _run_checks(
    client: Any, timeout: float, emit: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Run every check of ``kvkit check`` within ``timeout`` seconds; ``emit`` each row.

    A check returns ``None`` (or a health result) when it passed, or a string saying what
    went wrong. When the time is up, the running check fails as timed out and the rest
    are reported as not run: a server that accepts connections and never answers costs
    ``timeout`` seconds, not every operation's timeouts and retries one after another.
    """
    from ._async.health import service_checks
    from ._async.probe import ping_check

    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []

    async def record(role: str, name: str, call: Callable[[], Awaitable[Any]]) -> None:
        remaining = deadline - time.monotonic()
        start = time.perf_counter()
        if remaining <= 0:
            row = _row(role, name, False, None, f"not run: --timeout {timeout:g} s used up")
        else:
            try:
                result = await asyncio.wait_for(call(), remaining)
            except KVKitError as exc:
                row = _row(role, name, False, None, f"{type(exc).__name__}: {exc}")
            except asyncio.TimeoutError:
                row = _row(role, name, False, None, f"timed out (--timeout {timeout:g} s)")
            else:
                ms = round((time.perf_counter() - start) * 1000.0, 3)
                failed = result if isinstance(result, str) else ""
                row = _row(role, name, not failed, ms, failed)
        rows.append(row)
        emit(row)

    # Each role's server is written through a cache of its own, reached by a client on
    # that role's URL alone (tools use public interfaces, never a backend's drivers); with
    # cache_fail_open off, so a failing server fails the check instead of reading as a miss.
    caches: dict[int, Any] = {}  # a check client per distinct backend
    views: dict[str, Any] = {}  # role -> the probe namespace of its backend's check cache
    probe = f"check-{secrets.token_hex(8)}"  # a fresh namespace: touches no application key
    for role in ROLES:
        backend = client.backend(role)
        if id(backend) not in caches:
            settings = attrs.evolve(
                client.settings,
                url=client.settings.role_url(role),
                cache_url=None,
                session_url=None,
                queue_url=None,
                cache_fail_open=False,
            )
            caches[id(backend)] = type(client)(settings=settings)
        views[role] = caches[id(backend)].cache.namespace(probe)
    try:
        for role in ROLES:
            backend = client.backend(role)
            await record(role, "ping", functools.partial(ping_check, backend))

            async def set_get(view: Any = views[role], key: str = role) -> Any:
                await view.set(key, "ok", TOOL_TTL)
                return None if await view.get(key) == "ok" else "read back something else"

            await record(role, "set/get", set_get)

        # Role isolation: roles on different URLs must not see each other's keys.
        shared = all(client.backend(role) is client.backend("cache") for role in ROLES)
        for role in ROLES:
            for other in ROLES:
                other_backend = client.backend(other)
                if other == role or other_backend is client.backend(role):
                    continue

                async def isolated(view: Any = views[other], role: str = role) -> Any:
                    seen = await view.get(role)
                    return None if seen is None else f"a key written through {role} is visible here"

                await record(other, f"isolated from {role}", isolated)
        if shared:
            row = _row(
                "cache",
                "isolation",
                True,
                None,
                "all roles share one server+db; isolated by key prefix",
            )
            rows.append(row)
            emit(row)

        for base, call in service_checks(client):
            await record(base["roles"][0], "service round trip", call)

        remaining = deadline - time.monotonic()
        if remaining > 0:
            for role in ROLES:
                with contextlib.suppress(KVKitError, asyncio.TimeoutError):
                    await asyncio.wait_for(views[role].delete(role), 1)
    finally:
        for check_client in caches.values():
            # Closing connections to a server that never answers must not hang either.
            with contextlib.suppress(KVKitError, asyncio.TimeoutError):
                await asyncio.wait_for(check_client.aclose(), 1.0)
    return rows


async def _check_async(
    client: Any, timeout: float, emit: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    try:
        return await _run_checks(client, timeout, emit)
    finally:
        # Closing connections to a server that never answers must not hang either.
        with contextlib.suppress(KVKitError, asyncio.TimeoutError):
            await asyncio.wait_for(client.aclose(), 1.0)


def _check(args: argparse.Namespace, out: TextIO) -> int:
    """Verify every role: PING, SET/GET, isolation, a round trip through each service."""
    from ._async.client import AsyncClient

    client = AsyncClient(settings=_settings(args, need_config=True))
    urls = {role: client.backend(role).url.redacted for role in ROLES}

    def emit(row: dict[str, Any]) -> None:
        if args.json:
            return
        ms = "" if row["ms"] is None else f"{row['ms']:.2f}"
        line = f"{row['role']:9} {row['check']:{_CHECK_WIDTH}}  {'ok' if row['ok'] else 'FAIL':6}"
        line += f"  {ms:>8}"
        if row["detail"]:
            line += f"  {row['detail']}"
        out.write(line + "\n")
        out.flush()  # streamed: each row appears as soon as its check is done

    if not args.json:
        for role in ROLES:
            out.write(f"{role:9} {urls[role]}\n")
        out.write(f"\n{'role':9} {'check':{_CHECK_WIDTH}}  {'result':6}  {'ms':>8}\n")
        out.flush()
    rows = asyncio.run(_check_async(client, args.timeout, emit))
    ok = all(row["ok"] for row in rows)
    if args.json:
        report = {"status": "pass" if ok else "fail", "urls": urls, "checks": rows}
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(f"\n{'all checks passed' if ok else 'some checks FAILED'}\n")
    return 0 if ok else 1


# -- queue ---------------------------------------------------------------------------------
def _queue(args: argparse.Namespace, out: TextIO) -> int:
    """Inspect a queue and handle its dead letters."""
    with _client(_settings(args, need_config=True)) as client:
        queue = client.queue(args.name)
        if args.action == "stats":
            data = queue.stats().to_dict()
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


# -- limits ----------------------------------------------------------------------------------
def _limits(args: argparse.Namespace, out: TextIO) -> int:
    """Show or reset one key of a rate limiter (on the cache role's backend).

    Only the hits are stored, not the limiter's rate, so ``peek`` takes the rate (and
    algorithm, burst) the application uses: the same hits read under another rate would
    give another answer. ``reset`` needs none of it.
    """
    if args.action == "peek" and args.rate is None:
        raise _Usage("limits peek needs --rate: the rate the application uses (not stored)")
    with _client(_settings(args, need_config=True)) as client:
        try:
            # reset deletes the key whatever the rate: any valid one will do.
            limiter = client.rate_limiter(
                args.name, args.rate or "1/second", algorithm=args.algorithm, burst=args.burst
            )
            if args.action == "reset":
                limiter.reset(args.key)
                out.write(f"reset {args.key!r} of rate limiter {args.name!r}\n")
                return 0
            decision = limiter.peek(args.key)
        except InvalidArgument as exc:
            raise _Usage(str(exc)) from None
        data = {
            "name": args.name,
            "key": args.key,
            "rate": str(limiter.rate),
            "algorithm": limiter.algorithm,
            **attrs.asdict(decision),
        }
        if args.json:
            out.write(json.dumps(data, indent=2) + "\n")
        else:
            for field, value in data.items():
                out.write(f"{field:12} {value}\n")
    return 0


# -- locks -----------------------------------------------------------------------------------
def _shown(text: str) -> str:
    """``text`` with unprintable characters escaped: names were written by others."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _locks(args: argparse.Namespace, out: TextIO) -> int:
    """List the locks held now: name, owner, fencing token, remaining ttl."""
    with _client(_settings(args, need_config=True)) as client:
        where = client.backend("cache").url.redacted
        held = client.locks()
    if args.json:
        out.write(json.dumps([info.to_dict() for info in held], indent=2) + "\n")
        return 0
    prefix = client.settings.prefix
    if not held:
        out.write(f"no locks held under prefix {prefix!r} on {where}\n")
        return 0
    out.write(f"{len(held)} lock(s) held under prefix {prefix!r} on {where}\n\n")
    names = [_shown(info.name) for info in held]
    width = max(4, *(len(name) for name in names))
    out.write(f"{'name':{width}}  {'token':>8}  {'ttl (s)':>9}  owner\n")
    for name, info in zip(names, held, strict=True):
        token = "?" if info.token is None else str(info.token)
        ttl = "no expiry" if math.isinf(info.ttl) else f"{info.ttl:.1f}"
        owner = _shown(info.owner) or "(not written by kvkit)"
        out.write(f"{name:{width}}  {token:>8}  {ttl:>9}  {owner}\n")
    return 0


# -- bench -----------------------------------------------------------------------------------
def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def _bench(args: argparse.Namespace, out: TextIO) -> int:
    """Per-operation latency (p50/p99) and throughput against the configured backend."""
    settings = _settings(args, need_config=False)
    tty = out.isatty() if hasattr(out, "isatty") else False
    token = secrets.token_hex(4)
    with _client(settings) as client:
        cache = client.cache.namespace(f"kvkit-bench-{token}")
        queue = client.queue(f"kvkit-bench-{token}")
        value = {"id": 123, "name": "alice", "roles": ["admin", "dev"], "active": True}
        keys = [f"k{i}" for i in range(100)]
        sid: str | None = None
        results = []
        try:
            cache.set_many(dict.fromkeys(keys, value), ttl=TOOL_TTL)
            sid = client.sessions.create({"user": "alice"}, ttl=TOOL_TTL)
            counter = iter(range(10**12))
            operations: list[tuple[str, Callable[[], Any]]] = [
                ("cache.set", lambda: cache.set("k0", value, ttl=TOOL_TTL)),
                ("cache.get", lambda: cache.get("k0")),
                ("cache.get_many(100)", lambda: cache.get_many(keys)),
                ("sessions.get", lambda: client.sessions.get(sid)),
                ("sessions.update", lambda: client.sessions.update(sid, {"n": next(counter)})),
                ("queue.push", lambda: queue.push(value)),
                ("queue.pop+ack", lambda: queue.ack(queue.pop())),
            ]
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
            with _cleanup("the benchmark's cache namespace"):
                cache.clear()
            with _cleanup("the benchmark's session"):
                if sid is not None:
                    client.sessions.delete(sid)
            with _cleanup("the benchmark's queue"):
                _drop_queue(client, queue)
        backend = client.backend("cache")
    out.write(f"kvkit bench on {backend.url.redacted} ({backend.kind}), {args.ops} ops each\n\n")
    out.write(f"{'operation':22} {'p50 (us)':>10} {'p99 (us)':>10} {'ops/s':>10}\n")
    for name, p50, p99, rate in results:
        out.write(f"{name:22} {p50 * 1e6:10.1f} {p99 * 1e6:10.1f} {rate:10,.0f}\n")
    return 0


# -- dashboard -------------------------------------------------------------------------------
def _dashboard(args: argparse.Namespace, out: TextIO) -> int:
    """Serve the dashboard until interrupted (uvicorn; 127.0.0.1 unless --host says otherwise)."""
    from ._async.client import AsyncClient
    from .ext.dashboard import LOOPBACK_HOSTS, asgi_app, require_uvicorn, run

    settings = _settings(args, need_config=True)
    try:
        require_uvicorn()  # before the URL is shown: nothing would serve it
    except ImportError as exc:
        raise _Fail(str(exc)) from None
    # Like a notebook server: without --token a fresh one is made and shown once, in the
    # URL to open; a page opened without it is read-only.
    token = None if args.read_only else args.token or secrets.token_urlsafe(18)
    loopback = args.host in LOOPBACK_HOSTS or args.host.startswith("127.")
    client = AsyncClient(settings=settings)
    app = asgi_app(
        client,
        token=token,
        allowed_hosts=LOOPBACK_HOSTS | {args.host} if loopback else None,
        refresh=args.refresh,
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/"
    out.write(f"kvkit dashboard of {client.backend('queues').url.redacted}\n")
    if token is None:
        out.write(f"open {url} (read-only)\n")
    elif args.token:
        out.write(f"open {url}?token=<your --token> (without it the page is read-only)\n")
    else:
        out.write(f"open {url}?token={token}\n(without the token the page is read-only)\n")
    out.flush()
    try:
        run(app, args.host, args.port)
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        raise _Fail(f"could not serve on {args.host}:{args.port} (see the message above)") from exc
    finally:
        asyncio.run(client.aclose())
    return 0


# -- migrate-sessions --------------------------------------------------------------------------
def _migrate_sessions(args: argparse.Namespace, out: TextIO) -> int:
    """Copy the original system's sessions (JSON strings) into kvkit's legacy namespace."""
    from ._migrate import migrate_sessions

    source = args.source
    if args.source_env is not None:
        source = os.environ.get(args.source_env, "")
        if not source.strip():
            raise _Usage(f"--from-env {args.source_env}: the variable is not set")
    elif not source.strip():
        raise _Usage("--from is empty")
    pattern: str = args.pattern
    literal = pattern[:-1]
    if not literal or not pattern.endswith("*") or any(c in literal for c in "*?[]\\"):
        raise _Usage("--pattern must be a literal key prefix followed by one '*', e.g. 'session:*'")
    settings = _settings(args, need_config=True)
    with _client(settings) as target:
        report = migrate_sessions(source, target, prefix=pattern[:-1], dry_run=args.dry_run)
    verb = "would migrate" if args.dry_run else "migrated"
    out.write(
        f"{verb} {report.migrated} session(s); skipped {report.undecodable} undecodable, "
        f"{report.expired} expired meanwhile, {report.invalid} with an unusable id\n"
    )
    return 0


# -- entry point ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(2, f"kvkit: error: {message}\n")


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {raw!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    try:
        return check_seconds(value, "the number of seconds", error=ConfigError)
    except ConfigError as exc:  # argparse reports only its own error type as a usage error
        raise argparse.ArgumentTypeError(str(exc)) from None


def _source_options() -> _Parser:
    """``--url``, ``--env`` and ``--prefix``, shared by every command."""
    common = _Parser(add_help=False)
    group = common.add_argument_group("backend (default: KVKIT_* variables)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--url", help="backend URL for every role")
    source.add_argument(
        "--env",
        metavar="PREFIX",
        help="read settings from PREFIX* variables, e.g. REDIS_ (a missing '_' is added)",
    )
    group.add_argument("--prefix", help="key prefix of the application (default: kvkit)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``kvkit`` command."""
    parser = _Parser(
        prog="kvkit",
        description="kvkit: cache, sessions, queues and locks over Redis, memory or fakeredis.",
    )
    parser.add_argument("--version", action="version", version=f"kvkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = [_source_options()]

    demo = sub.add_parser("demo", parents=common, help="walk through cache, sessions and a queue")
    demo.set_defaults(func=_demo)

    check = sub.add_parser(
        "check", parents=common, help="verify every role: PING, SET/GET, isolation, services"
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=CHECK_TIMEOUT,
        metavar="SECONDS",
        help=f"time all checks may take together (default {CHECK_TIMEOUT:g})",
    )
    check.set_defaults(func=_check)

    queue = sub.add_parser("queue", parents=common, help="inspect a queue and its dead letters")
    queue.add_argument("action", choices=["stats", "dead", "requeue", "purge"])
    queue.add_argument("name", help="queue name")
    queue.add_argument("--json", action="store_true", help="machine-readable output (stats, dead)")
    queue.add_argument(
        "--count", type=_positive_int, default=100, help="dead letters to show (default 100)"
    )
    queue.add_argument("--ids", nargs="*", help="requeue only these dead-letter ids")
    queue.add_argument("--yes", action="store_true", help="purge without asking")
    queue.add_argument("--dead", action="store_true", help="purge: also the dead-letter queue")
    queue.set_defaults(func=_queue)

    limits = sub.add_parser(
        "limits", parents=common, help="peek at or reset one key of a rate limiter"
    )
    limits.add_argument("action", choices=["peek", "reset"])
    limits.add_argument("name", help="the rate limiter's name")
    limits.add_argument("key", help="the key (user id, address, ...) to inspect or reset")
    limits.add_argument(
        "--rate", help="peek: the limiter's rate, e.g. 5/minute (rates are not stored)"
    )
    limits.add_argument(
        "--algorithm",
        choices=["sliding_window", "fixed_window", "token_bucket"],
        default="sliding_window",
        help="peek: the limiter's algorithm (default sliding_window)",
    )
    limits.add_argument("--burst", type=int, help="peek: the token bucket's burst")
    limits.add_argument("--json", action="store_true", help="machine-readable output (peek)")
    limits.set_defaults(func=_limits)
    locks = sub.add_parser("locks", parents=common, help="list the locks held now")
    locks.add_argument("action", choices=["list"])
    locks.add_argument("--json", action="store_true", help="machine-readable output")
    locks.set_defaults(func=_locks)

    bench = sub.add_parser(
        "bench", parents=common, help="latency (p50/p99) and throughput per operation"
    )
    bench.add_argument(
        "--ops", type=_positive_int, default=1000, help="operations per row (default 1000)"
    )
    bench.set_defaults(func=_bench)

    dashboard = sub.add_parser(
        "dashboard", parents=common, help="web page: queues, dead letters, cache, latency, health"
    )
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    dashboard.add_argument("--port", type=_port, default=8765, help="port (default 8765)")
    secret = dashboard.add_mutually_exclusive_group()
    secret.add_argument(
        "--token",
        help="secret the actions (requeue, purge) need; default: a random one, shown at start",
    )
    secret.add_argument(
        "--read-only", action="store_true", help="no token at all: nobody can act from the page"
    )
    dashboard.add_argument(
        "--refresh",
        type=_positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="seconds between page refreshes (default 2)",
    )
    dashboard.set_defaults(func=_dashboard)

    migrate = sub.add_parser(
        "migrate-sessions",
        parents=common,
        help="import the original system's sessions (session:<id> JSON) as legacy sessions",
    )
    origin = migrate.add_mutually_exclusive_group(required=True)
    origin.add_argument("--from", dest="source", metavar="URL", help="the old sessions' server")
    origin.add_argument(
        "--from-env",
        dest="source_env",
        metavar="VARIABLE",
        help="read the old server's URL from this variable (keeps the password out of ps)",
    )
    migrate.add_argument(
        "--pattern", default="session:*", help="keys of the old sessions (default 'session:*')"
    )
    migrate.add_argument("--dry-run", action="store_true", help="count only; write nothing")
    migrate.set_defaults(func=_migrate_sessions)
    return parser


def _quiet_stdout() -> None:
    """After a broken pipe: send the rest of stdout to /dev/null, so exit does not fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    stream = out if out is not None else sys.stdout
    try:
        args = parser.parse_args(argv)  # prints --help / --version: a broken pipe here too
        code: int = args.func(args, stream)
        stream.flush()
    except BrokenPipeError:
        # The reader went away (`kvkit check | head -3`): stop quietly, no traceback.
        _quiet_stdout()
        return 1
    except (ConfigError, _Usage) as exc:
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
