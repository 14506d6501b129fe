"""Web apps for the observability tests, run as real servers (see tests/appservers.py).

    python -m uvicorn tests.obs_apps:fastapi_app --factory --port N   # FastAPI
    python -m tests.obs_apps --port N                                  # Flask (Werkzeug)

Both read ``KVKIT_URL``/``KVKIT_PREFIX`` and ``DASHBOARD_TOKEN`` from the environment,
serve ``GET /metrics``, mount the dashboard at ``/kvkit`` and do some work on
``POST /work``: two cache sets, three gets (one miss) and one queue push.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from kvkit.ext.fastapi import RedisServiceDep  # module level: FastAPI resolves annotations here


def fastapi_app() -> Any:
    """The FastAPI app (uvicorn ``--factory``)."""
    from fastapi import FastAPI

    from kvkit.ext.dashboard import asgi_app
    from kvkit.ext.fastapi import KVKit, metrics_router

    app = FastAPI()
    kv = KVKit(app)
    app.include_router(metrics_router())
    app.mount("/kvkit", asgi_app(kv.client, token=os.environ.get("DASHBOARD_TOKEN")))

    @app.post("/work")
    async def work(client: RedisServiceDep) -> dict[str, Any]:
        await client.cache.set("a", 1)
        await client.cache.set("b", 2)
        found = [await client.cache.get(key) for key in ("a", "b", "missing")]
        await client.queue("jobs").push({"n": 1})
        return {"found": found}

    return app


def flask_app() -> Any:
    """The Flask app; the dashboard is mounted with Werkzeug's dispatcher."""
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from kvkit.ext.dashboard import wsgi_app
    from kvkit.ext.flask import KVKit, metrics_blueprint

    app = Flask(__name__)
    app.config["KVKIT_URL"] = os.environ["KVKIT_URL"]
    app.config["KVKIT_PREFIX"] = os.environ.get("KVKIT_PREFIX", "kvkit")
    kv = KVKit(app)
    app.register_blueprint(metrics_blueprint())
    dashboard = wsgi_app(kv.client, token=os.environ.get("DASHBOARD_TOKEN"))
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/kvkit": dashboard})  # type: ignore[method-assign]

    @app.post("/work")
    def work() -> dict[str, Any]:
        client = kv.client
        client.cache.set("a", 1)
        client.cache.set("b", 2)
        found = [client.cache.get(key) for key in ("a", "b", "missing")]
        client.queue("jobs").push({"n": 1})
        return {"found": found}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    flask_app().run(port=parser.parse_args().port, threaded=True)
