"""``asgi`` rows: requests/s of a FastAPI endpoint reading one session value, under uvicorn.

One uvicorn process serves :mod:`benchmarks.asgi_app`: the same FastAPI endpoint behind
kvkit's ``SessionMiddleware`` (server-side session in Redis), behind Starlette's own
``SessionMiddleware`` (the session signed into the cookie: no server round trip at all)
and behind starsessions with its ``RedisStore``. Each browser logs in once (untimed); a
timed operation is one keep-alive ``GET`` carrying the session cookie, answered with one
value of the session. Both sides of a row run against the same server process,
interleaved, over :data:`CONNECTIONS` connections each, driven by a minimal HTTP/1.1
client (so that the client's own cost stays small next to the server's).

What each side does per request: kvkit reads the session (one Lua script that also
slides its idle TTL) and re-sends the cookie with a fresh ``Max-Age``; Starlette verifies
the cookie's HMAC and decodes it; starsessions ``GET``s the session and ``SET``s it
back (its rolling expiry writes the whole session on every response). A third row runs
kvkit's middleware on ``memory://`` against Starlette's, to show the middleware's own cost
apart from the Redis round trip.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .harness import Case, Env, Skip, register

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 8
"""Keep-alive connections per side (each carries one request at a time)."""

_COOKIE = re.compile(rb"^set-cookie:\s*session=([^;]+);", re.IGNORECASE | re.MULTILINE)


class _Connection:
    """One keep-alive HTTP/1.1 connection sending prepared requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> tuple[bytes, bytes]:
        """Send ``raw``; return (head, body) of the response."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        if match is None:
            raise RuntimeError(f"response without content-length: {head[:200]!r}")
        body = await self.reader.readexactly(int(match[1]))
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response: {head[:200]!r} {body[:200]!r}")
        return head, body


def _request(method: str, path: str, cookie: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 0"]
    if cookie is not None:
        lines.append(f"Cookie: session={cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.asgi_app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "KVBENCH_URL": url, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"uvicorn exited: {err}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("uvicorn did not start within 20 s")


async def _side(port: int, mount: str) -> tuple[Any, Any, list[_Connection], bytes]:
    """Log one browser in on ``mount``; return (op, check, connections, expected body)."""
    connections = [
        _Connection(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(CONNECTIONS)
    ]
    head, _ = await connections[0].request(_request("POST", f"/{mount}/login"))
    found = _COOKIE.search(head)
    if found is None:
        raise RuntimeError(f"/{mount}/login set no session cookie: {head!r}")
    raw = _request("GET", f"/{mount}/", found[1].decode("latin-1"))
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)
    expected = b'{"user_id":123}'

    async def op() -> bytes:
        connection = await idle.get()
        try:
            return (await connection.request(raw))[1]
        finally:
            idle.put_nowait(connection)

    async def check() -> None:
        body = await op()
        if body != expected:
            raise RuntimeError(f"/{mount}/ answered {body!r}, not {expected!r}")

    return op, check, connections, expected


async def _vs(env: Env, baseline: str, ours: str = "kvkit") -> Case:
    if env.url is None:
        raise Skip("no Redis server")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise Skip(
            "fastapi and uvicorn are needed (pip install 'kvkit-sdk[fastapi]' uvicorn)"
        ) from None
    if baseline == "starsessions":
        try:
            import starsessions  # noqa: F401
        except ImportError:
            raise Skip("starsessions is not installed (pip install starsessions)") from None
    proc, port = await asyncio.to_thread(_start_server, env.url)
    try:
        kvkit_op, kvkit_check, mine, _ = await _side(port, ours)
        base_op, base_check, theirs, _ = await _side(port, baseline)
    except BaseException:
        proc.kill()
        raise
    await kvkit_check()
    await base_check()

    async def check() -> None:
        await kvkit_check()
        await base_check()

    async def teardown() -> None:
        for connection in mine + theirs:
            connection.writer.close()
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)

    return Case(kvkit_op, base_op, teardown, check)


for _ours, _backend, _baseline, _label, _target, _ahead in (
    ("kvkit", "redis://", "cookie", "Starlette SessionMiddleware (signed cookie)", 0.9, False),
    ("kvkit", "redis://", "starsessions", "starsessions + RedisStore", 1.0, True),
    (
        "kvkit-memory",
        "memory://",
        "cookie",
        "Starlette SessionMiddleware (signed cookie)",
        None,
        False,
    ),
):
    register(
        "sessions",
        "FastAPI GET reading request.session",
        mode="concurrent",
        backend=_backend,
        baseline=_label,
        target=_target,
        ahead=_ahead,
        ops=4800,  # ~2 s per side and round: the per-round spread of this row is wide
        concurrency=CONNECTIONS,
        needs_redis=True,  # the app's other mounts need the server
        tags=("asgi", "peers"),
        note="same uvicorn process (h11/asyncio as installed), keep-alive, "
        f"{CONNECTIONS} connections per side; kvkit and starsessions on Redis",
    )(functools.partial(_vs, baseline=_baseline, ours=_ours))
