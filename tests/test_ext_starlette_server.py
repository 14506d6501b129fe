"""kvkit.ext.starlette under a real uvicorn, with a real HTTP client keeping cookies.

On memory:// and on the suite's redis-server; then on a server of its own that is stopped
mid-run: routes that do not need the session keep answering, writes answer 503, health
answers 503, and everything works again after a restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.appservers import run_app

APP = ["-m", "uvicorn", "tests.asgi_session_app:app", "--port", "{port}", "--no-access-log"]
TARGETS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=TARGETS)
def env(request) -> dict[str, str]:
    """The app's environment: memory://, or the suite's Redis under a prefix of its own."""
    if request.param == "memory":
        return {"KVKIT_URL": "memory://"}
    prefix = "t" + uuid.uuid4().hex[:12]
    return {"KVKIT_URL": request.getfixturevalue("redis_url"), "KVKIT_PREFIX": prefix}


def browser(server, agent: str = "browser-1") -> httpx.AsyncClient:
    """A client that keeps cookies like a browser."""
    return httpx.AsyncClient(base_url=server.base, timeout=10, headers={"user-agent": agent})


async def test_sessions_under_uvicorn(env):
    """Anonymous, write/read, concurrent writes, login + devices + logout everywhere, clear."""
    with run_app(APP, env=env) as server:
        async with browser(server) as http, browser(server, "browser-2") as other:
            response = await http.get("/public")
            assert response.json() == {"ok": True}
            assert "set-cookie" not in response.headers
            assert (await http.get("/session")).json() == {}
            assert "session" not in http.cookies
            assert (await http.post("/session", json={"a": 1})).json() == {"a": 1}
            sid = http.cookies["session"]
            assert (await http.get("/session")).json() == {"a": 1}
            # Two overlapping requests of one browser, each setting its own key.
            first, second = await asyncio.gather(http.post("/slow/x"), http.post("/slow/y"))
            assert first.json() == {"a": 1, "x": True}
            assert second.json() == {"a": 1, "y": True}
            assert (await http.get("/session")).json() == {"a": 1, "x": True, "y": True}
            # Login rotates the id and keeps the data; two devices; log out everywhere.
            await http.post("/login/ada")
            assert http.cookies["session"] != sid
            assert (await http.get("/session")).json() == {
                "a": 1,
                "x": True,
                "y": True,
                "user": "ada",
            }
            await other.post("/login/ada")
            devices = (await http.get("/devices")).json()
            assert sorted(d["device"] for d in devices) == ["browser-1", "browser-2"]
            assert [d["device"] for d in devices if d["this_device"]] == ["browser-1"]
            assert (await other.post("/logout-everywhere")).json() == {"ended": 2}
            assert (await http.get("/session")).json() == {}
            assert "session" not in http.cookies  # the stale cookie was expired
            # Clear and logout.
            await http.post("/session", json={"b": 2})
            await http.post("/clear")
            assert "session" not in http.cookies
            await http.post("/login/bob")
            assert (await http.post("/logout")).json() == {"existed": True}
            assert (await http.get("/session")).json() == {}
        output = server.output()
        assert "Traceback" not in output
        assert sid not in output


@pytest.mark.redis
async def test_redis_stopped_mid_run(fresh_redis_server):
    """Redis down: public 200, reads empty (200), writes 503, health 503; restart recovers."""
    env = {"KVKIT_URL": fresh_redis_server.url}
    with run_app(APP, env=env) as server:
        async with browser(server) as http:
            assert (await http.post("/session", json={"a": 1})).status_code == 200
            sid = http.cookies["session"]
            assert (await http.get("/health/full")).status_code == 200
            fresh_redis_server.stop()
            response = await http.get("/public")
            assert response.status_code == 200
            response = await http.get("/session")
            assert (response.status_code, response.json()) == (200, {})
            assert http.cookies["session"] == sid  # kept: the store may come back
            response = await http.post("/session", json={"b": 2})
            assert response.status_code == 503
            assert response.json() == {"detail": "the session could not be saved; please try again"}
            start = time.monotonic()
            assert (await http.get("/health/full")).status_code == 503
            assert time.monotonic() - start < 2.0  # the health routes' bound, cookie or not
            fresh_redis_server.restart()  # without persistence: the session is gone
            assert (await http.post("/session", json={"c": 3})).json() == {"c": 3}
            assert http.cookies["session"] != sid
            assert (await http.get("/session")).json() == {"c": 3}
        output = server.output()
        assert "the session could not be read" in output
        assert "the session could not be saved" in output
        assert "Traceback" not in output
        assert sid not in output
