"""Take docs/dashboard.png: a short workload on a Redis, the dashboard mounted beside it.

    python scripts/dashboard_screenshot.py redis://127.0.0.1:PORT/0 [--seconds 150]

Runs producers and consumers on four queues (one whose handler fails, so dead letters
pile up, one without consumers, one with delayed messages) plus cache and session traffic
on one AsyncClient, serves that client's dashboard with uvicorn in the same event loop,
then photographs it with headless Chromium. Everything lives under a random prefix and is
deleted afterwards. Point it at a throwaway server: never at one that holds real data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import uvicorn

import kvkit
from kvkit.ext.dashboard import asgi_app

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("emails", "webhooks", "thumbnails", "reports")


async def produce(client: kvkit.AsyncClient, stop: asyncio.Event) -> None:
    started = time.monotonic()
    n = 0
    while not stop.is_set():
        elapsed = time.monotonic() - started
        rate = 12 + 9 * math.sin(elapsed / 14)  # messages per second, in waves
        await client.queue("emails").push({"to": f"user{n}@example.com"})
        if n % 3 == 0:
            await client.queue("webhooks", max_deliveries=2).push({"event": "order.paid", "n": n})
        if n % 4 == 0:
            await client.queue("thumbnails").push({"image": n})
        if n % 25 == 0:
            await client.queue("reports").push({"report": "daily"}, delay=3600)
        n += 1
        await asyncio.sleep(1 / rate)


async def consume(client: kvkit.AsyncClient, stop: asyncio.Event) -> None:
    async def send(message: kvkit.Message) -> None:
        await asyncio.sleep(random.uniform(0.01, 0.05))

    async def hook(message: kvkit.Message) -> None:
        if message.payload["n"] % 4 == 0:
            raise ConnectionError("https://hooks.example.com answered 502 Bad Gateway")

    await asyncio.gather(
        client.queue("emails").consume(send, stop=stop, concurrency=3),
        client.queue("webhooks", max_deliveries=2).consume(hook, stop=stop),
    )


async def browse(client: kvkit.AsyncClient, stop: asyncio.Event) -> None:
    cache = client.cache.namespace("pages")
    while not stop.is_set():
        page = random.randint(1, 40)
        await cache.get_or_set(f"page:{page}", lambda: {"html": "<p>...</p>"}, ttl=5)
        sid = await client.sessions.create({"cart": []}, ttl=60)
        await client.sessions.get(sid)
        await client.sessions.delete(sid)
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main(url: str, seconds: float, out: Path) -> None:
    prefix = "shot" + secrets.token_hex(4)
    token = secrets.token_urlsafe(12)
    client = kvkit.AsyncClient(settings=kvkit.Settings(url=url, prefix=prefix))
    port = free_port()
    config = uvicorn.Config(
        asgi_app(client, token=token), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    stop = asyncio.Event()
    work = [asyncio.create_task(job(client, stop)) for job in (produce, consume, browse)]
    try:
        await asyncio.sleep(seconds)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise SystemExit("chromium is not installed")
        with tempfile.TemporaryDirectory() as profile:
            shot = [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--window-size=1280,1560",
                "--virtual-time-budget=2000",
                f"--screenshot={out}",
                f"http://127.0.0.1:{port}/?token={token}&queue=webhooks",
            ]
            await asyncio.to_thread(subprocess.run, shot, check=True, capture_output=True)
        print(f"wrote {out}")
    finally:
        stop.set()
        for task in work:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(task, 5)
        for name in NAMES:
            await client.queue(name).purge(dead=True)
        await client.cache.clear()
        server.should_exit = True
        await serving
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a throwaway Redis, e.g. redis://127.0.0.1:6390/0")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    logging.getLogger("kvkit.queue").setLevel(logging.CRITICAL)  # the failing hooks, on purpose
    asyncio.run(main(args.url, args.seconds, args.out))
