"""kvkit in a FastAPI app: cache, server-side request.session, queues, health routes.

    python examples/fastapi_app.py                           # memory://, port 8000
    python examples/fastapi_app.py redis://localhost:6379/0 --port 8001
    KVKIT_URL=redis://localhost:6379/0 uvicorn examples.fastapi_app:app

The client is configured from the KVKIT_* environment variables when the app starts
(a bad value stops the startup with a ConfigError naming the variable).

Try it::

    curl -c jar -b jar -X POST localhost:8000/login -H 'content-type: application/json' \\
         -d '{"user": "ada"}'
    curl -c jar -b jar localhost:8000/session
    curl -c jar -b jar localhost:8000/devices
    curl localhost:8000/health/full
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request

from kvkit.ext.fastapi import (
    CacheDep,
    KVKit,
    QueuesDep,
    RedisServiceDep,
    SessionsDep,
    health_router,
)
from kvkit.ext.starlette import SessionMiddleware, login, logout, session_id_hash


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The app's own lifespan: KVKit wraps it, so the client is already open here.
    app.state.started = True
    yield


app = FastAPI(title="kvkit example", lifespan=lifespan)
kv = KVKit(app)  # Settings.from_env("KVKIT_") when the app starts
app.include_router(health_router())
# Server-side request.session: Starlette's SessionMiddleware parameters, minus secret_key.
# The client is looked up per request (KVKit creates it at startup).
app.add_middleware(SessionMiddleware, client=lambda: kv.client, cookie_name="sid")


# -- cache ----------------------------------------------------------------------------------------
@app.put("/cache/{key}")
async def cache_put(key: str, value: Annotated[Any, Body()], cache: CacheDep) -> dict[str, Any]:
    await cache.set(key, value, ttl=300)
    return {"key": key}


@app.get("/cache/{key}")
async def cache_get(key: str, cache: CacheDep) -> dict[str, Any]:
    value = await cache.get(key)
    if value is None:
        raise HTTPException(404, "no such key")
    return {"key": key, "value": value}


@app.post("/counter/{name}")
async def counter(name: str, cache: CacheDep) -> dict[str, Any]:
    return {"name": name, "value": await cache.incr(f"counter:{name}")}


# -- sessions: request.session, stored server-side (the cookie holds only an id) ------------------
@app.post("/session")
async def session_replace(
    data: Annotated[dict[str, Any], Body()], request: Request
) -> dict[str, Any]:
    request.session.clear()
    request.session.update(data)  # saved when the response starts; the cookie is set then
    return dict(request.session)


@app.get("/session")
async def session_get(request: Request) -> dict[str, Any]:
    if not request.session:
        raise HTTPException(401, "no session")
    return dict(request.session)


@app.patch("/session")
async def session_update(
    changes: Annotated[dict[str, Any], Body()], request: Request
) -> dict[str, Any]:
    if not request.session:
        raise HTTPException(401, "no session")
    request.session.update(changes)  # only the changed items are written (atomic merge)
    return dict(request.session)


@app.post("/login")
async def do_login(data: Annotated[dict[str, str], Body()], request: Request) -> dict[str, Any]:
    user = data["user"]  # a real app checks a password here
    # New session id (no fixation), same data, bound to the user (logout everywhere works).
    await login(request, user, meta={"device": request.headers.get("user-agent", "unknown")})
    request.session["user"] = user
    return dict(request.session)


@app.get("/devices")
async def devices(request: Request, sessions: SessionsDep) -> list[dict[str, Any]]:
    """The "your devices" page: every live session of the user, this one marked."""
    user = request.session.get("user")
    if user is None:
        raise HTTPException(401, "not logged in")
    this = session_id_hash(request)
    return [
        {
            "device": info.meta.get("device"),
            "signed_in": info.created.isoformat(),
            "last_seen": info.last_seen.isoformat(),
            "this_device": info.id_hash == this,
        }
        for info in await sessions.user_sessions(user, details=True)
    ]


@app.post("/logout")
async def do_logout(request: Request) -> dict[str, Any]:
    return {"logged_out": await logout(request)}


@app.post("/logout-everywhere")
async def logout_everywhere(request: Request, sessions: SessionsDep) -> dict[str, Any]:
    user = request.session.get("user")
    if user is None:
        raise HTTPException(401, "not logged in")
    return {"sessions_deleted": await sessions.delete_user(user)}


# -- queues ---------------------------------------------------------------------------------------
@app.post("/queue/{name}")
async def queue_push(
    name: str, payload: Annotated[Any, Body()], queues: QueuesDep
) -> dict[str, Any]:
    return {"id": await queues(name).push(payload)}


@app.post("/queue/{name}/pop")
async def queue_pop(name: str, redis: RedisServiceDep, timeout: float = 0) -> dict[str, Any]:
    # The original RedisService method: pop and acknowledge in one call.
    return {"payload": await redis.queue_pop(name, timeout=timeout)}


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="kvkit FastAPI example")
    parser.add_argument("url", nargs="?", help="backend URL (default: $KVKIT_URL or memory://)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.url:
        os.environ["KVKIT_URL"] = args.url  # read by KVKit when the app starts
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
