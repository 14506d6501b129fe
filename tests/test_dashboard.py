"""The dashboard: JSON overview, actions (token, CSRF, hosts), mounted in FastAPI and Flask."""

from __future__ import annotations

import json
import sys
import uuid

import httpx
import pytest

import kvkit
from kvkit import cli
from kvkit._dashboard_base import Request, action_refusal, host_allowed, token_ok
from kvkit.ext.dashboard import asgi_app, wsgi_app
from tests.appservers import run_app

TOKEN = "tok-" + uuid.uuid4().hex


def _fill(client, *, with_dead=True):
    """Three queues, one of them holding a dead letter whose handler failed."""
    client.queue("emails").push_many([{"to": "ada"}, {"to": "bob"}])
    client.queue("reports").push("weekly", delay=60)
    failing = client.queue("webhooks", max_deliveries=1)
    failing.push({"url": "https://example.com/hook"})
    if with_dead:

        def handler(message):
            raise ConnectionError("endpoint said 502")

        failing.consume(handler, max_messages=1)


def _request(method="GET", path="/", *, headers=None, body=b"", query=None):
    return Request(
        method=method,
        path=path,
        root="",
        query=query or {},
        headers={"host": "127.0.0.1:8765", **(headers or {})},
        body=body,
    )


# -- the rules ------------------------------------------------------------------------------------
def test_token_and_csrf_rules():
    """Actions need the token; a foreign Origin or a cross-site fetch is refused first."""
    assert token_ok("abc", "abc") and not token_ok("abc", "abd") and not token_ok(None, "x")
    assert not token_ok("abc", None) and not token_ok("abc", "")
    form = {"content-type": "application/x-www-form-urlencoded"}
    good = _request("POST", headers=form, body=f"token={TOKEN}".encode())
    assert action_refusal(good, TOKEN) is None
    assert action_refusal(good, None) is not None  # no token configured: read-only
    assert action_refusal(_request("POST", headers=form, body=b"token=nope"), TOKEN)
    header = _request("POST", headers={"x-kvkit-token": TOKEN})
    assert action_refusal(header, TOKEN) is None
    for bad in (
        {"origin": "http://evil.example"},
        {"origin": "https://127.0.0.1:8765"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ):
        attempt = _request("POST", headers={**bad, "x-kvkit-token": TOKEN})
        assert action_refusal(attempt, TOKEN) is not None, bad
    same = _request("POST", headers={"origin": "http://127.0.0.1:8765", "x-kvkit-token": TOKEN})
    assert action_refusal(same, TOKEN) is None


def test_host_check():
    """With allowed hosts, another Host header (DNS rebinding) is refused."""
    allowed = frozenset({"127.0.0.1", "localhost", "::1"})
    for host, ok in (
        ("127.0.0.1:8765", True),
        ("localhost", True),
        ("[::1]:8765", True),
        ("evil.example:8765", False),
        ("", False),
    ):
        request = Request("GET", "/", "", {}, {"host": host})
        assert host_allowed(request, allowed) is ok, host
    assert host_allowed(Request("GET", "/", "", {}, {"host": "any"}), None)


def test_app_factories_check_their_arguments():
    """asgi_app needs an AsyncClient, wsgi_app a Client, a token a non-empty str."""
    with pytest.raises(kvkit.ConfigError):
        asgi_app(kvkit.Client("memory://"))
    with pytest.raises(kvkit.ConfigError):
        wsgi_app(kvkit.AsyncClient("memory://"))
    with pytest.raises(kvkit.ConfigError):
        wsgi_app(kvkit.Client("memory://"), token="  ")


# -- the WSGI twin, in process -----------------------------------------------------------------
def test_wsgi_overview_and_actions():
    """Overview JSON; requeue needs the token and moves the dead letter back; purge deletes."""
    client = kvkit.Client("memory://")
    _fill(client)
    app = wsgi_app(client, token=TOKEN)
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:8765") as http:
        data = http.get("/api/overview").json()
        queues = {q["name"]: q for q in data["queues"]}
        assert set(queues) == {"emails", "reports", "webhooks"}
        assert {k: queues["emails"][k] for k in ("ready", "pending", "delayed", "dead")} == {
            "ready": 2,
            "pending": 0,
            "delayed": 0,
            "dead": 0,
        }
        assert queues["reports"]["delayed"] == 1 and queues["webhooks"]["dead"] == 1
        assert 0 <= queues["emails"]["oldest_ready_age"] < 30
        assert queues["reports"]["oldest_ready_age"] is None
        assert data["actions"] is False and data["status"] == "pass"
        assert {r["role"] for r in data["roles"]} == {"cache", "sessions", "queues"}
        assert sum(b["in"] for b in data["throughput"]) > 0

        dead = http.get("/api/dead", params={"queue": "webhooks"}).json()["dead"]
        assert len(dead) == 1 and dead[0]["deliveries"] == 1
        assert dead[0]["error"].endswith("last error: ConnectionError: endpoint said 502")
        assert "payload" not in dead[0]
        assert http.get("/api/dead", params={"queue": "nope"}).status_code == 404

        requeue = "/api/requeue?queue=webhooks"
        body = {"ids": [dead[0]["id"]]}
        assert http.get(requeue).status_code == 405
        assert http.post(requeue, json=body).status_code == 403
        wrong = http.post(requeue, json=body, headers={"x-kvkit-token": "wrong"})
        assert wrong.status_code == 403
        assert client.queue("webhooks").stats().dead == 1  # nothing happened
        ok = http.post(requeue, json=body, headers={"x-kvkit-token": TOKEN})
        assert ok.json() == {"queue": "webhooks", "requeued": 1}
        stats = client.queue("webhooks").stats()
        assert (stats.ready, stats.dead) == (1, 0)
        assert client.queue("webhooks").pop().id == dead[0]["id"]

        # purge (delete-dead) by form, as the page's buttons send it: back to the page
        client.queue("emails", max_deliveries=1).pop().nack()
        (victim,) = client.queue("emails").dead_letters()
        form = {"token": TOKEN, "id": victim.id}
        response = http.post("/api/delete-dead?queue=emails", data=form)
        assert response.status_code == 303
        assert response.headers["location"] == f"/?queue=emails&token={TOKEN}"
        assert client.queue("emails").stats().dead == 0
        assert (
            http.post(
                "/api/delete-dead?queue=emails", json={}, headers={"x-kvkit-token": TOKEN}
            ).status_code
            == 400
        )


def test_page_is_escaped_and_read_only_without_token():
    """Queue names and reasons are escaped; without the token no action control is shown."""
    client = kvkit.Client("memory://")
    evil = "<script>alert(1)</script>"
    queue = client.queue(evil, max_deliveries=1)
    queue.push(1)
    queue.pop().nack()
    app = wsgi_app(client, token=TOKEN)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://h") as http:
        page = http.get("/")
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "read-only" in page.text and "<form" not in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-frame-options"] == "DENY"
        acting = http.get("/", params={"token": TOKEN})
        assert ">requeue</button>" in acting.text and ">purge</button>" in acting.text
        assert http.get("/", params={"token": "wrong"}).text.count("<form") == 0
        assert (
            http.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        )
        assert http.get("/static/nope.js").status_code == 404
        assert http.get("/nope").status_code == 404


# -- real servers ----------------------------------------------------------------------------------
@pytest.mark.redis
def test_cli_dashboard_under_uvicorn(redis_url):
    """`kvkit dashboard` serves the overview and the actions of queues made by another process."""
    prefix = "t" + uuid.uuid4().hex[:12]
    with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as client:
        _fill(client)
        args = ["-m", "kvkit", "dashboard", "--url", redis_url, "--prefix", prefix]
        with run_app([*args, "--port", "{port}", "--token", TOKEN]) as server:
            with httpx.Client(base_url=server.base, timeout=10) as http:
                data = http.get("/api/overview").json()
                assert {q["name"] for q in data["queues"]} == {"emails", "reports", "webhooks"}
                assert http.get("/", headers={"host": "evil.example"}).status_code == 403
                (dead,) = http.get("/api/dead", params={"queue": "webhooks"}).json()["dead"]
                url = "/api/requeue?queue=webhooks"
                assert http.post(url, data={"id": dead["id"]}).status_code == 403
                assert http.post(url, data={"id": dead["id"], "token": "x"}).status_code == 403
                attack = {"id": dead["id"], "token": TOKEN}
                assert (
                    http.post(
                        url, data=attack, headers={"origin": "http://evil.example"}
                    ).status_code
                    == 403
                )
                done = http.post(url, data=attack)
                assert done.status_code == 303
            assert client.queue("webhooks").stats().ready == 1
            assert "open http://127.0.0.1:" in server.output()
            assert TOKEN not in server.output()  # a given token is not echoed
        for name in ("emails", "reports", "webhooks"):
            client.queue(name).purge(dead=True)


def test_cli_dashboard_needs_a_configured_backend(capsys, monkeypatch):
    """Without --url/--env/KVKIT_* the command refuses to serve an empty in-process store."""
    for name in ("KVKIT_URL", "KVKIT_CACHE_URL", "KVKIT_SESSION_URL", "KVKIT_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["dashboard"]) == 2
    assert "no backend configured" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["dashboard", "--url", "memory://", "--port", "0"])
    assert exit_.value.code == 2


def test_cli_dashboard_without_uvicorn(capsys, monkeypatch):
    """Without uvicorn the command fails with the install hint, no traceback."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert cli.main(["dashboard", "--url", "memory://"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'kvkit-sdk[dashboard]'" in err and "Traceback" not in err


def _mounted_checks(base, token_headers):
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/work").status_code == 200
        data = http.get("/kvkit/api/overview").json()
        assert [q["name"] for q in data["queues"]] == ["jobs"]
        assert data["queues"][0]["ready"] == 1
        ops = {(o["service"], o["op"]): o for o in data["operations"]}
        assert ops[("cache", "get")]["count"] == 3  # the app's own client's figures
        assert ops[("cache", "get")]["p50_ms"] > 0
        assert data["cache"]["hits"] == 2 and data["cache"]["misses"] == 1
        page = http.get("/kvkit/", params={"token": TOKEN}).text
        assert 'href="/kvkit/static/dashboard.css"' in page
        assert 'action="/kvkit/api/requeue' not in page  # no dead letters yet
        assert 'href="/kvkit/?queue=jobs&amp;token=' in page
        denied = http.post("/kvkit/api/requeue?queue=jobs", json={"all": True})
        assert denied.status_code == 403
        allowed = http.post(
            "/kvkit/api/requeue?queue=jobs", json={"all": True}, headers=token_headers
        )
        assert allowed.json() == {"queue": "jobs", "requeued": 0}


@pytest.mark.redis
def test_mounted_in_fastapi(redis_url):
    """asgi_app mounted at /kvkit in a FastAPI app under uvicorn: links below the mount."""
    env = {
        "KVKIT_URL": redis_url,
        "KVKIT_PREFIX": "t" + uuid.uuid4().hex[:12],
        "DASHBOARD_TOKEN": TOKEN,
    }
    args = ["-m", "uvicorn", "tests.obs_apps:fastapi_app", "--factory", "--port", "{port}"]
    with run_app([*args, "--no-access-log"], env=env) as server:
        _mounted_checks(server.base, {"x-kvkit-token": TOKEN})


@pytest.mark.redis
def test_mounted_in_flask(redis_url):
    """wsgi_app mounted at /kvkit in a Flask app under Werkzeug."""
    env = {
        "KVKIT_URL": redis_url,
        "KVKIT_PREFIX": "t" + uuid.uuid4().hex[:12],
        "DASHBOARD_TOKEN": TOKEN,
    }
    with run_app(["-m", "tests.obs_apps", "--port", "{port}"], env=env) as server:
        _mounted_checks(server.base, {"x-kvkit-token": TOKEN})


def test_overview_json_is_plain(tmp_path):
    """The overview is JSON without NaN/Infinity, whatever the figures."""
    client = kvkit.Client("memory://")
    _fill(client, with_dead=False)
    app = wsgi_app(client)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://h") as http:
        text = http.get("/api/overview").text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


async def _afill(client):
    await client.queue("emails").push_many([{"to": "ada"}, {"to": "bob"}])
    failing = client.queue("webhooks", max_deliveries=1)
    await failing.push({"n": 1})

    async def handler(message):
        raise ConnectionError("endpoint said 502")

    await failing.consume(handler, max_messages=1)


async def test_asgi_overview_page_and_actions():
    """The ASGI app in process: overview, page, dead letters, requeue and purge, limits."""
    async with kvkit.AsyncClient("memory://") as client:
        await _afill(client)
        await client.cache.get("miss")
        app = asgi_app(client, token=TOKEN, allowed_hosts=["127.0.0.1"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            data = (await http.get("/api/overview", headers={"x-kvkit-token": TOKEN})).json()
            assert data["actions"] is True
            assert {q["name"]: q["dead"] for q in data["queues"]} == {"emails": 0, "webhooks": 1}
            assert data["cache"]["misses"] == 1
            page = await http.get("/", params={"token": TOKEN})
            assert "endpoint said 502" in page.text and ">requeue</button>" in page.text
            fragment = await http.get("/fragment", params={"queue": "emails"})
            assert fragment.text.startswith('<div class="status') and "<html" not in fragment.text
            head = await http.head("/")
            assert head.status_code == 200 and head.content == b""
            (dead,) = (await http.get("/api/dead", params={"queue": "webhooks"})).json()["dead"]
            assert (
                await http.get("/api/dead", params={"queue": "webhooks", "count": "x"})
            ).status_code == 400
            assert (
                await http.get("/api/dead", params={"queue": "webhooks", "count": "0"})
            ).status_code == 400
            url = "/api/requeue?queue=webhooks"
            assert (await http.post(url, json={"ids": [dead["id"]]})).status_code == 403
            too_big = await http.post(url, content=b"x" * 70_000, headers={"x-kvkit-token": TOKEN})
            assert too_big.status_code == 413
            unknown = await http.post(
                "/api/requeue?queue=nope", json={"all": True}, headers={"x-kvkit-token": TOKEN}
            )
            assert unknown.status_code == 404
            done = await http.post(url, data={"token": TOKEN, "id": dead["id"]})
            assert (
                done.status_code == 303
                and done.headers["location"] == f"/?queue=webhooks&token={TOKEN}"
            )
            assert (await client.queue("webhooks").stats()).ready == 1
            message = await client.queue("webhooks", max_deliveries=1).pop()
            await message.nack()
            purge = await http.post(
                "/api/delete-dead?queue=webhooks",
                json={"all": True},
                headers={"x-kvkit-token": TOKEN},
            )
            assert purge.json() == {"queue": "webhooks", "deleted": 1}
            assert (await http.put("/")).status_code == 405
            other_host = await http.get("/", headers={"host": "evil.example"})
            assert other_host.status_code == 403
        await app.aclose()


async def test_asgi_lifespan_and_mount_prefix():
    """Lifespan events are answered; under a mount point every link keeps the prefix."""
    async with kvkit.AsyncClient("memory://") as client:
        app = asgi_app(client)
        sent = []
        events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive():
            return next(events)

        async def send(message):
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        await client.queue("jobs").push(1)
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/admin/kvkit/",
            "root_path": "/admin/kvkit",
            "query_string": b"",
            "headers": [(b"host", b"h")],
        }
        replies = []

        async def receive_body():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def collect(message):
            replies.append(message)

        await app(scope, receive_body, collect)
        html = replies[1]["body"].decode()
        assert replies[0]["status"] == 200
        assert 'href="/admin/kvkit/static/dashboard.css"' in html
        assert 'href="/admin/kvkit/?queue=jobs"' in html
        assert "read-only" in html
