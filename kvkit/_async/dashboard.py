"""The dashboard's request handling: routes, reads and actions (the servers are in ext).

``kvkit.ext.dashboard`` turns ASGI (async client) or WSGI (sync client) requests into a
:class:`~kvkit._dashboard_base.Request` and hands it to :meth:`AsyncDashboard.handle`;
the security rules and the page are written once outside this module.

Routes (below the mount point):

=====================  ======  ===============================================================
``/``                  GET     the page (``?queue=NAME`` shows that queue's dead letters,
                               ``?token=T`` enables the action buttons)
``/fragment``          GET     the page's content only, which the page's script re-fetches
``/api/overview``      GET     everything on the page as JSON
``/api/dead``          GET     ``?queue=NAME&count=N``: dead letters (id, error, deliveries)
``/api/requeue``       POST    ``?queue=NAME``, ``id=...`` (repeatable) or ``all=1``
``/api/delete-dead``   POST    the same, deleting the dead letters ("purge")
``/static/...``        GET     the page's script and style sheet
=====================  ======  ===============================================================

An action answers JSON to a JSON request (``{"ids": [...]}`` or ``{"all": true}``, token in
the ``X-KVKit-Token`` header) and redirects back to the page after a form.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._dashboard_base import (
    Request,
    Response,
    action_refusal,
    host_allowed,
    json_response,
    static_file,
    token_ok,
)
from .._dashboard_html import render_content, render_page
from .._errors import ConfigError, KVKitError
from .._overview import describe_error
from .overview import AsyncQueueWatch, dead_letters, overview

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["AsyncDashboard"]

#: Dead letters listed on the page (the JSON route takes ``count``, up to 1000).
PAGE_DEAD = 20
_MAX_DEAD = 1000
_YES = frozenset({"1", "true", "True", "yes", "on"})


class AsyncDashboard:
    """Serves the dashboard of one client.

    Args:
        client: The client whose queues, metrics and health are shown.
        token: Enables the actions; ``None``: the dashboard is read-only.
        allowed_hosts: Host names (without port, any case) requests may be addressed to;
            ``None`` accepts any (leave that to the application the dashboard is mounted in).
        refresh: Seconds between the page's refreshes.
        title: The page's title.
        discover: Also show queues found under the prefix (not only the client's).
        limit: At most this many queues are shown.

    Raises:
        ConfigError: ``token`` is not a non-empty str or ``None``.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        token: str | None = None,
        allowed_hosts: Iterable[str] | None = None,
        refresh: float = 2.0,
        title: str = "kvkit dashboard",
        discover: bool = True,
        limit: int = 100,
    ) -> None:
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ConfigError("the dashboard token must be a non-empty str (or None: read-only)")
        self.token = token
        self.watch = AsyncQueueWatch(client, discover=discover, limit=limit)
        self.allowed_hosts = (
            None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        )
        self.refresh = refresh
        self.title = title

    async def handle(self, request: Request) -> Response:
        """Answer one request (never raises for backend failures)."""
        if not host_allowed(request, self.allowed_hosts):
            return Response.text(403, "unknown host")
        path = request.path or "/"
        if path in ("/api/requeue", "/api/delete-dead"):
            if request.method != "POST":
                return Response.text(405, "POST only", ("allow", "POST"))
            return await self._act(request, path.rsplit("/", 1)[1])
        if request.method not in ("GET", "HEAD"):
            return Response.text(405, "GET only", ("allow", "GET"))
        if path.startswith("/static/"):
            found = static_file(path[len("/static/") :])
            return found if found is not None else Response.text(404, "not found")
        if path in ("/", "/fragment"):
            return await self._page(request, fragment=path == "/fragment")
        if path == "/api/overview":
            data = await overview(self.watch)
            given = request.headers.get("x-kvkit-token") or request.arg("token")
            data["actions"] = token_ok(self.token, given)
            return json_response(200, data)
        if path == "/api/dead":
            return await self._dead(request)
        return Response.text(404, "not found")

    async def _page(self, request: Request, *, fragment: bool) -> Response:
        data = await overview(self.watch)
        given = request.arg("token")
        act = token_ok(self.token, given)
        names = [q["name"] for q in data["queues"]]
        wanted = request.arg("queue")
        queue = (
            wanted
            if wanted in names
            else next((q["name"] for q in data["queues"] if q["dead"]), None)
        )
        dead: list[dict[str, Any]] | None = None
        if queue is not None:
            try:
                dead = await dead_letters(self.watch, queue, PAGE_DEAD)
            except KVKitError as exc:
                data["queues_error"] = describe_error(exc)
        token = given if act else ""
        if fragment:
            html = render_content(request, data, queue=queue, dead=dead, token=token, act=act)
        else:
            html = render_page(
                request,
                data,
                queue=queue,
                dead=dead,
                token=token,
                act=act,
                refresh=self.refresh,
                title=self.title,
            )
        return Response.make(200, html, "text/html; charset=utf-8")

    async def _known(self, name: str) -> bool:
        return bool(name) and name in await self.watch.names()

    async def _dead(self, request: Request) -> Response:
        name = request.arg("queue")
        try:
            count = int(request.arg("count", str(PAGE_DEAD)))
        except ValueError:
            return json_response(400, {"error": "count must be a whole number"})
        if not 1 <= count <= _MAX_DEAD:
            return json_response(400, {"error": f"count must be 1..{_MAX_DEAD}"})
        try:
            if not await self._known(name):
                return json_response(404, {"error": "unknown queue"})
            rows = await dead_letters(self.watch, name, count)
        except KVKitError as exc:
            return json_response(503, {"error": describe_error(exc)})
        return json_response(200, {"queue": name, "dead": rows})

    async def _act(self, request: Request, verb: str) -> Response:
        refusal = action_refusal(request, self.token)
        if refusal is not None:
            return (
                json_response(403, {"error": refusal})
                if request.wants_json()
                else Response.text(403, refusal)
            )
        name = request.arg("queue")
        form = request.form()
        ids = [*form.get("id", []), *form.get("ids", [])]
        every = any(value in _YES for value in form.get("all", []))
        if not ids and not every:
            return json_response(400, {"error": "give the dead letters' ids, or all"})
        try:
            if not await self._known(name):
                return json_response(404, {"error": "unknown queue"})
            queue = self.watch.probe.queue(name)
            wanted = None if every else ids
            if verb == "requeue":
                result = {"queue": name, "requeued": await queue.requeue_dead(wanted)}
            else:
                result = {"queue": name, "deleted": await queue.delete_dead(wanted)}
        except KVKitError as exc:
            return json_response(503, {"error": describe_error(exc)})
        if request.wants_json():
            return json_response(200, result)
        token = request.headers.get("x-kvkit-token") or form.get("token", [""])[0]
        return Response.redirect(request.link("/", queue=name, token=token))

    async def aclose(self) -> None:
        """Release the dashboard's probe connections (not the client's)."""
        await self.watch.aclose()
