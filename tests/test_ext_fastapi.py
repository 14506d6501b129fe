"""kvkit.ext.fastapi: lifespan, dependencies, overrides, health routes, a real uvicorn server."""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI, Request

import kvkit
from kvkit.ext.fastapi import (
    CacheDep,
    KVKit,
    QueuesDep,
    RedisServiceDep,
    SessionsDep,
    get_redis_cache,
    get_redis_queues,
    get_redis_service,
    get_redis_sessions,
    health_router,
)
from tests.appservers import run_app

with warnings.catch_warnings():
    # Starlette >= 1.0 prefers httpx2 for its TestClient and warns when only httpx is
    # installed; either works for these tests.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

HEALTH_PATHS = ("/health/redis", "/health/redis/services", "/health/full")


def make_app(**kvkit_args) -> tuple[FastAPI, KVKit]:
    """An app with kvkit, the health router and one route per dependency."""
    app = FastAPI()
    ext = KVKit(app, **kvkit_args)
    app.include_router(health_router())

    @app.get("/deps")
    async def deps(
        cache: CacheDep, sessions: SessionsDep, queues: QueuesDep, redis: RedisServiceDep
    ) -> dict:
        await cache.set("k", "v")
        sid = await sessions.create({"a": 1})
        message_id = await queues("jobs").push({"n": 1})
        return {
            "cache": isinstance(cache, kvkit.AsyncCache),
            "sessions": isinstance(sessions, kvkit.AsyncSessionStore),
            "queue": isinstance(queues("jobs"), kvkit.AsyncQueue),
            "service": isinstance(redis, kvkit.AsyncRedisService),
            "client": id(redis),
            "cached": await redis.cache_get("k"),
            "session": await redis.session_get(sid),
            "popped": await redis.queue_pop("jobs"),
            "message_id": message_id,
        }

    return app, ext


def memory_settings() -> kvkit.Settings:
    """Settings of a private in-process store."""
    return kvkit.Settings(url="memory://")


# -- lifespan -------------------------------------------------------------------------------------
def test_lifespan_opens_and_closes_the_client():
    """The client exists while the app runs; an owned client is closed on shutdown."""
    app, ext = make_app(settings=memory_settings())
    with TestClient(app) as http:
        client = ext.client
        assert isinstance(client, kvkit.AsyncClient)
        body = http.get("/deps").json()
        assert body["client"] == id(client)
    assert ext._client is None


def test_existing_lifespan_is_wrapped_not_replaced():
    """The app's own lifespan still runs, inside kvkit's, and its state reaches requests."""
    events = []
    holder = {}

    @asynccontextmanager
    async def lifespan(app):
        # kvkit is open before the app's lifespan starts: the app can use it here.
        await holder["ext"].client.cache.set("warm", True)
        events.append("app-start")
        yield {"answer": 42}
        events.append("app-stop")

    app = FastAPI(lifespan=lifespan)
    holder["ext"] = KVKit(app, settings=memory_settings())

    @app.get("/state")
    async def state(request: Request, cache: CacheDep) -> dict:
        return {"answer": request.state.answer, "warm": await cache.get("warm")}

    with TestClient(app) as http:
        assert events == ["app-start"]
        assert http.get("/state").json() == {"answer": 42, "warm": True}
    assert events == ["app-start", "app-stop"]


def test_init_app_later_and_only_once():
    """KVKit() + init_app(app) works; a second KVKit on the same app is refused."""
    app = FastAPI()
    ext = KVKit(settings=memory_settings())
    ext.init_app(app)
    with pytest.raises(RuntimeError, match="already"):
        KVKit(app, settings=memory_settings())


def test_given_client_is_used_and_not_closed():
    """A client passed in is the app's client and survives shutdown."""
    client = kvkit.AsyncClient("memory://")
    app, ext = make_app(client=client)
    with TestClient(app) as http:
        assert http.get("/deps").json()["client"] == id(client)
    assert ext.client is client


def test_without_lifespan_the_client_is_created_on_first_use():
    """A TestClient used without `with` still gets a working client."""
    app, ext = make_app(settings=memory_settings())
    body = TestClient(app).get("/deps").json()
    assert body["cached"] == "v"
    assert ext._client is not None


# -- dependencies ---------------------------------------------------------------------------------
def test_dependencies_provide_the_services():
    """Each dependency gives the documented object; all share one client."""
    app, _ = make_app(settings=memory_settings())
    with TestClient(app) as http:
        first = http.get("/deps").json()
        second = http.get("/deps").json()
    assert first["cache"] and first["sessions"] and first["queue"] and first["service"]
    assert first["cached"] == "v"
    assert first["session"] == {"a": 1}
    assert first["popped"] == {"n": 1}
    assert first["client"] == second["client"]


def test_dependency_functions_can_be_called_directly():
    """The dependency functions return the client's services."""
    client = kvkit.AsyncClient("memory://")

    async def main():
        assert await get_redis_cache(client) is client.cache
        assert await get_redis_sessions(client) is client.sessions
        queues = await get_redis_queues(client)
        assert queues("x").name == "x"

    asyncio.run(main())


def test_dependency_override_swaps_everything():
    """Overriding get_redis_service swaps the client of every dependency and of health."""
    app, _ = make_app(settings=kvkit.Settings(url="redis://127.0.0.1:1/0"))
    override = kvkit.AsyncClient("memory://")
    app.dependency_overrides[get_redis_service] = lambda: override
    with TestClient(app) as http:
        body = http.get("/deps").json()
        assert body["client"] == id(override)
        for path in HEALTH_PATHS:
            response = http.get(path)
            assert response.status_code == 200, response.text
            assert response.json()["checks"][0]["url"] == "memory://"


def test_missing_kvkit_gives_a_clear_error():
    """Using the dependencies without KVKit(app) raises a RuntimeError that says so."""
    app = FastAPI()

    @app.get("/")
    async def index(cache: CacheDep) -> dict:
        return {}

    with TestClient(app) as http, pytest.raises(RuntimeError, match="KVKit"):
        http.get("/")


# -- configuration --------------------------------------------------------------------------------
def test_invalid_environment_fails_startup_naming_the_variable(monkeypatch):
    """A malformed KVKIT_* variable raises ConfigError at startup, naming it."""
    monkeypatch.setenv("KVKIT_CACHE_TTL", "soon")
    app, _ = make_app()
    with pytest.raises(kvkit.ConfigError, match="KVKIT_CACHE_TTL"), TestClient(app):
        pass


def test_invalid_url_fails_startup_without_the_password(monkeypatch):
    """A bad URL in the environment fails startup; the message hides the password."""
    monkeypatch.setenv("KVKIT_URL", "redis://:hunter2@localhost:6379/0?bogus=1")
    app, _ = make_app()
    with pytest.raises(kvkit.ConfigError, match="KVKIT_URL") as info, TestClient(app):
        pass
    assert "hunter2" not in str(info.value)


def test_env_prefix_reads_the_original_variables(monkeypatch):
    """env_prefix="REDIS_" reads the original system's variables."""
    monkeypatch.setenv("REDIS_CACHE_TTL", "123")
    app, ext = make_app(env_prefix="REDIS_")
    with TestClient(app):
        assert ext.client.settings.cache_ttl == 123


def test_constructor_rejects_bad_arguments():
    """settings and client together, or of the wrong type, raise ConfigError."""
    with pytest.raises(kvkit.ConfigError):
        KVKit(settings=memory_settings(), client=kvkit.AsyncClient("memory://"))
    with pytest.raises(kvkit.ConfigError):
        KVKit(settings={"url": "memory://"})  # type: ignore[arg-type]
    with pytest.raises(kvkit.ConfigError):
        KVKit(client=kvkit.Client("memory://"))  # type: ignore[arg-type]


# -- health ---------------------------------------------------------------------------------------
def check_body(body: dict, status: str) -> None:
    """The documented health body."""
    assert set(body) == {"status", "duration_ms", "checks"}
    assert body["status"] == status
    for check in body["checks"]:
        assert set(check) == {
            "name",
            "roles",
            "backend",
            "url",
            "ok",
            "latency_ms",
            "server_version",
            "error",
        }


def test_health_on_memory():
    """All three endpoints answer 200 with the documented body, not cacheable."""
    app, _ = make_app(settings=memory_settings())
    with TestClient(app) as http:
        names = {}
        for path in HEALTH_PATHS:
            response = http.get(path)
            assert response.status_code == 200
            assert response.headers["cache-control"] == "no-store"
            check_body(response.json(), "pass")
            names[path] = [c["name"] for c in response.json()["checks"]]
    assert names == {
        "/health/redis": ["server"],
        "/health/redis/services": ["cache", "sessions", "queues"],
        "/health/full": ["server", "cache", "sessions", "queues"],
    }


def test_health_router_prefix():
    """health_router(prefix=...) moves the routes."""
    app = FastAPI()
    KVKit(app, settings=memory_settings())
    app.include_router(health_router(prefix="/ops"))
    with TestClient(app) as http:
        assert http.get("/ops/health/full").status_code == 200
        assert http.get("/health/full").status_code == 404


@pytest.mark.redis
def test_health_on_live_redis(redis_url):
    """Against the suite's redis-server: 200 with the server version."""
    prefix = "t" + uuid.uuid4().hex[:12]
    app, _ = make_app(settings=kvkit.Settings(url=redis_url, prefix=prefix))
    with TestClient(app) as http:
        for path in HEALTH_PATHS:
            response = http.get(path)
            assert response.status_code == 200, response.text
            check_body(response.json(), "pass")
        server = http.get("/health/redis").json()["checks"][0]
    assert server["backend"] == "redis"
    assert server["server_version"].count(".") == 2
    assert server["latency_ms"] >= 0


@pytest.mark.redis
def test_health_on_stopped_redis_is_503_within_2s(fresh_redis_server):
    """A stopped server makes every endpoint answer 503 within 2 s; restart recovers."""
    app, _ = make_app(settings=kvkit.Settings(url=fresh_redis_server.url))
    with TestClient(app) as http:
        assert http.get("/health/full").status_code == 200
        fresh_redis_server.stop()
        for path in HEALTH_PATHS:
            start = time.monotonic()
            response = http.get(path)
            assert time.monotonic() - start < 2.0
            assert response.status_code == 503
            check_body(response.json(), "fail")
            assert all(c["error"] for c in response.json()["checks"])
        fresh_redis_server.restart()
        assert http.get("/health/full").status_code == 200


@pytest.mark.redis
def test_health_never_shows_the_password(redis_server_factory):
    """With a password in the URL the bodies show *** only, pass or fail."""
    server = redis_server_factory(password="pw-s3cr3t")
    good = kvkit.Settings(url=server.url)
    bad = kvkit.Settings(url=server.url.replace("pw-s3cr3t", "wrong-s3cr3t"))
    for settings, code in ((good, 200), (bad, 503)):
        app, _ = make_app(settings=settings)
        with TestClient(app) as http:
            for path in HEALTH_PATHS:
                response = http.get(path)
                assert response.status_code == code, response.text
                assert "s3cr3t" not in response.text
                assert ":***@" in response.text
    server.stop()
    app, _ = make_app(settings=good)
    with TestClient(app) as http:
        response = http.get("/health/full")
        assert response.status_code == 503
        assert "s3cr3t" not in response.text


# -- a real server --------------------------------------------------------------------------------
@pytest.mark.redis
async def test_uvicorn_serves_100_concurrent_requests(redis_url):
    """The example app under uvicorn: 100 concurrent cache, session and queue requests."""
    prefix = "t" + uuid.uuid4().hex[:12]
    env = {"KVKIT_URL": redis_url, "KVKIT_PREFIX": prefix}
    args = ["-m", "uvicorn", "examples.fastapi_app:app", "--port", "{port}", "--no-access-log"]
    with run_app(args, env=env) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
            # 100 concurrent writes: 40 increments, 20 sessions, 20 cache entries, 20 pushes.
            writes = (
                [http.post("/counter/hits") for _ in range(40)]
                + [http.post("/session", json={"n": i}) for i in range(20)]
                + [http.put(f"/cache/k{i}", json={"i": i}) for i in range(20)]
                + [http.post("/queue/jobs", json={"job": i}) for i in range(20)]
            )
            responses = await asyncio.gather(*writes)
            assert [r.status_code for r in responses] == [200] * 100
            assert max(r.json()["value"] for r in responses[:40]) == 40
            cookies = [r.cookies["sid"] for r in responses[40:60]]
            # 100 concurrent reads.
            reads = (
                [http.get("/session", headers={"cookie": f"sid={sid}"}) for sid in cookies]
                + [
                    http.patch("/session", json={"seen": True}, headers={"cookie": f"sid={c}"})
                    for c in cookies
                ]
                + [http.get(f"/cache/k{i}") for i in range(20)]
                + [http.post("/queue/jobs/pop") for _ in range(20)]
                + [http.get(path) for path in HEALTH_PATHS for _ in range(6)]
                + [http.post("/counter/hits") for _ in range(2)]
            )
            responses = await asyncio.gather(*reads)
            assert len(responses) == 100
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
            # Reads race the PATCHes of the same sessions: either state is fine.
            assert [r.json()["n"] for r in responses[:20]] == list(range(20))
            assert [r.json() for r in responses[20:40]] == [
                {"n": i, "seen": True} for i in range(20)
            ]
            assert [r.json()["value"] for r in responses[40:60]] == [{"i": i} for i in range(20)]
            popped = sorted(r.json()["payload"]["job"] for r in responses[60:80])
            assert popped == list(range(20))
            assert all(r.json()["status"] == "pass" for r in responses[80:98])
            assert (await http.post("/queue/jobs/pop")).json() == {"payload": None}
            assert (await http.post("/counter/hits")).json()["value"] == 43
            # Log lines and bodies never carry a secret (there is none here), nor errors.
            assert "Traceback" not in server.output()
