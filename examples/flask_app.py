"""kvkit in a Flask app: server-side sessions, a cache, queues and health endpoints.

    python examples/flask_app.py                             # memory://, port 5000
    python examples/flask_app.py redis://localhost:6379/0 --port 8000
    KVKIT_URL=redis://localhost:6379/0 flask --app examples/flask_app.py run

Try it::

    curl -c jar -b jar -X POST localhost:5000/login -H 'content-type: application/json' \\
         -d '{"user": "ada"}'
    curl -c jar -b jar localhost:5000/me
    curl localhost:5000/health/full
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flask import Flask, abort, request, session

from kvkit.ext.flask import KVKit, health_blueprint, login_session, logout_session

kv = KVKit()

# Settings this example takes from the environment (app.config is what kvkit reads).
ENV_SETTINGS = ("KVKIT_URL", "KVKIT_PREFIX", "KVKIT_SESSION_TTL", "KVKIT_CACHE_TTL")


def create_app(url: str | None = None) -> Flask:
    """Build the app; ``url`` overrides ``KVKIT_URL`` (default ``memory://``)."""
    app = Flask(__name__)
    for name in ENV_SETTINGS:
        if os.environ.get(name):
            app.config[name] = os.environ[name]
    if url is not None:
        app.config["KVKIT_URL"] = url
    app.config.setdefault("KVKIT_URL", "memory://")
    app.config["SESSION_COOKIE_SECURE"] = os.environ.get("COOKIE_SECURE") == "1"
    kv.init_app(app)
    app.register_blueprint(health_blueprint())

    @app.get("/")
    def index() -> dict[str, Any]:
        return {"kvkit": repr(kv.client), "pid": os.getpid()}

    # -- sessions (flask.session lives in kvkit; the cookie holds only the id) --------------
    @app.post("/login")
    def login() -> dict[str, Any]:
        user = (request.get_json(silent=True) or {}).get("user")
        if not isinstance(user, str) or not user:
            abort(400)
        login_session(user)  # a new id (no fixation), bound to the user for delete_user()
        session["user"] = user
        return {"user": user}

    @app.get("/me")
    def me() -> dict[str, Any]:
        session["visits"] = session.get("visits", 0) + 1
        return {"user": session.get("user"), "visits": session["visits"]}

    @app.post("/session")
    def put_session() -> dict[str, Any]:
        session.update(request.get_json(force=True))
        return dict(session)

    @app.post("/logout")
    def logout() -> dict[str, Any]:
        logout_session()  # deletes the stored session and expires the cookie
        return {"user": None}

    @app.post("/logout-everywhere")
    def logout_everywhere() -> dict[str, Any]:
        user = session.get("user")
        count = kv.client.sessions.delete_user(user) if isinstance(user, str) else 0
        return {"sessions_deleted": count}

    # -- cache ---------------------------------------------------------------------------
    @app.put("/cache/<key>")
    def cache_put(key: str) -> dict[str, Any]:
        kv.client.cache.set(key, request.get_json(force=True), ttl=300)
        return {"key": key}

    @app.get("/cache/<key>")
    def cache_get(key: str) -> dict[str, Any]:
        value = kv.client.cache.get(key, default=None)
        if value is None:
            abort(404)
        return {"key": key, "value": value}

    @app.post("/counter/<name>")
    def counter(name: str) -> dict[str, Any]:
        return {"name": name, "value": kv.client.cache.incr(f"counter:{name}")}

    # -- queues (the original RedisService methods) --------------------------------------
    @app.post("/queue/<name>")
    def queue_push(name: str) -> dict[str, Any]:
        return {"id": kv.client.queue_push(name, request.get_json(force=True))}

    @app.post("/queue/<name>/pop")
    def queue_pop(name: str) -> dict[str, Any]:
        return {"payload": kv.client.queue_pop(name, timeout=request.args.get("timeout", 0, float))}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="kvkit Flask example")
    parser.add_argument("url", nargs="?", help="backend URL (default: $KVKIT_URL or memory://)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    # threaded=True: request threads share the app's one (thread-safe) kvkit.Client.
    create_app(args.url).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
else:
    app = create_app()  # for `flask --app examples/flask_app.py run` and WSGI servers
