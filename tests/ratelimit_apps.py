"""Web apps with rate-limited routes, served by tests/test_ratelimit_web.py.

``fastapi_app`` (for uvicorn) and ``flask_app`` (``python -m tests.ratelimit_apps PORT``
serves it on a threaded Werkzeug server) read ``KVKIT_URL`` and ``KVKIT_PREFIX``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from flask import Flask
from flask import request as flask_request

import kvkit
from kvkit.ext import fastapi as kv_fastapi
from kvkit.ext import flask as kv_flask


def _settings() -> kvkit.Settings:
    return kvkit.Settings(
        url=os.environ.get("KVKIT_URL", "memory://"),
        prefix=os.environ.get("KVKIT_PREFIX", "kvkit"),
    )


def _user(request: Any) -> str:
    return str(request.headers.get("x-user", "anonymous"))


# -- FastAPI ----------------------------------------------------------------------------------
fastapi_app = FastAPI()
kv_fastapi.KVKit(fastapi_app, settings=_settings())


@fastapi_app.get("/limited", dependencies=[Depends(kv_fastapi.RateLimit("3/minute"))])
async def fastapi_limited() -> dict[str, Any]:
    """Three requests a minute per client host."""
    return {"ok": True}


PER_USER = kv_fastapi.RateLimit("4/minute", key=_user, cost=2, algorithm="fixed_window")


@fastapi_app.get("/per-user")
async def fastapi_per_user(
    request: Request, decision: Annotated[kvkit.RateLimitDecision, Depends(PER_USER)]
) -> dict[str, Any]:
    """Two requests (cost 2 of 4) a minute per X-User."""
    return {"remaining": decision.remaining, "state": request.state.rate_limit.remaining}


# -- Flask ------------------------------------------------------------------------------------
flask_app = Flask(__name__)
kv_flask.KVKit(flask_app, client=kvkit.Client(settings=_settings()))


@flask_app.get("/limited")
@kv_flask.rate_limit("3/minute")
def flask_limited() -> dict[str, Any]:
    """Three requests a minute per client address."""
    return {"ok": True}


@flask_app.get("/per-user")
@kv_flask.rate_limit("4/minute", key=_user, cost=2, algorithm="token_bucket")
def flask_per_user() -> dict[str, Any]:
    """Two requests (cost 2 of 4) per X-User, then one every 30 s."""
    return {"user": _user(flask_request)}


if __name__ == "__main__":
    flask_app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
