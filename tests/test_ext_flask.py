"""kvkit.ext.flask: config, server-side sessions, regenerate, health, a real Werkzeug server."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid

import httpx
import pytest
from flask import Flask, session

import kvkit
from kvkit._idhash import id_hash
from kvkit.ext.flask import (
    KVKit,
    KVKitSession,
    KVKitSessionInterface,
    health_blueprint,
    login_session,
    logout_session,
    regenerate_session,
    settings_from_config,
)
from tests.appservers import run_app

HEALTH_PATHS = ("/health/redis", "/health/redis/services", "/health/full")
FORGED_ID = "A" * 47


def make_app(**config) -> tuple[Flask, KVKit]:
    """A Flask app with kvkit, the health blueprint and a few session routes."""
    app = Flask(__name__)
    app.config.update(config)
    kv = KVKit(app)
    app.register_blueprint(health_blueprint())

    @app.post("/set")
    def set_items():
        from flask import request

        session.update(request.get_json())
        return dict(session)

    @app.get("/get")
    def get_items():
        return dict(session)

    @app.post("/login")
    def login():
        new_id = regenerate_session()
        session["user"] = "ada"
        return {"new_id": new_id}

    @app.post("/append")
    def append():
        session.setdefault("items", [])
        session["items"].append(len(session["items"]))  # nested change, no modified flag
        return dict(session)

    @app.post("/bad")
    def bad():
        session["bad"] = object()
        return "unreachable at response time"

    @app.post("/clear")
    def clear():
        session.clear()
        return {}

    @app.post("/permanent")
    def permanent():
        session.permanent = True
        session["p"] = 1
        return {}

    return app, kv


def sid_of(client) -> str:
    """The session id in the test client's cookie jar."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


# -- configuration --------------------------------------------------------------------------------
def test_init_app_reads_settings_from_config():
    """KVKIT_* config keys become Settings; ints, floats, bools and timedeltas convert."""
    app, kv = make_app(
        KVKIT_URL="memory://",
        KVKIT_PREFIX="myapp",
        KVKIT_SESSION_TTL=60,
        KVKIT_CACHE_TTL=1.5,
        KVKIT_CACHE_FAIL_OPEN=True,
        KVKIT_SOCKET_TIMEOUT=dt.timedelta(seconds=2),
        KVKIT_SESSION_MAX_AGE=None,
    )
    with app.app_context():
        settings = kv.client.settings
    assert settings.prefix == "myapp"
    assert settings.session_ttl == 60
    assert settings.cache_ttl == 1.5
    assert settings.cache_fail_open is True
    assert settings.socket_timeout == 2.0
    assert settings.session_max_age is None
    assert isinstance(app.session_interface, KVKitSessionInterface)


def test_defaults_without_config():
    """No KVKIT_* keys: the Settings defaults (memory://)."""
    assert settings_from_config({}) == kvkit.Settings()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("KVKIT_CACHE_TTL", "soon"),
        ("KVKIT_RETRIES", -1),
        ("KVKIT_URL", "nope://host"),
        ("KVKIT_CACHE_FAIL_OPEN", "perhaps"),
        ("KVKIT_MAX_CONNECTIONS", [20]),
        ("KVKIT_CACHE_TLL", 60),
        ("KVKIT_SERVER_SESSIONS", "maybe"),
    ],
)
def test_bad_config_raises_config_error_naming_the_key(key, value):
    """An invalid or unknown KVKIT_* key fails init_app with ConfigError naming it."""
    with pytest.raises(kvkit.ConfigError, match=key):
        make_app(**{key: value})


def test_config_error_hides_the_password():
    """A bad URL's password never appears in the error."""
    with pytest.raises(kvkit.ConfigError) as info:
        make_app(KVKIT_URL="redis://:hunter2@localhost/0?bogus=1")
    assert "hunter2" not in str(info.value)
    assert "KVKIT_URL" in str(info.value)


def test_server_sessions_can_be_disabled():
    """KVKIT_SERVER_SESSIONS=False keeps Flask's cookie sessions."""
    app, _ = make_app(KVKIT_SERVER_SESSIONS=False)
    assert not isinstance(app.session_interface, KVKitSessionInterface)
    app, _ = make_app(KVKIT_SERVER_SESSIONS="off")
    assert not isinstance(app.session_interface, KVKitSessionInterface)


def test_one_extension_many_apps():
    """KVKit() + init_app: each app has its own client; kv.client follows the app context."""
    kv = KVKit()
    first, second = Flask("first"), Flask("second")
    first.config["KVKIT_PREFIX"] = "one"
    second.config["KVKIT_PREFIX"] = "two"
    kv.init_app(first)
    kv.init_app(second)
    with first.app_context():
        assert kv.client.settings.prefix == "one"
    with second.app_context():
        assert kv.client.settings.prefix == "two"
    with pytest.raises(RuntimeError, match="app context"):
        kv.client  # noqa: B018 - the property raises


def test_client_outside_a_context_with_the_app_given():
    """KVKit(app).client works outside an app context."""
    _, kv = make_app()
    assert isinstance(kv.client, kvkit.Client)
    kv.close()


# -- sessions -------------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def app_client(request):
    """(app, kv, test client) on each backend, isolated by a unique prefix."""
    url = {"memory": "memory://", "fakeredis": "fakeredis://"}.get(request.param)
    if url is None:
        url = request.getfixturevalue("redis_url")
    app, kv = make_app(KVKIT_URL=url, KVKIT_PREFIX="t" + uuid.uuid4().hex[:12])
    yield app, kv, app.test_client()
    kv.close()


def test_session_round_trip_stores_data_server_side(app_client):
    """Data lives in client.sessions; the cookie holds only the id."""
    _, kv, http = app_client
    response = http.post("/set", json={"user": "ada", "n": 1})
    assert response.json == {"user": "ada", "n": 1}
    sid = sid_of(http)
    assert len(sid) == 47
    assert "ada" not in response.headers["Set-Cookie"]
    assert kv.client.sessions.get(sid) == {"user": "ada", "n": 1}
    assert http.get("/get").json == {"user": "ada", "n": 1}
    http.post("/set", json={"n": 2})
    assert http.get("/get").json == {"user": "ada", "n": 2}
    assert sid_of(http) == sid


def test_cookie_flags_default_to_httponly_lax():
    """HttpOnly and SameSite=Lax by default, no Secure, permanent (Expires), Vary: Cookie."""
    app, _ = make_app()
    http = app.test_client()
    response = http.post("/set", json={"a": 1})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert "Expires=" in cookie  # SESSION_PERMANENT defaults to true, as in Flask-Session
    assert "Cookie" in response.headers["Vary"]


def test_cookie_flags_follow_flask_config():
    """SESSION_COOKIE_NAME/SECURE/SAMESITE/HTTPONLY are Flask's own settings."""
    app, _ = make_app(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    response = app.test_client().post("/set", json={"a": 1})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("sid=")
    assert "Secure" in cookie
    assert "SameSite=Strict" in cookie


def test_permanent_session_cookie_expires():
    """A permanent session's cookie carries Flask's PERMANENT_SESSION_LIFETIME."""
    app, _ = make_app(PERMANENT_SESSION_LIFETIME=dt.timedelta(days=2))
    response = app.test_client().post("/permanent")
    assert "Expires=" in response.headers["Set-Cookie"]


def test_no_cookie_until_there_is_data(app_client):
    """Reading an empty session sets no cookie and stores nothing."""
    _, _, http = app_client
    response = http.get("/get")
    assert response.json == {}
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("cookie", [FORGED_ID, "tampered" + "x" * 40, "", "not-an-id", "ä" * 47])
def test_unknown_or_tampered_cookie_gives_a_fresh_session(app_client, cookie):
    """An id the store did not issue yields an empty session, never an error page."""
    _, kv, http = app_client
    http.set_cookie("session", cookie)
    response = http.get("/get")
    assert response.status_code == 200
    assert response.json == {}
    response = http.post("/set", json={"a": 1})
    assert response.status_code == 200
    new_sid = sid_of(http)
    assert new_sid != cookie
    assert kv.client.sessions.get(new_sid) == {"a": 1}
    assert kv.client.sessions.get(FORGED_ID) is None


def test_tampered_real_id_gives_a_fresh_session(app_client):
    """Changing one character of a real id gives an empty session."""
    _, _, http = app_client
    http.post("/set", json={"secret": 1})
    sid = sid_of(http)
    flipped = sid[:-1] + ("A" if sid[-1] != "A" else "B")
    http.set_cookie("session", flipped)
    assert http.get("/get").json == {}


def test_expired_session_gives_a_fresh_one():
    """After the idle TTL the cookie's id is unknown: an empty session."""
    app, _ = make_app(KVKIT_SESSION_TTL=0.3)
    http = app.test_client()
    http.post("/set", json={"a": 1})
    time.sleep(0.5)
    assert http.get("/get").json == {}


def test_regenerate_rotates_id_keeps_data_invalidates_old(app_client):
    """regenerate_session(): new id, same data; the old cookie no longer works."""
    _, kv, http = app_client
    http.post("/set", json={"cart": [1, 2]})
    old = sid_of(http)
    response = http.post("/login")
    new = sid_of(http)
    assert response.json["new_id"] == new
    assert new != old
    assert http.get("/get").json == {"cart": [1, 2], "user": "ada"}
    assert kv.client.sessions.get(old) is None
    attacker = http.application.test_client()
    attacker.set_cookie("session", old)
    assert attacker.get("/get").json == {}


def test_regenerate_on_a_new_session_issues_a_fresh_id(app_client):
    """regenerate_session() before anything is stored just creates the session on save."""
    _, _, http = app_client
    response = http.post("/login")
    assert response.json["new_id"] is None
    assert http.get("/get").json == {"user": "ada"}


def test_regenerate_needs_server_sessions():
    """regenerate_session() with cookie sessions raises RuntimeError."""
    app, _ = make_app(KVKIT_SERVER_SESSIONS=False, SECRET_KEY="x")
    app.testing = True
    with pytest.raises(RuntimeError, match="KVKitSessionInterface"):
        app.test_client().post("/login")


def test_nested_changes_are_saved(app_client):
    """Mutating a nested value is saved without session.modified = True."""
    _, _, http = app_client
    for _ in range(3):
        http.post("/append")
    assert http.get("/get").json == {"items": [0, 1, 2]}


def test_unencodable_value_errors_and_keeps_the_old_data(app_client):
    """A non-JSON-able value fails at response time; the stored session is unchanged."""
    app, kv, http = app_client
    http.post("/set", json={"keep": 1})
    sid = sid_of(http)
    app.testing = True  # errors propagate to the test
    with pytest.raises(kvkit.SerializationError, match="'bad'.*'object'"):
        http.post("/bad")
    app.testing = False
    response = http.post("/bad")  # in production: a 500 page, the session untouched
    assert response.status_code == 500
    assert sid_of(http) == sid
    assert http.get("/get").json == {"keep": 1}
    assert kv.client.sessions.get(sid) == {"keep": 1}


def test_clear_deletes_session_and_cookie(app_client):
    """session.clear() deletes the stored session and expires the cookie."""
    _, kv, http = app_client
    http.post("/set", json={"a": 1})
    sid = sid_of(http)
    response = http.post("/clear")
    assert "session=;" in response.headers["Set-Cookie"]
    assert kv.client.sessions.get(sid) is None
    assert http.get_cookie("session") is None


def test_concurrent_requests_changing_different_items_both_survive():
    """Two overlapping requests of one browser that set different items: both kept."""
    app, _ = make_app()
    gate = threading.Barrier(2)

    @app.post("/slow/<name>")
    def slow(name):
        dict(session)  # both requests load the session before either saves
        gate.wait(timeout=5)
        session[name] = True
        return {}

    http = app.test_client()
    http.post("/set", json={"base": 1})
    sid = sid_of(http)

    def hit(name):
        client = app.test_client()
        client.set_cookie("session", sid)
        assert client.post(f"/slow/{name}").status_code == 200

    threads = [threading.Thread(target=hit, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert http.get("/get").json == {"base": 1, "a": True, "b": True}


def test_session_deleted_during_the_request_is_not_resurrected():
    """A session logged out elsewhere mid-request is not re-created by the save."""
    app, kv = make_app()

    @app.post("/logout-everywhere-then-write")
    def racy():
        kv.client.sessions.delete(session.sid)  # e.g. delete_user() from another process
        session["late"] = True
        return {}

    http = app.test_client()
    http.post("/set", json={"a": 1})
    sid = sid_of(http)
    response = http.post("/logout-everywhere-then-write")
    assert response.status_code == 200
    assert "session=;" in response.headers["Set-Cookie"]
    assert kv.client.sessions.get(sid) is None
    assert http.get("/get").json == {}


def test_partitioned_cookie_and_string_booleans():
    """SESSION_COOKIE_PARTITIONED is honoured; KVKIT_SERVER_SESSIONS accepts "yes"."""
    app, _ = make_app(SESSION_COOKIE_PARTITIONED=True, KVKIT_SERVER_SESSIONS="yes")
    assert isinstance(app.session_interface, KVKitSessionInterface)
    response = app.test_client().post("/set", json={"a": 1})
    assert "Partitioned" in response.headers["Set-Cookie"]


def test_session_object_type():
    """flask.session is a KVKitSession with an id once stored."""
    app, _ = make_app()
    with app.test_request_context("/"):
        assert isinstance(session._get_current_object(), KVKitSession)


# -- health ---------------------------------------------------------------------------------------
def test_health_blueprint_on_memory():
    """The three endpoints answer 200 with the same bodies as FastAPI's."""
    app, _ = make_app()
    http = app.test_client()
    for path in HEALTH_PATHS:
        response = http.get(path)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json
        assert set(body) == {"status", "duration_ms", "checks"}
        assert body["status"] == "pass"
    names = [c["name"] for c in http.get("/health/full").json["checks"]]
    assert names == ["server", "cache", "sessions", "queues"]


def test_health_blueprint_url_prefix():
    """health_blueprint(url_prefix=...) moves the routes."""
    app = Flask(__name__)
    KVKit(app)
    app.register_blueprint(health_blueprint("ops_health", url_prefix="/ops"))
    assert app.test_client().get("/ops/health/redis").status_code == 200


@pytest.mark.redis
def test_health_live_stopped_and_password(redis_server_factory):
    """Live server: 200; stopped: 503 within 2 s; the password never in a body."""
    server = redis_server_factory(password="pw-s3cr3t")
    app, _ = make_app(KVKIT_URL=server.url)
    http = app.test_client()
    for path in HEALTH_PATHS:
        response = http.get(path)
        assert response.status_code == 200, response.text
        assert "s3cr3t" not in response.text
        assert ":***@" in response.text
    assert http.get("/health/redis").json["checks"][0]["server_version"]
    server.stop()
    for path in HEALTH_PATHS:
        start = time.monotonic()
        response = http.get(path)
        assert time.monotonic() - start < 2.0
        assert response.status_code == 503
        assert "s3cr3t" not in response.text
        assert all(c["error"] for c in response.json["checks"])


# -- a real threaded Werkzeug server --------------------------------------------------------------
@pytest.mark.redis
def test_werkzeug_server_8_threads_sessions_survive_processes(redis_url):
    """The example app in a threaded Werkzeug process: 8 threads; sessions outlive it."""
    prefix = "t" + uuid.uuid4().hex[:12]
    env = {"KVKIT_PREFIX": prefix}
    args = ["examples/flask_app.py", redis_url, "--port", "{port}"]
    errors: list[BaseException] = []
    cookies: dict[int, str] = {}

    def browser(n: int, base: str) -> None:
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                assert http.post("/login", json={"user": f"user{n}"}).status_code == 200
                for visit in range(1, 6):
                    body = http.get("/me").json()
                    assert body == {"user": f"user{n}", "visits": visit}
                    assert http.post("/counter/hits").status_code == 200
                cookies[n] = http.cookies["session"]
        except BaseException as exc:
            errors.append(exc)

    with run_app(args, env=env) as server:
        threads = [threading.Thread(target=browser, args=(n, server.base)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        with httpx.Client(base_url=server.base, timeout=10) as http:
            assert http.post("/counter/hits").json()["value"] == 41
            assert http.get("/health/full").status_code == 200

    # A new process (same Redis): every browser's session is still there.
    with run_app(args, env=env) as server, httpx.Client(base_url=server.base, timeout=10) as http:
        for n, sid in cookies.items():
            with httpx.Client(base_url=server.base, timeout=10) as browser_again:
                response = browser_again.get("/me", headers={"cookie": f"session={sid}"})
            assert response.json() == {"user": f"user{n}", "visits": 6}
        # Logging in again rotates the id: the old cookie stops working at once.
        response = http.post(
            "/login", json={"user": "user0"}, headers={"cookie": f"session={cookies[0]}"}
        )
        assert response.cookies["session"] != cookies[0]
    with run_app(args, env=env) as server, httpx.Client(base_url=server.base, timeout=10) as http:
        stale = http.get("/me", headers={"cookie": f"session={cookies[0]}"})
        assert stale.json() == {"user": None, "visits": 1}


# -- login_session / logout_session ----------------------------------------------------------------
def add_login_routes(app: Flask) -> None:
    """/login-as/<user> (login_session) and /logout (logout_session, then a flash item)."""

    @app.post("/login-as/<user>")
    def login_as(user):
        new_id = login_session(user)
        session["user"] = user
        return {"new_id": new_id}

    @app.post("/login-empty/<user>")
    def login_empty(user):
        return {"new_id": login_session(user)}

    @app.post("/login-with-meta/<user>")
    def login_with_meta(user):
        from flask import request

        return {"new_id": login_session(user, meta={"device": request.user_agent.string})}

    @app.post("/logout")
    def logout():
        return {"deleted": logout_session()}

    @app.post("/logout-then-flash")
    def logout_then_flash():
        logout_session()
        session["flash"] = "bye"
        return {}


def test_delete_user_logs_out_every_browser_of_the_user(app_client):
    """3 browsers log in as one user; sessions.delete_user() logs all 3 out, others stay."""
    app, kv, _ = app_client
    add_login_routes(app)
    browsers = [app.test_client() for _ in range(3)]
    other = app.test_client()
    for n, browser in enumerate(browsers):
        browser.post("/set", json={"cart": [n]})
        assert browser.post("/login-as/ada").status_code == 200
        assert browser.get("/get").json == {"cart": [n], "user": "ada"}
    other.post("/login-as/bob")
    assert sorted(kv.client.sessions.user_sessions("ada")) == sorted(map(sid_of, browsers))
    assert kv.client.sessions.delete_user("ada") == 3
    for browser in browsers:
        assert browser.get("/get").json == {}
    assert other.get("/get").json == {"user": "bob"}
    assert kv.client.sessions.delete_user("ada") == 0


def test_login_session_rotates_the_id_and_keeps_the_data(app_client):
    """login_session(): a new id bound to the user, same data; the old id is dead."""
    app, kv, http = app_client
    add_login_routes(app)
    http.post("/set", json={"cart": [1]})
    old = sid_of(http)
    response = http.post("/login-as/ada")
    new = sid_of(http)
    assert response.json["new_id"] == new != old
    assert kv.client.sessions.get(old) is None
    assert kv.client.sessions.get(new) == {"cart": [1], "user": "ada"}
    assert kv.client.sessions.user_sessions("ada") == [new]


def test_login_session_meta_is_listed_for_the_devices_page(app_client):
    """login_session(user, meta=...) stores meta shown by user_sessions(details=True)."""
    app, kv, http = app_client
    add_login_routes(app)
    http.post("/login-with-meta/ada", headers={"User-Agent": "Firefox on Linux"})
    (info,) = kv.client.sessions.user_sessions("ada", details=True)
    assert info.meta == {"device": "Firefox on Linux"}
    assert info.id_hash == id_hash(sid_of(http))
    assert http.get("/get").json == {}  # meta is not session data


def test_login_session_on_an_empty_session_keeps_it(app_client):
    """A login without any data still stores the session, sets the cookie and binds it."""
    app, kv, http = app_client
    add_login_routes(app)
    response = http.post("/login-empty/ada")
    sid = sid_of(http)
    assert response.json["new_id"] == sid
    assert kv.client.sessions.user_sessions("ada") == [sid]
    assert http.get("/get").json == {}
    assert kv.client.sessions.exists(sid)


def test_logout_session_deletes_server_side_and_expires_the_cookie(app_client):
    """logout_session(): the stored session is gone at once and the cookie is expired."""
    app, kv, http = app_client
    add_login_routes(app)
    http.post("/login-as/ada")
    sid = sid_of(http)
    response = http.post("/logout")
    assert response.json == {"deleted": True}
    assert "session=;" in response.headers["Set-Cookie"]
    assert http.get_cookie("session") is None
    assert kv.client.sessions.get(sid) is None
    assert kv.client.sessions.user_sessions("ada") == []
    assert http.post("/logout").json == {"deleted": False}


def test_items_set_after_logout_start_a_new_anonymous_session(app_client):
    """A flash item written after logout_session() lives in a fresh, unbound session."""
    app, kv, http = app_client
    add_login_routes(app)
    http.post("/login-as/ada")
    sid = sid_of(http)
    http.post("/logout-then-flash")
    new = sid_of(http)
    assert new != sid
    assert kv.client.sessions.get(sid) is None
    assert kv.client.sessions.get(new) == {"flash": "bye"}
    assert kv.client.sessions.user_sessions("ada") == []


def test_login_session_needs_server_sessions():
    """login_session()/logout_session() with cookie sessions raise RuntimeError."""
    app, _ = make_app(KVKIT_SERVER_SESSIONS=False, SECRET_KEY="x")
    add_login_routes(app)
    app.testing = True
    with pytest.raises(RuntimeError, match="KVKitSessionInterface"):
        app.test_client().post("/login-as/ada")
    with pytest.raises(RuntimeError, match="KVKitSessionInterface"):
        app.test_client().post("/logout")


# -- changes between values that compare equal ----------------------------------------------------
EQUAL_VALUES = {
    "int": 1,
    "true": True,
    "float": 1.0,
    "zero": 0,
    "false": False,
    "set": {1, 2},
    "frozenset": frozenset({1, 2}),
}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("int", "true"),
        ("int", "float"),
        ("zero", "false"),
        ("true", "int"),
        ("set", "frozenset"),
        ("frozenset", "set"),
    ],
)
def test_a_change_to_an_equal_value_is_saved(app_client, before, after):
    """1 -> True, 1 -> 1.0, 0 -> False, set -> frozenset ...: the new value is stored."""
    app, kv, http = app_client

    @app.post("/put/<name>")
    def put(name):
        session["v"] = EQUAL_VALUES[name]
        return {}

    http.post(f"/put/{before}")
    http.post(f"/put/{after}")
    stored = kv.client.sessions.get(sid_of(http))["v"]
    assert type(stored) is type(EQUAL_VALUES[after])
    assert stored == EQUAL_VALUES[after]


def test_an_unchanged_session_is_not_written(app_client):
    """Reading (even nested values) writes nothing: no update, only the sliding read."""
    _, kv, http = app_client
    http.post("/set", json={"a": {"b": [1, 2]}, "n": 1})
    calls = []
    store = type(kv.client.sessions)
    original = store.update

    def spy(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    store.update = spy
    try:
        assert http.get("/get").json == {"a": {"b": [1, 2]}, "n": 1}
    finally:
        store.update = original
    assert calls == []


# -- Flask-Session settings and one lifetime for cookie and store ---------------------------------
def cookie_lifetime(response) -> float:
    """Seconds from now until the Expires of the response's session cookie."""
    cookie = response.headers["Set-Cookie"]
    expires = cookie.split("Expires=")[1].split(";")[0]
    when = dt.datetime.strptime(expires, "%a, %d %b %Y %H:%M:%S GMT")
    return (when.replace(tzinfo=dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)).total_seconds()


def test_cookie_and_store_share_the_session_ttl(app_client):
    """A permanent cookie expires when the stored session does: after KVKIT_SESSION_TTL."""
    _, kv, http = app_client
    response = http.post("/set", json={"a": 1})
    ttl = kv.client.settings.session_ttl
    assert ttl - 60 < cookie_lifetime(response) <= ttl
    assert ttl - 60 < kv.client.sessions.ttl(sid_of(http)) <= ttl
    # Every request slides both (SESSION_REFRESH_EACH_REQUEST, Flask's default).
    assert "Expires=" in http.get("/get").headers["Set-Cookie"]


def test_permanent_session_lifetime_is_the_session_ttl():
    """Flask(-Session)'s PERMANENT_SESSION_LIFETIME alone sets cookie and store lifetime."""
    app, kv = make_app(PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=2))
    assert kv.client.settings.session_ttl == 7200
    http = app.test_client()
    response = http.post("/set", json={"a": 1})
    assert 7100 < cookie_lifetime(response) <= 7200
    assert 7100 < kv.client.sessions.ttl(sid_of(http)) <= 7200
    app, kv = make_app(PERMANENT_SESSION_LIFETIME=600, KVKIT_SESSION_TTL=600)
    assert kv.client.settings.session_ttl == 600


def test_cookie_lifetime_is_capped_by_session_max_age():
    """With KVKIT_SESSION_MAX_AGE below the idle TTL the cookie never promises more."""
    app, _ = make_app(KVKIT_SESSION_TTL=3600, KVKIT_SESSION_MAX_AGE=300)
    response = app.test_client().post("/set", json={"a": 1})
    assert 240 < cookie_lifetime(response) <= 300


@pytest.mark.parametrize(
    ("config", "names"),
    [
        (
            {"PERMANENT_SESSION_LIFETIME": dt.timedelta(hours=2), "KVKIT_SESSION_TTL": 60},
            ("PERMANENT_SESSION_LIFETIME", "KVKIT_SESSION_TTL"),
        ),
        ({"PERMANENT_SESSION_LIFETIME": -5}, ("PERMANENT_SESSION_LIFETIME",)),
        ({"PERMANENT_SESSION_LIFETIME": "soon"}, ("PERMANENT_SESSION_LIFETIME",)),
        ({"SESSION_PERMANENT": "perhaps"}, ("SESSION_PERMANENT",)),
    ],
)
def test_bad_or_conflicting_session_lifetime_config(config, names):
    """Two different lifetimes, or an invalid one, fail init_app naming the keys."""
    with pytest.raises(kvkit.ConfigError) as info:
        make_app(**config)
    for name in names:
        assert name in str(info.value)


def test_session_permanent_false_gives_browser_session_cookies():
    """SESSION_PERMANENT=False: no Expires; session.permanent = True opts one session in."""
    app, _ = make_app(SESSION_PERMANENT=False)
    http = app.test_client()
    assert "Expires" not in http.post("/set", json={"a": 1}).headers["Set-Cookie"]
    response = http.post("/permanent")
    assert "Expires=" in response.headers["Set-Cookie"]
    # The choice is kept by the session for the next requests (as Flask does).
    assert "Expires=" in http.post("/set", json={"b": 2}).headers["Set-Cookie"]


def test_session_permanent_default_stores_nothing_extra():
    """With the default SESSION_PERMANENT, session.permanent = True adds no item."""
    app, kv = make_app()
    http = app.test_client()
    http.post("/permanent")
    assert kv.client.sessions.get(sid_of(http)) == {"p": 1}


def test_flask_session_only_settings_are_warned_about(caplog):
    """SESSION_TYPE / SESSION_USE_SIGNER ... are named in a warning, not silently dropped."""
    with caplog.at_level(logging.WARNING, logger="kvkit.ext.flask"):
        make_app(SESSION_TYPE="redis", SESSION_USE_SIGNER=True)
    assert "SESSION_TYPE" in caplog.text
    assert "SESSION_USE_SIGNER" in caplog.text


def test_cookie_domain_and_path_follow_flask_config():
    """SESSION_COOKIE_DOMAIN/PATH are used for setting and for deleting the cookie."""
    app, _ = make_app(SESSION_COOKIE_DOMAIN="example.com", SESSION_COOKIE_PATH="/app")
    http = app.test_client()
    cookie = http.post("/set", json={"a": 1}).headers["Set-Cookie"]
    assert "Domain=example.com" in cookie
    assert "Path=/app" in cookie


def test_sid_is_none_until_the_session_holds_data():
    """session.sid is None on a new session and is issued when it is first saved."""
    app, _ = make_app()
    seen = []

    @app.post("/sid")
    def sid():
        seen.append(session.sid)
        session["a"] = 1
        return {}

    http = app.test_client()
    http.post("/sid")
    http.post("/sid")
    assert seen == [None, sid_of(http)]


# -- an existing client (KVKit(app, client=...)) --------------------------------------------------
def test_kvkit_takes_an_existing_client():
    """KVKit(app, client=c): the app uses c for everything and close() leaves it open."""
    with kvkit.Client(settings=kvkit.Settings(prefix="t" + uuid.uuid4().hex[:12])) as client:
        app = Flask(__name__)
        app.config["KVKIT_URL"] = "redis://ignored.invalid:1"  # not read: the client wins
        kv = KVKit(app, client=client)
        app.route("/set", methods=["POST"])(lambda: session.update({"a": 1}) or {})
        http = app.test_client()
        http.post("/set")
        assert kv.client is client
        assert client.sessions.get(sid_of(http)) == {"a": 1}
        kv.close()
        client.cache.set("still", "open")
        assert client.cache.get("still") == "open"
    with pytest.raises(kvkit.ConfigError, match="kvkit.Client"):
        KVKit(Flask(__name__), client=kvkit.AsyncClient("memory://"))  # type: ignore[arg-type]


def test_kvkit_with_the_pytest_plugin_client(kvkit_client):
    """The pytest plugin's kvkit_client can be handed to the Flask extension."""
    app = Flask(__name__)
    KVKit(app, client=kvkit_client)
    app.route("/set", methods=["POST"])(lambda: session.update({"a": 1}) or {})
    http = app.test_client()
    http.post("/set")
    assert kvkit_client.sessions.get(sid_of(http)) == {"a": 1}


def test_client_and_a_conflicting_permanent_session_lifetime():
    """With client=, a PERMANENT_SESSION_LIFETIME unlike the client's session_ttl fails."""
    with kvkit.Client("memory://") as client:
        app = Flask(__name__)
        app.config["PERMANENT_SESSION_LIFETIME"] = 60
        with pytest.raises(kvkit.ConfigError, match="PERMANENT_SESSION_LIFETIME"):
            KVKit(app, client=client)


# -- the session store down (a real redis-server, stopped) ----------------------------------------
@pytest.mark.redis
def test_store_down_reads_give_empty_sessions_and_writes_reach_error_handlers(
    fresh_redis_server, caplog
):
    """Redis stopped: reads -> empty session + 1 warning; health 503 JSON; writes -> handlers."""
    url = fresh_redis_server.url
    app, _ = make_app(KVKIT_URL=url, KVKIT_RETRIES=0, KVKIT_SOCKET_TIMEOUT=1)
    bare, _ = make_app(KVKIT_URL=url, KVKIT_RETRIES=0, KVKIT_SOCKET_TIMEOUT=1)

    @app.errorhandler(kvkit.BackendError)
    def backend_down(exc):
        return {"error": "store down", "kind": type(exc).__name__}, 503

    http, bare_http = app.test_client(), bare.test_client()
    http.post("/set", json={"a": 1})
    bare_http.post("/set", json={"a": 1})
    sid = sid_of(http)
    fresh_redis_server.stop()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kvkit.ext.flask"):
        response = http.get("/get")
    assert response.status_code == 200
    assert response.json == {}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert sid not in caplog.text
    assert sid_of(http) == sid  # the cookie is kept: the session is back with the store

    for path in HEALTH_PATHS:
        response = http.get(path)
        assert response.status_code == 503
        assert response.is_json
        assert response.json["status"] == "fail"

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        response = http.post("/set", json={"b": 2})
    assert response.status_code == 503
    assert response.json == {"error": "store down", "kind": "BackendUnavailable"}
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert "TypeError" not in caplog.text
    assert sid_of(http) == sid

    response = bare_http.post("/set", json={"b": 2})  # no handler of the app's own: a 503
    assert response.status_code == 503
    bare.testing = True  # ... and with PROPAGATE_EXCEPTIONS the error propagates
    with pytest.raises(kvkit.BackendError):
        bare_http.post("/set", json={"b": 2})


@pytest.mark.redis
def test_store_down_clear_and_login_reach_error_handlers(fresh_redis_server):
    """Deleting (session.clear()) or logging in while Redis is down: the app's handler."""
    app, _ = make_app(KVKIT_URL=fresh_redis_server.url, KVKIT_RETRIES=0)
    add_login_routes(app)

    @app.errorhandler(kvkit.BackendError)
    def backend_down(exc):
        return {"error": "store down"}, 503

    http = app.test_client()
    http.post("/set", json={"a": 1})
    fresh_redis_server.stop()
    # The read fails (empty session): clearing an empty session writes nothing.
    assert http.post("/clear").status_code == 200
    assert http.post("/login-as/ada").json == {"error": "store down"}


def test_undecodable_session_reads_as_empty_with_one_warning(app_client, caplog):
    """A session holding bytes that do not decode: an empty session and one warning."""
    _, kv, http = app_client
    if kv.client.settings.url.startswith("memory"):
        pytest.skip("needs raw access to the store")
    http.post("/set", json={"a": 1})
    sid = sid_of(http)
    key = f"{kv.client.settings.prefix}:session:{{{sid[:4]}}}{sid[4:]}"
    kv.client.redis("sessions").hset(key, "d:a", b"\x80not json")
    with caplog.at_level(logging.WARNING, logger="kvkit.ext.flask"):
        response = http.get("/get")
    assert response.status_code == 200
    assert response.json == {}
    assert len(caplog.records) == 1
    assert "DecodeError" in caplog.text
    assert sid not in caplog.text
