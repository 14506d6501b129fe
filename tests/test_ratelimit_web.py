"""Rate limits in web apps: FastAPI's RateLimit and Flask's rate_limit, on real servers."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from flask import Flask

import kvkit
from kvkit.ext.fastapi import KVKit, RateLimit, get_redis_service
from kvkit.ext.flask import KVKit as FlaskKVKit
from kvkit.ext.flask import rate_limit
from tests.appservers import run_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def check_headers(response: httpx.Response, limit: int, remaining: int) -> None:
    """The RateLimit-* headers are whole seconds/units with the expected values."""
    assert all(response.headers[name].isdigit() for name in HEADERS)
    assert int(response.headers["ratelimit-limit"]) == limit
    assert int(response.headers["ratelimit-remaining"]) == remaining
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 60


def check_denied(response: httpx.Response, limit: int) -> None:
    """A denial: 429, the JSON body, an integer Retry-After, the RateLimit-* headers."""
    assert response.status_code == 429
    assert response.json() == {"detail": "rate limit exceeded"}
    assert response.headers["retry-after"].isdigit()
    assert 1 <= int(response.headers["retry-after"]) <= 60
    check_headers(response, limit, 0)


def check_app(base: str) -> None:
    """Drive either app (same routes, same answers) over HTTP."""
    with httpx.Client(base_url=base, timeout=10) as http:
        for remaining in (2, 1, 0):
            response = http.get("/limited")
            assert response.status_code == 200 and response.json() == {"ok": True}
            assert "retry-after" not in response.headers
            check_headers(response, 3, remaining)
        check_denied(http.get("/limited"), 3)
        for user in ("ada", "bob"):
            assert http.get("/per-user", headers={"x-user": user}).status_code == 200
            check_headers(http.get("/per-user", headers={"x-user": user}), 4, 0)
            check_denied(http.get("/per-user", headers={"x-user": user}), 4)


def concurrent_hits(base: str, path: str, n: int) -> list[int]:
    """Status codes of ``n`` concurrent requests."""

    def get(_: int) -> int:
        with httpx.Client(base_url=base, timeout=10) as http:
            return http.get(path, headers={"x-user": "crowd"}).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(get, range(n)))


@pytest.mark.redis
def test_fastapi_under_uvicorn(redis_url):
    """Headers, 429 and Retry-After through a real uvicorn server on real Redis."""
    env = {"KVKIT_URL": redis_url, "KVKIT_PREFIX": "t" + uuid.uuid4().hex[:12]}
    args = ["-m", "uvicorn", "tests.ratelimit_apps:fastapi_app", "--port", "{port}"]
    with run_app([*args, "--no-access-log"], env=env) as server:
        check_app(server.base)
        codes = concurrent_hits(server.base, "/per-user", 12)
        assert sorted(codes) == [200] * 2 + [429] * 10


@pytest.mark.redis
def test_flask_under_a_threaded_wsgi_server(redis_url):
    """Headers, 429 and Retry-After through a threaded Werkzeug server on real Redis."""
    env = {"KVKIT_URL": redis_url, "KVKIT_PREFIX": "t" + uuid.uuid4().hex[:12]}
    with run_app(["-m", "tests.ratelimit_apps", "{port}"], env=env) as server:
        check_app(server.base)
        codes = concurrent_hits(server.base, "/per-user", 12)
        assert sorted(codes) == [200] * 2 + [429] * 10


# -- FastAPI details (in process) -----------------------------------------------------------------
async def api_key(request: Request) -> str:
    """An async key function: the request's API key."""
    return request.headers["x-api-key"]


# Module level: the endpoint's string annotations are resolved in the module's globals.
BY_API_KEY = RateLimit("2/minute", key=api_key)


def test_fastapi_routes_get_their_own_counter_unless_named():
    """One RateLimit on two routes counts each route apart; a shared name shares it."""
    app = FastAPI()
    KVKit(app, settings=kvkit.Settings(url="memory://"))
    per_route = RateLimit("1/minute")
    shared = RateLimit("1/minute", name="shared")

    @app.get("/a", dependencies=[Depends(per_route)])
    async def a() -> dict:
        return {}

    @app.get("/b", dependencies=[Depends(per_route)])
    async def b() -> dict:
        return {}

    @app.get("/c", dependencies=[Depends(shared)])
    async def c() -> dict:
        return {}

    @app.get("/d", dependencies=[Depends(shared)])
    async def d() -> dict:
        return {}

    with TestClient(app) as http:
        assert [http.get(p).status_code for p in ("/a", "/b", "/a")] == [200, 200, 429]
        assert [http.get(p).status_code for p in ("/c", "/d")] == [200, 429]


def test_fastapi_async_key_override_and_state():
    """An async key function works; overriding get_redis_service moves the limiter too."""
    app = FastAPI()
    KVKit(app, settings=kvkit.Settings(url="memory://"))

    @app.get("/x")
    async def x(request: Request, decision: Annotated[Any, Depends(BY_API_KEY)]) -> dict:
        assert request.state.rate_limit is decision
        return {"remaining": decision.remaining}

    other = kvkit.AsyncClient("memory://")
    with TestClient(app) as http:
        assert http.get("/x", headers={"x-api-key": "k1"}).json() == {"remaining": 1}
        assert http.get("/x", headers={"x-api-key": "k2"}).json() == {"remaining": 1}
        app.dependency_overrides[get_redis_service] = lambda: other
        assert http.get("/x", headers={"x-api-key": "k1"}).json() == {"remaining": 1}
    asyncio.run(other.aclose())


def test_fastapi_fail_open_and_errors():
    """fail_open admits requests while Redis is down; without it the error propagates."""
    app = FastAPI()
    KVKit(app, settings=kvkit.Settings(url="redis://127.0.0.1:1/0", retries=0))

    @app.get("/open", dependencies=[Depends(RateLimit("1/minute", fail_open=True))])
    async def opened() -> dict:
        return {}

    @app.get("/closed", dependencies=[Depends(RateLimit("1/minute"))])
    async def closed() -> dict:
        return {}

    with TestClient(app, raise_server_exceptions=False) as http:
        assert [http.get("/open").status_code for _ in range(3)] == [200] * 3
        assert http.get("/closed").status_code == 500


@pytest.mark.parametrize(
    ("rate", "options"),
    [("5/week", {}), ("5/minute", {"cost": 6}), ("5/minute", {"name": "a:b"}),
     ("5/minute", {"algorithm": "nope"}), ("5/minute", {"burst": 1})],
)  # fmt: skip
def test_bad_definitions_fail_at_import_time(rate, options):
    """RateLimit and rate_limit refuse bad rates, costs, names and algorithms at once."""
    with pytest.raises(kvkit.InvalidArgument):
        RateLimit(rate, **options)
    with pytest.raises(kvkit.InvalidArgument):
        rate_limit(rate, **options)(lambda: None)


# -- Flask details (in process) -------------------------------------------------------------------
def test_flask_view_does_not_run_when_denied():
    """A denied request never reaches the view; flask.g.rate_limit holds the decision."""
    from flask import g

    app = Flask(__name__)
    FlaskKVKit(app, client=kvkit.Client("memory://"))
    calls = []

    @app.post("/work")
    @rate_limit("2/minute", key=lambda request: request.headers.get("x-user", "-"))
    def work():
        calls.append(g.rate_limit.remaining)
        return {"done": True}

    http = app.test_client()
    codes = [http.post("/work", headers={"x-user": "u"}).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    assert calls == [1, 0]
    assert http.post("/work", headers={"x-user": "v"}).status_code == 200


# -- other Redis deployments ----------------------------------------------------------------------
@pytest.mark.sentinel
@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "token_bucket"])
def test_limiters_through_sentinel(sentinel_setup, algorithm):
    """redis+sentinel:// runs the same scripts on the master the Sentinels name."""
    settings = kvkit.Settings(url=sentinel_setup.url, prefix="t" + uuid.uuid4().hex[:12])
    with kvkit.Client(settings=settings) as client:
        limiter = client.rate_limiter("api", "2/hour", algorithm=algorithm)
        assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
        assert limiter.peek("k").remaining == 0
        limiter.reset("k")
        assert limiter.peek("k").remaining == 2
