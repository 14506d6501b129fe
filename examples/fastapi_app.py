"""kvkit in a FastAPI app: dependencies for cache, sessions and queues, health routes.

    python examples/fastapi_app.py                           # memory://, port 8000
    python examples/fastapi_app.py redis://localhost:6379/0 --port 8001
    KVKIT_URL=redis://localhost:6379/0 uvicorn examples.fastapi_app:app

The client is configured from the KVKIT_* environment variables when the app starts
(a bad value stops the startup with a ConfigError naming the variable).

Try it::

    curl -c jar -b jar -X POST localhost:8000/session -H 'content-type: application/json' \\
         -d '{"user": "ada"}'
    curl -c jar -b jar localhost:8000/session
    curl localhost:8000/health/full
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Cookie, FastAPI, HTTPException, Response

from kvkit.ext.fastapi import (
    CacheDep,
    KVKit,
    QueuesDep,
    RedisServiceDep,
    SessionsDep,
    health_router,
)

SESSION_COOKIE = "sid"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The app's own lifespan: KVKit wraps it, so the client is already open here.
    app.state.started = True
    yield


app = FastAPI(title="kvkit example", lifespan=lifespan)
KVKit(app)  # Settings.from_env("KVKIT_") when the app starts
app.include_router(health_router())


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


# -- sessions (an id cookie; the data stays on the server) ----------------------------------------
@app.post("/session")
async def session_create(
    data: Annotated[dict[str, Any], Body()], response: Response, sessions: SessionsDep
) -> dict[str, Any]:
    session_id = await sessions.create(data)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax")
    return data


@app.get("/session")
async def session_get(
    sessions: SessionsDep, sid: Annotated[str | None, Cookie()] = None
) -> dict[str, Any]:
    data = None if sid is None else await sessions.get(sid)
    if data is None:
        raise HTTPException(401, "no session")
    return data


@app.patch("/session")
async def session_update(
    changes: Annotated[dict[str, Any], Body()],
    sessions: SessionsDep,
    sid: Annotated[str | None, Cookie()] = None,
) -> dict[str, Any]:
    data = None if sid is None else await sessions.update(sid, changes)
    if data is None:
        raise HTTPException(401, "no session")
    return data


@app.post("/session/rotate")
async def session_rotate(
    response: Response, sessions: SessionsDep, sid: Annotated[str | None, Cookie()] = None
) -> dict[str, Any]:
    new_id = None if sid is None else await sessions.rotate(sid)  # e.g. on login
    if new_id is None:
        raise HTTPException(401, "no session")
    response.set_cookie(SESSION_COOKIE, new_id, httponly=True, samesite="lax")
    return {"rotated": True}


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
