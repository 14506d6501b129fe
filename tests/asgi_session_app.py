"""A FastAPI app with kvkit's SessionMiddleware, run under uvicorn by the server tests.

Configured from the KVKIT_* environment like any kvkit app::

    KVKIT_URL=redis://... uvicorn tests.asgi_session_app:app --port 8000
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request

from kvkit.ext.fastapi import KVKit, SessionsDep, health_router
from kvkit.ext.starlette import SessionMiddleware, login, logout, session_id_hash

app = FastAPI()
kv = KVKit(app)
app.include_router(health_router())
app.add_middleware(SessionMiddleware, client=lambda: kv.client)


@app.get("/public")
async def public() -> dict[str, Any]:
    return {"ok": True}  # never looks at the session


@app.get("/session")
async def read(request: Request) -> dict[str, Any]:
    return dict(request.session)


@app.post("/session")
async def write(request: Request, changes: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    request.session.update(changes)
    return dict(request.session)


@app.post("/slow/{key}")
async def slow_write(key: str, request: Request) -> dict[str, Any]:
    # Loaded before this sleep, saved after it: overlapping requests of one browser.
    await asyncio.sleep(0.3)
    request.session[key] = True
    return dict(request.session)


@app.post("/clear")
async def clear(request: Request) -> dict[str, Any]:
    request.session.clear()
    return {}


@app.post("/login/{user}")
async def do_login(user: str, request: Request) -> dict[str, Any]:
    await login(request, user, meta={"device": request.headers.get("user-agent", "?")})
    request.session["user"] = user
    return dict(request.session)


@app.post("/logout")
async def do_logout(request: Request) -> dict[str, Any]:
    return {"existed": await logout(request)}


@app.get("/devices")
async def devices(request: Request, sessions: SessionsDep) -> list[dict[str, Any]]:
    user = request.session.get("user")
    if user is None:
        return []
    mine = session_id_hash(request)
    return [
        {"this_device": info.id_hash == mine, "device": info.meta.get("device")}
        for info in await sessions.user_sessions(user, details=True)
    ]


@app.post("/logout-everywhere")
async def logout_everywhere(request: Request, sessions: SessionsDep) -> dict[str, Any]:
    return {"ended": await sessions.delete_user(request.session["user"])}
