"""kvkit.ext.starlette: Starlette's session scenarios, ids, login/logout, failures, WebSocket.

The first block replays the scenarios of Starlette's own SessionMiddleware tests (view /
update / clear, expiry, https_only, a sub-path mount, an invalid cookie, a browser-session
cookie, a domain) with kvkit's middleware: only the constructor differs (``client=``
instead of ``secret_key=``). Real servers (uvicorn, redis-server) are in
tests/test_ext_starlette_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import kvkit
from kvkit._idhash import id_hash
from kvkit._memory.sessions import SessionSpace
from kvkit.ext.starlette import SessionMiddleware, login, logout, session_id_hash

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

FORGED_ID = "A" * 47


@pytest.fixture
def client() -> kvkit.AsyncClient:
    """A private in-process store."""
    return kvkit.AsyncClient("memory://")


def stored(client: kvkit.AsyncClient) -> int:
    """How many sessions the memory store holds."""
    return len(client.backend("sessions").store.space("sessions", SessionSpace))


def run(coro):
    """Run a store call outside the app (memory:// works from any event loop)."""
    return asyncio.run(coro)


# -- the endpoints of Starlette's own tests ---------------------------------------------------
def view_session(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def update_session(request: Request) -> JSONResponse:
    request.session.update(await request.json())
    return JSONResponse({"session": request.session})


async def clear_session(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": request.session})


async def append_item(request: Request) -> JSONResponse:
    request.session.setdefault("items", [])
    request.session["items"].append(len(request.session["items"]))  # a nested change
    return JSONResponse({"session": request.session})


async def do_login(request: Request) -> JSONResponse:
    await login(request, request.path_params["user"], meta={"device": "test"})
    return JSONResponse({"session": request.session, "hash": session_id_hash(request)})


async def do_logout(request: Request) -> JSONResponse:
    existed = await logout(request)
    if request.query_params.get("flash"):
        request.session["flash"] = "bye"
    return JSONResponse({"existed": existed, "session": request.session})


def public(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


ROUTES = [
    Route("/view_session", endpoint=view_session),
    Route("/update_session", endpoint=update_session, methods=["POST"]),
    Route("/clear_session", endpoint=clear_session, methods=["POST"]),
    Route("/append", endpoint=append_item, methods=["POST"]),
    Route("/login/{user}", endpoint=do_login, methods=["POST"]),
    Route("/logout", endpoint=do_logout, methods=["POST"]),
    Route("/public", endpoint=public),
]


def make_app(client: kvkit.AsyncClient, **options) -> Starlette:
    """Starlette's test app with kvkit's middleware (only the constructor changed)."""
    return Starlette(
        routes=ROUTES, middleware=[Middleware(SessionMiddleware, client=client, **options)]
    )


def test_client_factory(app, **kwargs) -> TestClient:
    """Starlette's test_client_factory fixture, as a function."""
    return TestClient(app, **kwargs)


test_client_factory.__test__ = False  # type: ignore[attr-defined]


def cookie_of(response: httpx.Response) -> str:
    """The session id the response's Set-Cookie carries."""
    match = re.search(r"session=([^;]*);", response.headers["set-cookie"])
    assert match is not None
    return match[1]


# -- Starlette's scenarios ---------------------------------------------------------------------
def test_session(client):
    """View, update (Max-Age = 14 days), view again, clear (deleted server-side), view."""
    app = make_app(client)
    http = test_client_factory(app)
    response = http.get("/view_session")
    assert response.json() == {"session": {}}
    assert "set-cookie" not in response.headers
    response = http.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    set_cookie = response.headers["set-cookie"]
    max_age = re.search(r"; Max-Age=([0-9]+);", set_cookie)
    assert max_age is not None
    assert int(max_age[1]) == 14 * 24 * 3600
    sid = cookie_of(response)
    assert 14 * 24 * 3600 - 5 < run(client.sessions.ttl(sid)) <= 14 * 24 * 3600
    response = http.get("/view_session")
    assert response.json() == {"session": {"some": "data"}}
    response = http.post("/clear_session")
    assert response.json() == {"session": {}}
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in response.headers["set-cookie"]
    assert run(client.sessions.exists(sid)) is False
    response = http.get("/view_session")
    assert response.json() == {"session": {}}
    assert stored(client) == 0


def test_session_expires(client):
    """max_age=-1: the cookie expires at once; replaying its value gives an empty session."""
    app = make_app(client, max_age=-1)
    http = test_client_factory(app)
    response = http.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    expired = re.search(r"session=([^;]*);", response.headers["set-cookie"])
    assert expired is not None
    http = test_client_factory(app, cookies={"session": expired[1]})
    assert http.get("/view_session").json() == {"session": {}}
    assert stored(client) == 0  # a session that expires at once is never stored


def test_secure_session(client):
    """https_only: the cookie is Secure, so a plain-http client never sends it back."""
    app = make_app(client, https_only=True)
    secure = test_client_factory(app, base_url="https://testserver")
    insecure = test_client_factory(app, base_url="http://testserver")
    assert insecure.get("/view_session").json() == {"session": {}}
    response = insecure.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    assert "; secure" in response.headers["set-cookie"]
    assert insecure.get("/view_session").json() == {"session": {}}
    assert secure.get("/view_session").json() == {"session": {}}
    response = secure.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    assert secure.get("/view_session").json() == {"session": {"some": "data"}}
    assert secure.post("/clear_session").json() == {"session": {}}
    assert secure.get("/view_session").json() == {"session": {}}


def test_session_cookie_subpath(client):
    """path= on a mounted sub-app is the cookie's path."""
    second_app = Starlette(
        routes=[Route("/update_session", endpoint=update_session, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, client=client, path="/second_app")],
    )
    app = Starlette(routes=[Mount("/second_app", app=second_app)])
    # (httpx joins a relative path to base_url's path: this is /second_app/update_session.)
    http = test_client_factory(app, base_url="http://testserver/second_app")
    response = http.post("update_session", json={"some": "data"})
    assert response.url.path == "/second_app/update_session"
    assert response.status_code == 200
    path = re.search(r"; path=(\S+);", response.headers["set-cookie"])
    assert path is not None
    assert path.groups()[0] == "/second_app"


def test_invalid_session_cookie(client):
    """A bogus cookie gives an empty session, never an error (and is expired)."""
    app = make_app(client)
    http = test_client_factory(app)
    response = http.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    http = test_client_factory(app, cookies={"session": "invalid"})
    response = http.get("/view_session")
    assert response.json() == {"session": {}}
    assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]


def test_session_cookie(client):
    """max_age=None: a browser-session cookie (no Max-Age); the store's session_ttl applies."""
    app = make_app(client, max_age=None)
    http = test_client_factory(app)
    response = http.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    assert "Max-Age" not in response.headers["set-cookie"]
    sid = cookie_of(response)
    ttl = run(client.sessions.ttl(sid))
    assert client.settings.session_ttl - 5 < ttl <= client.settings.session_ttl
    assert "set-cookie" not in http.get("/view_session").headers  # nothing to refresh
    http.cookies.delete("session")
    assert http.get("/view_session").json() == {"session": {}}


def test_domain_cookie(client):
    """domain= is the cookie's Domain."""
    app = make_app(client, domain=".example.com")
    http = test_client_factory(app)
    response = http.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    assert "domain=.example.com" in response.headers["set-cookie"]
    http.cookies.delete("session")
    assert http.get("/view_session").json() == {"session": {}}


# -- cookie and storage rules ----------------------------------------------------------------
def test_cookie_attributes_and_vary(client):
    """HttpOnly always, SameSite, Partitioned, Starlette's name session_cookie; Vary: Cookie."""
    app = make_app(client, session_cookie="sid", same_site="Strict", partitioned=True)
    http = test_client_factory(app)
    response = http.post("/update_session", json={"a": 1})
    header = response.headers["set-cookie"]
    assert header.startswith("sid=")
    assert "; httponly; samesite=strict; partitioned" in header
    assert "Cookie" in response.headers["vary"]
    anonymous = test_client_factory(app)
    assert "vary" not in anonymous.get("/public").headers  # no session, not looked at
    assert anonymous.get("/view_session").headers["vary"] == "Cookie"


def test_anonymous_requests_cost_no_round_trip(client, monkeypatch):
    """No cookie: no read, no write, no cookie; an empty new session stores nothing."""
    calls = []
    original = client.sessions.get

    async def counting_get(sid):
        calls.append(sid)
        return await original(sid)

    monkeypatch.setattr(client.sessions, "get", counting_get)
    http = test_client_factory(make_app(client))
    for path in ("/view_session", "/public"):
        response = http.get(path)
        assert "set-cookie" not in response.headers
    assert http.post("/clear_session").json() == {"session": {}}
    assert calls == []
    assert stored(client) == 0
    http.post("/update_session", json={"a": 1})
    http.get("/public")
    assert len(calls) == 1  # one read per request that carries the cookie


def test_saved_only_when_modified_and_cookie_refreshed(client, monkeypatch):
    """Reading a session writes nothing; its cookie (same id) is refreshed with Max-Age."""
    http = test_client_factory(make_app(client))
    sid = cookie_of(http.post("/update_session", json={"a": 1}))
    writes = []
    for name in ("update", "set", "create", "delete"):
        original = getattr(client.sessions, name)

        async def spy(*args, _original=original, _name=name, **kwargs):
            writes.append(_name)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(client.sessions, name, spy)
    response = http.get("/view_session")
    assert response.json() == {"session": {"a": 1}}
    assert cookie_of(response) == sid
    assert "Max-Age=1209600" in response.headers["set-cookie"]
    assert writes == []
    assert http.post("/update_session", json={"a": 1}).status_code == 200  # same value
    assert writes == []
    http.post("/update_session", json={"b": 2})
    assert writes == ["update"]


def test_nested_changes_are_saved(client):
    """Mutating a value in place (no assignment) is saved: values are compared encoded."""
    http = test_client_factory(make_app(client))
    assert http.post("/append").json() == {"session": {"items": [0]}}
    assert http.post("/append").json() == {"session": {"items": [0, 1]}}
    assert http.get("/view_session").json() == {"session": {"items": [0, 1]}}


@pytest.mark.parametrize(
    ("before", "after"),
    [(1, True), (True, 1), (1, 1.0), (1.0, 1), (0.0, -0.0), ("1", 1), (None, "x"), ("a", "b")],
)
def test_a_change_of_type_or_value_is_saved(client, monkeypatch, before, after):
    """Plain values are compared by type and value (not encoded): equal-looking ones differ.

    Only the changed item is sent to the store.
    """
    http = test_client_factory(make_app(client))
    http.post("/update_session", json={"v": before, "same": [1, {"x": 2}]})
    sent = []
    original = client.sessions.update

    async def spy(session_id, changes, **kwargs):
        sent.append(dict(changes))
        return await original(session_id, changes, **kwargs)

    monkeypatch.setattr(client.sessions, "update", spy)
    http.post("/update_session", json={"v": after})
    assert sent == [{"v": after}]
    shown = http.get("/view_session").json()["session"]
    assert repr(shown["v"]) == repr(after)
    assert shown["same"] == [1, {"x": 2}]


def test_forged_and_tampered_ids_are_never_honoured(client):
    """Unknown or tampered ids read as empty; the next write issues a new id (no fixation)."""
    http = test_client_factory(make_app(client))
    real = cookie_of(http.post("/update_session", json={"secret": 1}))
    tampered = real[:-1] + ("B" if real[-1] != "B" else "C")
    for planted in (FORGED_ID, tampered, real + "x", "", "null"):
        attacker = test_client_factory(make_app(client), cookies={"session": planted})
        assert attacker.get("/view_session").json() == {"session": {}}
        response = attacker.post("/update_session", json={"mine": 1})
        issued = cookie_of(response)
        assert issued not in (planted, real)
        assert run(client.sessions.get(issued)) == {"mine": 1}
    assert run(client.sessions.get(real)) == {"secret": 1}
    assert run(client.sessions.exists(FORGED_ID)) is False


def test_ended_session_is_not_resurrected(client):
    """A session deleted during the request (logout everywhere): changes dropped, cookie expired."""
    ended = {}

    async def slow_update(request: Request) -> JSONResponse:
        await client.sessions.delete_user("eve")  # another device logs out everywhere
        ended["done"] = True
        request.session["x"] = 1
        return JSONResponse({})

    app = Starlette(
        routes=[*ROUTES, Route("/slow", slow_update, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, client=client)],
    )
    http = test_client_factory(app)
    http.post("/login/eve")
    response = http.post("/slow")
    assert ended["done"]
    assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
    assert stored(client) == 0


# -- login / logout / devices ----------------------------------------------------------------
def test_login_rotates_keeps_data_and_binds_the_user(client):
    """login(): new id, same data, bound to the user (delete_user logs the browser out)."""
    http = test_client_factory(make_app(client))
    old = cookie_of(http.post("/update_session", json={"cart": [1]}))
    response = http.post("/login/ada")
    new = cookie_of(response)
    assert new != old
    assert response.json() == {"session": {"cart": [1]}, "hash": id_hash(new)}
    assert run(client.sessions.exists(old)) is False
    assert run(client.sessions.user_sessions("ada")) == [new]
    (info,) = run(client.sessions.user_sessions("ada", details=True))
    assert info.id_hash == id_hash(new)
    assert info.meta == {"device": "test"}
    assert http.get("/view_session").json() == {"session": {"cart": [1]}}
    assert run(client.sessions.delete_user("ada")) == 1
    assert http.get("/view_session").json() == {"session": {}}


def test_login_on_an_empty_session_keeps_it(client):
    """A fresh browser logging in gets a stored (empty) session bound to the user."""
    http = test_client_factory(make_app(client))
    response = http.post("/login/bob")
    sid = cookie_of(response)
    assert run(client.sessions.user_sessions("bob")) == [sid]
    response = http.get("/view_session")
    assert response.json() == {"session": {}}
    assert cookie_of(response) == sid  # kept and refreshed, not deleted as empty


def test_logout_deletes_and_expires(client):
    """logout(): deleted server-side, cookie expired; items set afterwards start a new session."""
    http = test_client_factory(make_app(client))
    http.post("/update_session", json={"a": 1})
    sid = cookie_of(http.post("/login/cy"))
    response = http.post("/logout")
    assert response.json() == {"existed": True, "session": {}}
    assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
    assert run(client.sessions.exists(sid)) is False
    assert http.get("/view_session").json() == {"session": {}}
    http.post("/login/cy")
    response = http.post("/logout?flash=1")
    fresh = cookie_of(response)
    assert fresh != sid
    assert run(client.sessions.get(fresh)) == {"flash": "bye"}
    assert run(client.sessions.user_sessions("cy")) == []


def test_helpers_need_the_middleware():
    """login/logout/session_id_hash without the middleware raise RuntimeError."""

    async def endpoint(request: Request) -> JSONResponse:
        with pytest.raises(RuntimeError, match="SessionMiddleware"):
            await login(request, "u")
        with pytest.raises(RuntimeError, match="SessionMiddleware"):
            await logout(request)
        with pytest.raises(RuntimeError, match="SessionMiddleware"):
            session_id_hash(request)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/", endpoint)])
    assert test_client_factory(app).get("/").json() == {"ok": True}


# -- failures -----------------------------------------------------------------------------------
def failing(exc: Exception):
    """A replacement store method that raises ``exc``."""

    async def fail(*args, **kwargs):
        raise exc

    return fail


def test_failed_read_gives_an_empty_session_and_one_warning(client, monkeypatch, caplog):
    """Backend down on read: empty session, one warning without the id, cookie kept, 200."""
    http = test_client_factory(make_app(client))
    sid = cookie_of(http.post("/update_session", json={"a": 1}))
    down = kvkit.BackendUnavailable("redis://127.0.0.1:1/0: unavailable")
    original_get = client.sessions.get
    monkeypatch.setattr(client.sessions, "get", failing(down))
    with caplog.at_level(logging.WARNING, logger="kvkit.ext.starlette"):
        response = http.get("/view_session")
    assert response.status_code == 200
    assert response.json() == {"session": {}}
    assert "set-cookie" not in response.headers
    assert len(caplog.records) == 1
    assert "BackendUnavailable" in caplog.text
    assert sid not in caplog.text and sid[4:] not in caplog.text
    assert http.get("/public").status_code == 200
    # A write while the read fails is merged into the stored session (not a new id).
    response = http.post("/update_session", json={"b": 2})
    assert response.status_code == 200
    assert run(original_get(sid)) == {"a": 1, "b": 2}


def test_undecodable_session_reads_as_empty(client, monkeypatch, caplog):
    """Undecodable data: empty session, one warning naming the hash; a write gets a new id."""
    http = test_client_factory(make_app(client))
    sid = cookie_of(http.post("/update_session", json={"a": 1}))
    bad = kvkit.DecodeError(f"session {id_hash(sid)}: cannot decode 'a'")
    original_get = client.sessions.get
    monkeypatch.setattr(client.sessions, "get", failing(bad))
    with caplog.at_level(logging.WARNING, logger="kvkit.ext.starlette"):
        assert http.get("/view_session").json() == {"session": {}}
    assert len(caplog.records) == 1
    assert id_hash(sid) in caplog.text and sid not in caplog.text
    monkeypatch.setattr(client.sessions, "get", original_get)
    http.cookies.set("session", sid)
    monkeypatch.setattr(client.sessions, "get", failing(bad))
    fresh = cookie_of(http.post("/update_session", json={"b": 2}))
    assert fresh != sid
    assert run(original_get(fresh)) == {"b": 2}


@pytest.mark.parametrize("method", ["create", "update", "delete"])
def test_failed_write_is_a_503_and_logged(client, monkeypatch, caplog, method):
    """A failed create/update/delete: 503 (plain), logged, the app's response dropped."""
    http = test_client_factory(make_app(client))
    if method != "create":
        http.post("/update_session", json={"a": 1})
    monkeypatch.setattr(client.sessions, method, failing(kvkit.BackendTimeout("timed out")))
    path = "/clear_session" if method == "delete" else "/update_session"
    with caplog.at_level(logging.ERROR, logger="kvkit.ext.starlette"):
        response = http.post(path, json={"b": 2})
    assert response.status_code == 503
    assert response.text == "the session could not be saved; please try again"
    assert "set-cookie" not in response.headers
    assert "BackendTimeout" in caplog.text


def test_failed_write_uses_the_apps_handler(client, monkeypatch):
    """The app's handler for kvkit.BackendError renders the failed write (sync or async)."""

    async def on_backend_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__}, status_code=503)

    def on_503(request: Request, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse(f"custom 503: {exc.detail}", status_code=503)

    with_handler = Starlette(
        routes=ROUTES,
        middleware=[Middleware(SessionMiddleware, client=client)],
        exception_handlers={kvkit.BackendError: on_backend_error},
    )
    with_status = Starlette(
        routes=ROUTES,
        middleware=[Middleware(SessionMiddleware, client=client)],
        exception_handlers={503: on_503},
    )
    monkeypatch.setattr(client.sessions, "create", failing(kvkit.BackendUnavailable("down")))
    response = test_client_factory(with_handler).post("/update_session", json={"a": 1})
    assert (response.status_code, response.json()) == (503, {"error": "BackendUnavailable"})
    response = test_client_factory(with_status).post("/update_session", json={"a": 1})
    assert (response.status_code, response.text) == (
        503,
        "custom 503: the session could not be saved; please try again",
    )


def test_failed_write_in_fastapi_is_its_json_503(client, monkeypatch):
    """FastAPI without a handler: its HTTPException handler answers {"detail": ...} 503."""
    app = FastAPI()
    app.add_middleware(SessionMiddleware, client=client)

    @app.post("/set")
    async def set_value(request: Request) -> dict:
        request.session["a"] = 1
        return {"ok": True}

    monkeypatch.setattr(client.sessions, "create", failing(kvkit.BackendUnavailable("down")))
    response = test_client_factory(app).post("/set")
    assert response.status_code == 503
    assert response.json() == {"detail": "the session could not be saved; please try again"}


def test_failed_write_cuts_a_streamed_response(client, monkeypatch):
    """A streamed response whose session cannot be saved is replaced by the 503."""

    async def stream(request: Request) -> StreamingResponse:
        request.session["a"] = 1

        async def body():
            for _ in range(1000):
                yield b"chunk"
                await asyncio.sleep(0)

        return StreamingResponse(body())

    app = Starlette(
        routes=[Route("/stream", stream)], middleware=[Middleware(SessionMiddleware, client=client)]
    )
    monkeypatch.setattr(client.sessions, "create", failing(kvkit.BackendUnavailable("down")))
    response = test_client_factory(app).get("/stream")
    assert response.status_code == 503
    assert "chunk" not in response.text


def test_unstorable_value_is_a_server_error_and_writes_nothing(client):
    """A value that cannot be encoded raises SerializationError (the app's 500)."""

    async def bad(request: Request) -> JSONResponse:
        request.session["obj"] = object()
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/bad", bad)], middleware=[Middleware(SessionMiddleware, client=client)]
    )
    with pytest.raises(kvkit.SerializationError, match="nothing was written"):
        test_client_factory(app).get("/bad")
    assert test_client_factory(app, raise_server_exceptions=False).get("/bad").status_code == 500
    assert stored(client) == 0


# -- concurrency -------------------------------------------------------------------------------
async def test_concurrent_requests_changing_different_keys_both_survive(client):
    """Two overlapping requests of one browser set different keys: both are kept."""
    arrived = asyncio.Barrier(2)

    async def set_key(request: Request) -> JSONResponse:
        assert request.session["base"] == 1  # both loaded the same data
        await arrived.wait()  # both have loaded before either saves
        request.session[request.path_params["key"]] = True
        return JSONResponse({})

    app = Starlette(
        routes=[*ROUTES, Route("/set/{key}", set_key, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, client=client)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        sid = cookie_of(await http.post("/update_session", json={"base": 1}))
        first, second = await asyncio.gather(http.post("/set/x"), http.post("/set/y"))
        assert first.status_code == second.status_code == 200
        assert await client.sessions.get(sid) == {"base": 1, "x": True, "y": True}


# -- WebSocket and FastAPI ---------------------------------------------------------------------
def test_websocket_session(client):
    """WebSocket: loaded at the handshake, saved at accept (cookie sent then) and at the end."""

    async def ws_endpoint(websocket: WebSocket) -> None:
        websocket.session["before_accept"] = True
        await websocket.accept()
        await websocket.send_json(websocket.session)
        websocket.session["after_accept"] = await websocket.receive_text()
        await websocket.close()

    app = Starlette(
        routes=[*ROUTES, WebSocketRoute("/ws", ws_endpoint)],
        middleware=[Middleware(SessionMiddleware, client=client)],
    )
    http = test_client_factory(app)
    sid = cookie_of(http.post("/update_session", json={"a": 1}))
    with http.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"a": 1, "before_accept": True}
        ws.send_text("hello")
    assert run(client.sessions.get(sid)) == {"a": 1, "before_accept": True, "after_accept": "hello"}
    # A new browser: the session is created at accept and its cookie sent in the handshake.
    fresh = test_client_factory(app)
    with fresh.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"before_accept": True}
        ws.send_text("x")
    assert stored(client) == 2


def test_fastapi_app_and_callable_client():
    """FastAPI: add_middleware with a callable client (created at startup) and request.session."""
    from kvkit.ext.fastapi import KVKit

    app = FastAPI()
    kv = KVKit(app, settings=kvkit.Settings(url="memory://"))
    app.add_middleware(SessionMiddleware, client=lambda: kv.client)

    @app.post("/visit")
    async def visit(request: Request) -> dict:
        request.session["visits"] = request.session.get("visits", 0) + 1
        return dict(request.session)

    with test_client_factory(app) as http:
        assert http.post("/visit").json() == {"visits": 1}
        assert http.post("/visit").json() == {"visits": 2}
        assert run(kv.client.sessions.get(http.cookies["session"])) == {"visits": 2}


@pytest.mark.parametrize(
    "options",
    [
        {"client": kvkit.Client("memory://")},
        {"client": "memory://"},
        {"client": kvkit.AsyncClient("memory://"), "max_age": 1.5},
        {"client": kvkit.AsyncClient("memory://"), "max_age": True},
        {"client": kvkit.AsyncClient("memory://"), "max_age": 10**12},
        {"client": kvkit.AsyncClient("memory://"), "same_site": "sometimes"},
        {"client": kvkit.AsyncClient("memory://"), "cookie_name": ""},
        {"client": kvkit.AsyncClient("memory://"), "cookie_name": "a", "session_cookie": "b"},
    ],
)
def test_bad_arguments_raise_config_error(options):
    """A sync client, a URL, a non-int max_age, an unknown SameSite... raise ConfigError."""
    with pytest.raises(kvkit.ConfigError):
        SessionMiddleware(public, **options)


def test_non_http_scopes_pass_through(client):
    """Lifespan events reach the app untouched (no session)."""
    events = []

    async def app(scope, receive, send):
        events.append((scope["type"], "session" in scope))

    middleware = SessionMiddleware(app, client=client)
    run(middleware({"type": "lifespan"}, None, None))
    assert events == [("lifespan", False)]
    assert repr(middleware) == "<kvkit.ext.starlette.SessionMiddleware cookie='session'>"


def test_http_exception_from_the_app_is_untouched(client):
    """An app's own HTTPException still answers normally (no save attempted twice)."""

    async def boom(request: Request) -> JSONResponse:
        request.session["seen"] = True
        raise HTTPException(404, "nope")

    app = Starlette(
        routes=[Route("/boom", boom)], middleware=[Middleware(SessionMiddleware, client=client)]
    )
    response = test_client_factory(app).get("/boom")
    assert (response.status_code, response.text) == (404, "nope")
    assert run(client.sessions.get(cookie_of(response))) == {"seen": True}
