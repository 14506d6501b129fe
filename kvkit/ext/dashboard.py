"""The kvkit dashboard as a web app: ASGI for an ``AsyncClient``, WSGI for a ``Client``.

One page, served by kvkit itself without any web framework or external asset: every
queue under the client's prefix (ready / pending / delayed / dead, oldest ready age,
in and out per second), a throughput chart, the dead letters of a queue with their error
and delivery count and requeue / purge buttons, the cache hit ratio and p50/p99 latency per
operation, and each role's health. JSON behind it at ``GET /api/overview``.

Mount it in an application::

    from kvkit.ext.dashboard import asgi_app, wsgi_app

    app.mount("/kvkit", asgi_app(client, token=os.environ["KVKIT_DASHBOARD_TOKEN"]))  # FastAPI
    flask_app.wsgi_app = DispatcherMiddleware(                                         # Flask
        flask_app.wsgi_app, {"/kvkit": wsgi_app(kv.client, token=...)}
    )

or run it on its own: ``kvkit dashboard --url redis://... [--host 127.0.0.1] [--port 8765]``.

The actions need the token (``?token=T`` in the page's URL shows the buttons; the API
takes it in the ``X-KVKit-Token`` header); without a token the dashboard is read-only. See
:mod:`kvkit._dashboard_base` for the security rules. The figures of the cache and the
latency table are those of the client given here (the application's when mounted in it);
queues, throughput and health are read from the servers, so they cover every process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from .._async.client import AsyncClient
from .._async.dashboard import AsyncDashboard
from .._dashboard_base import MAX_BODY, Request, Response
from .._errors import ConfigError
from .._sync.client import Client
from .._sync.dashboard import Dashboard

__all__ = ["DashboardApp", "WSGIDashboardApp", "asgi_app", "wsgi_app"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""The host names a dashboard bound to a loopback address answers to (see the CLI)."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _too_large() -> Response:
    return Response.text(413, "request body too large")


class DashboardApp:
    """The ASGI application returned by :func:`asgi_app`."""

    def __init__(self, dashboard: AsyncDashboard) -> None:
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http``; ``lifespan`` when run on its own)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: not ours
            return
        body, oversized = b"", False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                oversized = True
                body = b""
            if not message.get("more_body", False):
                break
        if oversized:
            response = _too_large()
        else:
            response = await self.dashboard.handle(_asgi_request(scope, body))
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
                ],
            }
        )
        payload = b"" if scope.get("method") == "HEAD" else response.body
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Release the dashboard's own connections (the client stays open)."""
        await self.dashboard.aclose()


def _asgi_request(scope: Scope, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    root = scope.get("root_path", "") or ""
    path = scope.get("path", "/")
    # Starlette's Mount (and uvicorn's --root-path) keep the mount point in `path`.
    if root and path.startswith(root):
        path = path[len(root) :]
    return Request(
        method=scope.get("method", "GET").upper(),
        path=path or "/",
        root=root.rstrip("/"),
        query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
        headers=headers,
        body=body,
        scheme=scope.get("scheme", "http"),
    )


def asgi_app(
    client: AsyncClient,
    token: str | None = None,
    *,
    allowed_hosts: Iterable[str] | None = None,
    refresh: float = 2.0,
    title: str = "kvkit dashboard",
    discover: bool = True,
    limit: int = 100,
) -> DashboardApp:
    """Return the dashboard of ``client`` as an ASGI app (mount it, or run it with uvicorn).

    Args:
        client: The :class:`kvkit.AsyncClient` to show (it is not closed by the app).
        token: The secret the actions need; ``None``: read-only dashboard.
        allowed_hosts: Host names the app answers to (``None``: any; a loopback-bound
            server should pass :data:`LOOPBACK_HOSTS` against DNS rebinding).
        refresh: Seconds between the page's refreshes.
        title: The page's title.
        discover: Also show the queues found under the prefix, not only the client's own.
        limit: At most this many queues are shown.

    Raises:
        ConfigError: ``client`` is not an ``AsyncClient`` (use :func:`wsgi_app` for a
            ``Client``), or ``token`` is empty.
    """
    if not isinstance(client, AsyncClient):
        raise ConfigError("asgi_app needs a kvkit.AsyncClient; use wsgi_app for a kvkit.Client")
    return DashboardApp(
        AsyncDashboard(
            client,
            token=token,
            allowed_hosts=allowed_hosts,
            refresh=refresh,
            title=title,
            discover=discover,
            limit=limit,
        )
    )


class WSGIDashboardApp:
    """The WSGI application returned by :func:`wsgi_app`."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """Serve one WSGI request."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            response = _too_large()
        else:
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            response = self.dashboard.handle(_wsgi_request(environ, body))
        phrase = HTTPStatus(response.status).phrase
        start_response(f"{response.status} {phrase}", list(response.headers))
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body]

    def close(self) -> None:
        """Release the dashboard's own connections (the client stays open)."""
        self.dashboard.close()


def _wsgi_request(environ: dict[str, Any], body: bytes) -> Request:
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]

    def text(key: str) -> str:
        # WSGI hands over the raw bytes as latin-1; URLs are UTF-8.
        return str(environ.get(key, "")).encode("latin-1").decode("utf-8", "replace")

    return Request(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        path=text("PATH_INFO") or "/",
        root=text("SCRIPT_NAME").rstrip("/"),
        query=parse_qs(str(environ.get("QUERY_STRING", ""))),
        headers=headers,
        body=body,
        scheme=str(environ.get("wsgi.url_scheme", "http")),
    )


def wsgi_app(
    client: Client,
    token: str | None = None,
    *,
    allowed_hosts: Iterable[str] | None = None,
    refresh: float = 2.0,
    title: str = "kvkit dashboard",
    discover: bool = True,
    limit: int = 100,
) -> WSGIDashboardApp:
    """Return the dashboard of a sync ``client`` as a WSGI app (Flask, any WSGI server).

    Same arguments as :func:`asgi_app`, with a :class:`kvkit.Client`.

    Raises:
        ConfigError: ``client`` is not a ``Client``, or ``token`` is empty.
    """
    if not isinstance(client, Client):
        raise ConfigError("wsgi_app needs a kvkit.Client; use asgi_app for a kvkit.AsyncClient")
    return WSGIDashboardApp(
        Dashboard(
            client,
            token=token,
            allowed_hosts=allowed_hosts,
            refresh=refresh,
            title=title,
            discover=discover,
            limit=limit,
        )
    )


def require_uvicorn() -> Any:
    """Return the uvicorn module that serves the ``kvkit dashboard`` command.

    Raises:
        ImportError: uvicorn is not installed (the message says how to install it).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            "kvkit dashboard needs uvicorn; install it with: pip install 'kvkit-sdk[dashboard]'"
        ) from exc
    return uvicorn


def run(app: DashboardApp, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn until interrupted (the ``kvkit dashboard`` command).

    Raises:
        ImportError: uvicorn is not installed (the message says how to install it).
    """
    uvicorn = require_uvicorn()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    asyncio.run(uvicorn.Server(config).serve())
