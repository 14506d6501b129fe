"""The app the ``asgi`` session rows serve with uvicorn: one FastAPI app per session layer.

One uvicorn process (configured by ``KVBENCH_URL``) mounts three identical FastAPI apps
that differ only in their session middleware:

* ``/kvkit``: ``kvkit.ext.starlette.SessionMiddleware`` (server-side, kvkit sessions);
* ``/kvkit-memory``: the same on ``memory://`` (no network: the middleware's own cost);
* ``/cookie``: Starlette's ``SessionMiddleware`` (the data signed into the cookie);
* ``/starsessions``: starsessions' ``SessionMiddleware`` + ``SessionAutoloadMiddleware``
  with its ``RedisStore`` (rolling expiry, as kvkit slides; mounted when installed).

Each has ``POST /login`` (stores :data:`benchmarks.sessions.SESSION`, untimed) and
``GET /`` (the timed request: reads one value of the session).
"""

from __future__ import annotations

import os
from typing import Any

import redis.asyncio
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as CookieSessionMiddleware
from starlette.routing import Mount

import kvkit
from kvkit.ext.starlette import SessionMiddleware

from .common import PREFIX
from .sessions import SESSION

LIFETIME = 14 * 24 * 3600
"""Cookie Max-Age and server-side lifetime on every side (Starlette's default)."""


def _endpoints(app: FastAPI) -> FastAPI:
    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        request.session.update(SESSION)
        return {"ok": True}

    @app.get("/")
    async def read(request: Request) -> dict[str, Any]:
        return {"user_id": request.session.get("user_id")}

    return app


def build(url: str) -> Starlette:
    """The three mounted apps, on the Redis server at ``url``."""
    client = kvkit.AsyncClient(settings=kvkit.Settings(url=url, prefix=PREFIX))
    ours = _endpoints(FastAPI())
    ours.add_middleware(SessionMiddleware, client=client, max_age=LIFETIME)
    cookie = _endpoints(FastAPI())
    cookie.add_middleware(CookieSessionMiddleware, secret_key="kvbench", max_age=LIFETIME)
    local = _endpoints(FastAPI())
    local.add_middleware(SessionMiddleware, client=kvkit.AsyncClient("memory://"), max_age=LIFETIME)
    routes = [
        Mount("/kvkit", app=ours),
        Mount("/kvkit-memory", app=local),
        Mount("/cookie", app=cookie),
    ]
    try:
        from starsessions import SessionAutoloadMiddleware
        from starsessions import SessionMiddleware as StarSessionMiddleware
        from starsessions.stores.redis import RedisStore
    except ImportError:
        pass
    else:
        stars = _endpoints(FastAPI())
        store = RedisStore(
            connection=redis.asyncio.Redis.from_url(url), prefix=f"{PREFIX}:starsessions:"
        )
        stars.add_middleware(SessionAutoloadMiddleware)
        stars.add_middleware(
            StarSessionMiddleware,
            store=store,
            lifetime=LIFETIME,
            rolling=True,
            cookie_https_only=False,
        )
        routes.append(Mount("/starsessions", app=stars))
    return Starlette(routes=routes)


_URL = os.environ.get("KVBENCH_URL")
if not _URL:
    raise SystemExit("benchmarks.asgi_app needs KVBENCH_URL (the benchmark's Redis server)")
app = build(_URL)
