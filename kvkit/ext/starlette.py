"""Server-side sessions for Starlette and FastAPI: a drop-in for Starlette's SessionMiddleware.

::

    from fastapi import FastAPI, Request
    from kvkit.ext.fastapi import KVKit
    from kvkit.ext.starlette import SessionMiddleware, login, logout

    app = FastAPI()
    kv = KVKit(app)
    app.add_middleware(SessionMiddleware, client=lambda: kv.client)  # was: secret_key=...

    @app.post("/login")
    async def do_login(request: Request) -> dict:
        ...                                               # check the password
        await login(request, user.id, meta={"device": request.headers.get("user-agent")})
        request.session["name"] = user.name
        return {"ok": True}

    @app.get("/me")
    async def me(request: Request) -> dict:
        return {"name": request.session.get("name")}      # plain dict, as with Starlette

    @app.post("/logout")
    async def do_logout(request: Request) -> dict:
        await logout(request)
        return {"ok": True}

Behaviour
---------
:class:`SessionMiddleware` takes the parameters of Starlette's own middleware
(``starlette.middleware.sessions.SessionMiddleware``) minus ``secret_key``: the cookie holds
a 256-bit id issued by the kvkit session store (``client.sessions``), not the data, so
there is nothing to sign. It is pure ASGI (no ``BaseHTTPMiddleware``) and serves HTTP and
WebSocket scopes.

* ``request.session`` is a ``dict``. A request without the cookie gets an empty one and
  costs no round trip; a request with it gets the stored data, loaded once before the app
  runs (Starlette reads ``request.session`` synchronously).
* Changes are saved when the response starts, as one atomic ``update`` of the items that
  changed compared with what was loaded (nested changes included: a list or dict is
  compared encoded, a ``str``, ``int``, ``bool`` or ``None`` by type and value), so two
  concurrent requests of one browser that change different items both survive. Nothing
  is written when nothing changed.
* A new session is stored, and its cookie set, only once it holds data. Emptying a
  session (``request.session.clear()``) deletes it server-side and expires the cookie.
* An id the store did not issue is never honoured: an unknown, expired, forged or
  tampered cookie gives an empty session (never an error) and its cookie is expired; the
  next write issues a new id (no session fixation).
* :func:`login` moves the session to a new id bound to a user (so
  ``client.sessions.delete_user(user_id)`` logs that browser out), with optional ``meta``
  for a "your devices" page (``client.sessions.user_sessions(user_id, details=True)``);
  :func:`logout` deletes it at once and expires the cookie.

One lifetime
------------
``max_age`` (seconds, default 14 days) is both the cookie's ``Max-Age`` and the idle TTL
of the stored session: a session lives ``max_age`` after its last request, in the browser
and on the server alike. Every response to a request that loaded a session therefore
refreshes the cookie (as the store slides the session). The client's
``Settings.session_max_age`` still caps a session's total life. ``max_age=None`` gives a
browser-session cookie (no ``Max-Age``); the stored session then idles out after
``Settings.session_ttl``. A ``max_age`` of zero or less (as with Starlette: the cookie
expires at once) stores nothing.

Cookie: ``HttpOnly`` always, ``SameSite`` (``same_site``), ``Path`` (``path``),
``Domain`` (``domain``), ``Secure`` when ``https_only``, ``Partitioned`` when
``partitioned``; the header is written as Starlette writes it.

Failures
--------
* A failed read (backend down, undecodable data) gives an empty session and one logged
  warning naming the error, never the id; the request goes on, so routes that do not
  need the session (health checks, public pages) keep answering while the store is down.
  The cookie is kept; if the request writes to the session, the items are merged into
  the stored session once it can be reached (or a new session is issued).
* A failed write is never silent: it is logged and the response becomes the app's answer
  to the :class:`kvkit.BackendError` (its ``exception_handler(kvkit.BackendError)``), or
  a 503 through the app's handler for ``HTTPException`` (FastAPI: ``{"detail": ...}``), or
  a plain 503. The response the app made is dropped.
* A value that cannot be stored raises :class:`kvkit.SerializationError` when the
  response starts (a programming error: the app's 500); nothing is written.

WebSocket
---------
The session is loaded at the handshake (``websocket.session``); changes made before
``accept()`` are saved then, with the cookie in the handshake response. Changes made
later are saved when the connection ends, to a session that already has an id (a new
session cannot get its cookie after the handshake: it is logged and not stored). A failed
save at the handshake closes the connection with code 1011.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import MutableHeaders
    from starlette.exceptions import HTTPException
    from starlette.requests import HTTPConnection, Request, cookie_parser
    from starlette.responses import PlainTextResponse, Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kvkit.ext.starlette needs Starlette; install it with: pip install 'kvkit-sdk[starlette]'"
    ) from exc

from .._async.client import AsyncClient
from .._async.sessions import AsyncSessionService
from .._errors import BackendError, ConfigError, DecodeError, SerializationError
from .._idhash import id_hash
from .._sessions_base import diff_data, snapshot_data
from .._ttl import MAX_SECONDS

__all__ = ["Session", "SessionMiddleware", "login", "logout", "session_id_hash"]

log = logging.getLogger("kvkit.ext.starlette")

_STATE = "kvkit.session"  # scope key of the per-connection state (login/logout find it there)
_SAME_SITE = ("lax", "strict", "none")
_EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "
_SAVE_FAILED = "the session could not be saved; please try again"
_START = frozenset(("http.response.start", "websocket.http.response.start"))


class Session(dict[str, Any]):
    """``request.session``: a plain ``dict`` that notes whether the app looked at it.

    Starlette's ``request.session`` calls :meth:`mark_accessed`; a response to a request
    whose session was used says ``Vary: Cookie``, as with Starlette's middleware.
    """

    __slots__ = ("accessed",)

    def __init__(self) -> None:
        super().__init__()
        self.accessed = False

    def mark_accessed(self) -> None:
        """Called by Starlette when the app reads ``request.session``."""
        self.accessed = True


class _State:
    """The session of one connection, as the middleware, :func:`login` and :func:`logout` see it."""

    __slots__ = (
        "bound",
        "candidate",
        "ended",
        "failed",
        "issued",
        "loaded",
        "sid",
        "stale",
        "store",
        "ttl",
    )

    def __init__(self, store: AsyncSessionService, ttl: int | None) -> None:
        self.store = store
        self.ttl = ttl  # idle TTL of the sessions this middleware creates (None: default)
        self.sid: str | None = None  # an id the store confirmed (loaded) or issued
        self.loaded: dict[str, Any] = {}  # the stored items as last read/written (snapshot_data)
        self.candidate: str | None = None  # the cookie's id when reading it failed
        self.stale = False  # the cookie names no live session: expire it
        self.ended = False  # logout(): expire the cookie
        self.bound = False  # login(): keep the session even while it is empty
        self.issued = False  # login(): the cookie must be (re)set
        self.failed: BaseException | None = None  # the save failed: answer with an error


class SessionMiddleware:
    """Server-side ``request.session`` over kvkit sessions; Starlette's parameters.

    See the module docstring for the behaviour. Switching from Starlette's middleware
    means changing the import and replacing ``secret_key=...`` by ``client=...``.

    Args:
        app: The ASGI app.
        client: The :class:`kvkit.AsyncClient` whose ``sessions`` store the data, or a
            zero-argument callable returning it (called per request: e.g.
            ``lambda: kv.client`` with :class:`kvkit.ext.fastapi.KVKit`, whose client is
            created at startup).
        cookie_name: Name of the cookie (Starlette calls it ``session_cookie``; either
            name is accepted).
        max_age: Seconds: the cookie's ``Max-Age`` and the stored session's idle TTL;
            ``None``: a browser-session cookie (the store's ``session_ttl`` applies);
            ``<= 0``: the cookie expires at once and nothing is stored.
        path: The cookie's ``Path``.
        same_site: ``"lax"``, ``"strict"`` or ``"none"``.
        https_only: Mark the cookie ``Secure``.
        domain: The cookie's ``Domain`` (``None``: the request's host only).
        session_cookie: Starlette's name for ``cookie_name``.
        partitioned: Mark the cookie ``Partitioned`` (CHIPS), as Starlette's option does.

    Raises:
        ConfigError: an argument is invalid.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: AsyncClient | Callable[[], AsyncClient],
        cookie_name: str = "session",
        max_age: int | None = 14 * 24 * 3600,
        path: str = "/",
        same_site: str = "lax",
        https_only: bool = False,
        domain: str | None = None,
        session_cookie: str | None = None,
        partitioned: bool = False,
    ) -> None:
        if not isinstance(client, AsyncClient) and not callable(client):
            raise ConfigError(
                f"client must be a kvkit.AsyncClient (or a callable returning one), "
                f"not {type(client).__name__!r}"
            )
        if session_cookie is not None:
            if cookie_name not in ("session", session_cookie):
                raise ConfigError("pass cookie_name or session_cookie, not both")
            cookie_name = session_cookie
        if not isinstance(cookie_name, str) or not cookie_name:
            raise ConfigError("cookie_name must be a non-empty str")
        if max_age is not None and (type(max_age) is not int):
            raise ConfigError(f"max_age must be an int or None, not {type(max_age).__name__!r}")
        if max_age is not None and max_age > MAX_SECONDS:
            raise ConfigError("max_age must be at most 100 years (the store's bound)")
        if not isinstance(same_site, str) or same_site.lower() not in _SAME_SITE:
            raise ConfigError(f"same_site must be one of {', '.join(_SAME_SITE)}")
        self.app = app
        self._client = client
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.path = path
        flags = "httponly; samesite=" + same_site.lower()
        if https_only:
            flags += "; secure"
        if domain is not None:
            flags += f"; domain={domain}"
        if partitioned:
            flags += "; partitioned"
        self._flags = flags
        self._max_age_attr = "" if max_age is None else f"Max-Age={max_age}; "
        self._ttl = max_age if max_age is not None and max_age > 0 else None
        self._store_nothing = max_age is not None and max_age <= 0
        # The cookie is re-sent with every response to a request that loaded a session,
        # because the store just restarted the session's idle TTL: browser and server
        # then agree on when it ends. A browser-session cookie needs no refresh.
        self._refresh = self._ttl is not None
        self._cookie_key = cookie_name.encode("latin-1")

    def __repr__(self) -> str:
        return f"<kvkit.ext.starlette.SessionMiddleware cookie={self.cookie_name!r}>"

    def _store(self) -> AsyncSessionService:
        client = self._client if isinstance(self._client, AsyncClient) else self._client()
        return client.sessions

    # -- cookies ---------------------------------------------------------------------------
    def _cookie_value(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"cookie" and self._cookie_key in value:
                found = cookie_parser(value.decode("latin-1")).get(self.cookie_name)
                if found:
                    return found
        return None

    def _set_cookie(self, sid: str) -> str:
        return f"{self.cookie_name}={sid}; path={self.path}; {self._max_age_attr}{self._flags}"

    def _clear_cookie(self) -> str:
        return f"{self.cookie_name}=null; path={self.path}; {_EXPIRED}{self._flags}"

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (HTTP and WebSocket get a session; others pass)."""
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        state = _State(self._store(), self._ttl)
        session = Session()
        scope["session"] = session
        scope[_STATE] = state
        cookie = self._cookie_value(scope)
        if cookie is not None:
            await self._load(state, session, cookie)
        if kind == "http":
            await self._http(scope, receive, send, state)
        else:
            await self._websocket(scope, receive, send, state)

    async def _load(self, state: _State, session: Session, cookie: str) -> None:
        store = state.store
        try:
            # Strict ids: a forged, tampered, unknown or expired id reads as None (a
            # malformed one without any I/O).
            data = await store.get(cookie)
        except (BackendError, DecodeError) as exc:
            # The id is a secret: messages name a session by its hash at most.
            log.warning(
                "the session could not be read, the request gets an empty session: %s: %s",
                type(exc).__name__,
                exc,
            )
            if isinstance(exc, BackendError):
                state.candidate = cookie  # writes are merged into it once it can be reached
            else:
                state.stale = True  # unreadable for good: the next write issues a new id
            return
        if data is None:
            state.stale = True
            return
        session.update(data)
        state.sid = cookie
        state.loaded = snapshot_data(store.codec, data)

    async def _http(self, scope: Scope, receive: Receive, send: Send, state: _State) -> None:
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if state.failed is not None:
                # The app's response is replaced by the error answer below; a streamed
                # body is cut short so that the answer does not wait for its end.
                if message.get("more_body"):
                    raise _Replaced
                return
            if message["type"] == "http.response.start" and not started:
                started = True
                if not await self._save_at_start(scope, state, message, "answering 503"):
                    return
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if state.failed is None:
                raise
        if state.failed is not None:
            await _answer_failure(scope, receive, send, state.failed)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, state: _State) -> None:
        handshake = True

        async def send_wrapper(message: Message) -> None:
            nonlocal handshake
            kind = message["type"]
            if handshake and (kind == "websocket.accept" or kind in _START):
                handshake = False
                if not await self._save_at_start(scope, state, message, "closing the WebSocket"):
                    await send({"type": "websocket.close", "code": 1011, "reason": _SAVE_FAILED})
                    return
            elif kind == "websocket.close":
                handshake = False
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            try:
                if state.failed is None:
                    await self._commit(scope, state, can_set_cookie=False)
            except (BackendError, DecodeError) as exc:
                log.error(
                    "the session could not be saved when the WebSocket ended: %s: %s",
                    type(exc).__name__,
                    exc,
                )

    async def _save_at_start(
        self, scope: Scope, state: _State, message: Message, then: str
    ) -> bool:
        """Save the session as the response starts and add its headers to ``message``.

        Returns ``False`` when the store failed: the failure is logged (``then`` says what
        the caller does instead) and kept in ``state.failed``; ``message`` must not be sent.
        """
        try:
            header = await self._commit(scope, state, can_set_cookie=True)
        except (BackendError, DecodeError) as exc:
            log.error("the session could not be saved, %s: %s: %s", then, type(exc).__name__, exc)
            state.failed = exc
            return False
        self._add_headers(scope, message, header)
        return True

    def _add_headers(self, scope: Scope, message: Message, cookie: str | None) -> None:
        session = scope.get("session")
        used = isinstance(session, Session) and session.accessed
        if cookie is None and not used:
            return
        message.setdefault("headers", [])
        headers = MutableHeaders(scope=message)
        if cookie is not None:
            headers.append("set-cookie", cookie)
        headers.add_vary_header("Cookie")

    # -- saving ----------------------------------------------------------------------------
    async def _commit(self, scope: Scope, state: _State, *, can_set_cookie: bool) -> str | None:
        """Write what changed; return the ``Set-Cookie`` value to send (``None``: none).

        Raises:
            SerializationError: the session holds a value that cannot be stored.
            BackendError, DecodeError: the store failed (the caller answers with an error).
        """
        store = state.store
        raw = scope.get("session")
        data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        if self._store_nothing:
            if state.sid is not None:
                await store.delete(state.sid)
                state.sid = None
            return self._clear_cookie() if data or state.loaded or state.ended else None
        if not data and not state.bound:
            if state.sid is not None:
                if not state.loaded:
                    # An empty session kept by login(): unchanged, so only refreshed.
                    return self._set_cookie(state.sid) if self._refresh else None
                await store.delete(state.sid)  # cleared by the app: log out
                state.sid = None
                state.loaded = {}
                return self._clear_cookie()
            if state.ended or state.stale:
                state.stale = False
                return self._clear_cookie()
            return None
        try:
            return await self._write(state, data, can_set_cookie=can_set_cookie)
        except SerializationError as exc:
            # Every value is encoded before anything is sent: nothing was written.
            raise SerializationError(
                f"the session cannot be saved (nothing was written): {exc}"
            ) from exc

    async def _write(
        self, state: _State, data: Mapping[str, Any], *, can_set_cookie: bool
    ) -> str | None:
        """The part of :meth:`_commit` that stores a non-empty (or bound) session."""
        store = state.store
        if state.sid is None:
            if state.candidate is not None:
                # The cookie's session could not be read: merge into it (an id the store
                # did not issue is refused: update never creates).
                candidate, state.candidate = state.candidate, None
                if await store.update(candidate, data) is not None:
                    state.sid = candidate
                    state.loaded = snapshot_data(store.codec, data)
                    return self._set_cookie(candidate) if self._refresh else None
            if not can_set_cookie:
                log.warning(
                    "session data set after the WebSocket handshake was not stored: "
                    "a new session needs its cookie sent with the handshake response"
                )
                return None
            state.sid = await store.create(data, ttl=state.ttl)
            state.loaded = snapshot_data(store.codec, data)
            return self._set_cookie(state.sid)
        changes, removed, snapshot = diff_data(store.codec, state.loaded, data)
        if changes or removed:
            if await store.update(state.sid, changes, remove=removed) is None:
                # The session ended during the request (expired, or "log out everywhere"):
                # never resurrect it under a new id.
                log.info("the session ended during the request; its changes are dropped")
                state.sid = None
                state.loaded = {}
                return self._clear_cookie()
            state.loaded = snapshot
        if state.issued or (self._refresh and can_set_cookie):
            state.issued = False
            return self._set_cookie(state.sid)
        return None


class _Replaced(Exception):
    """Stops a streamed response whose session could not be saved (it is answered 503)."""


async def _answer_failure(scope: Scope, receive: Receive, send: Send, exc: BaseException) -> None:
    """Send the app's answer to ``exc``: its handler for it, else a 503.

    The middleware sits outside Starlette's exception middleware, so it looks the handlers
    up itself, the way Starlette does: by the exception's classes, then (for the 503) by
    status code and by ``HTTPException``.
    """
    handlers, status_handlers = _handlers(scope)
    request = Request(scope, receive)
    handler = _lookup(handlers, exc)
    if handler is None:
        exc = HTTPException(503, _SAVE_FAILED)
        handler = status_handlers.get(503) or _lookup(handlers, exc)
    response: Any = None
    if handler is not None:
        if _is_async(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
    if not isinstance(response, Response):
        response = PlainTextResponse(_SAVE_FAILED, status_code=503)
    await response(scope, receive, send)


def _handlers(scope: Scope) -> tuple[Mapping[Any, Any], Mapping[int, Any]]:
    """The app's exception handlers: by class, and by status code."""
    found = scope.get("starlette.exception_handlers")  # set by Starlette's exception middleware
    if isinstance(found, tuple) and len(found) == 2:
        return found[0], found[1]
    registered = getattr(scope.get("app"), "exception_handlers", None) or {}
    by_class = {k: v for k, v in registered.items() if isinstance(k, type)}
    by_status = {k: v for k, v in registered.items() if isinstance(k, int)}
    return by_class, by_status


def _lookup(handlers: Mapping[Any, Any], exc: BaseException) -> Any:
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def _is_async(handler: Any) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    # An object whose __call__ is a coroutine function (Starlette checks the same).
    return callable(handler) and inspect.iscoroutinefunction(type(handler).__call__)


# -- login / logout ---------------------------------------------------------------------------
def _state_of(connection: HTTPConnection) -> _State:
    state = connection.scope.get(_STATE)
    if not isinstance(state, _State):
        raise RuntimeError(
            "kvkit.ext.starlette.SessionMiddleware is not installed on this app "
            "(app.add_middleware(SessionMiddleware, client=...))"
        )
    return state


async def login(
    request: HTTPConnection, user_id: str, meta: Mapping[str, Any] | None = None
) -> str:
    """Log this browser in as ``user_id``: a new id, the same data, bound to the user.

    Call it after checking the credentials. The session (with what it holds now,
    including this request's changes) moves to a new id owned by ``user_id``, so that
    ``client.sessions.delete_user(user_id)`` logs this browser out, and the old id stops
    working at once (session fixation). The response carries the new cookie; the session
    is kept even if it holds no data.

    Args:
        request: The request (or WebSocket, before ``accept()``).
        user_id: The user (a kvkit key: a non-empty ``str``).
        meta: What a "your devices" page should show about this session (device,
            IP address, ...): a mapping with ``str`` keys, listed by
            ``client.sessions.user_sessions(user_id, details=True)``.

    Returns:
        The new session id (a secret: do not log it).

    Raises:
        RuntimeError: the app does not use :class:`SessionMiddleware`.
        InvalidArgument: ``user_id`` or ``meta`` is invalid.
        SerializationError: the session or ``meta`` holds a value that cannot be stored.
        BackendError: the store failed (nothing changed; the app's handlers apply).
    """
    state = _state_of(request)
    store = state.store
    raw = request.scope.get("session")
    data = dict(raw) if isinstance(raw, Mapping) else {}
    snapshot = snapshot_data(store.codec, data)
    new_sid = await store.create(data, ttl=state.ttl, user_id=user_id, meta=meta)
    if state.sid is not None:
        # The old id dies right after the new one exists: there is no moment without a
        # session, and the old id is never valid after this returns.
        await store.delete(state.sid)
    state.sid = new_sid
    state.loaded = snapshot
    state.candidate = None
    state.bound = state.issued = True
    state.ended = state.stale = False
    return new_sid


async def logout(request: HTTPConnection) -> bool:
    """Log this browser out: delete its stored session now and expire the cookie.

    Items set after the call start a new anonymous session (with a new id).

    Args:
        request: The request (or WebSocket).

    Returns:
        Whether a stored session was deleted.

    Raises:
        RuntimeError: the app does not use :class:`SessionMiddleware`.
        BackendError: the store failed (the app's handlers apply).
    """
    state = _state_of(request)
    existed = False
    if state.sid is not None:
        existed = await state.store.delete(state.sid)
    raw = request.scope.get("session")
    if isinstance(raw, dict):
        raw.clear()
    state.sid = state.candidate = None
    state.loaded = {}
    state.bound = state.issued = state.stale = False
    state.ended = True
    return existed


def session_id_hash(request: HTTPConnection) -> str | None:
    """The short hash of this browser's session id (``None`` while it has none).

    Compare it with :attr:`kvkit.SessionInfo.id_hash` to mark "this device" on a
    "your devices" page.

    Raises:
        RuntimeError: the app does not use :class:`SessionMiddleware`.
    """
    sid = _state_of(request).sid
    return None if sid is None else id_hash(sid)
