"""Flask integration: a thread-safe client per app, server-side sessions, health endpoints.

::

    from flask import Flask, session
    from kvkit.ext.flask import KVKit, health_blueprint, regenerate_session

    app = Flask(__name__)
    app.config["KVKIT_URL"] = "redis://localhost:6379/0"
    kv = KVKit(app)                    # or kv = KVKit(); kv.init_app(app)
    app.register_blueprint(health_blueprint())

    @app.post("/login")
    def login():
        ...                            # check the password
        regenerate_session()           # new id for the logged-in session (fixation)
        session["user_id"] = user.id
        return "ok"

    @app.get("/report")
    def report():
        return kv.client.cache.get_or_set("report", build_report, ttl=60)

Configuration
-------------
``init_app`` reads the :class:`kvkit.Settings` variable names from ``app.config``:
``KVKIT_URL``, ``KVKIT_CACHE_URL``, ``KVKIT_SESSION_URL``, ``KVKIT_QUEUE_URL``,
``KVKIT_PREFIX``, ``KVKIT_CACHE_TTL``, ``KVKIT_SESSION_TTL``, ``KVKIT_TEMP_CACHE_TTL``,
``KVKIT_LONG_CACHE_TTL``, ``KVKIT_SESSION_MAX_AGE``, ``KVKIT_MAX_CONNECTIONS``,
``KVKIT_SOCKET_TIMEOUT``, ``KVKIT_CONNECT_TIMEOUT``, ``KVKIT_RETRIES``,
``KVKIT_CACHE_FAIL_OPEN`` (values may be ``str``, numbers, ``bool`` or, for durations, a
``timedelta``), plus ``KVKIT_SERVER_SESSIONS`` (default true). Unset keys keep the
Settings defaults (``memory://``). An invalid value, or an unknown ``KVKIT_*`` key (a typo),
raises :class:`kvkit.ConfigError` naming the key. The environment is not read: load it
into the config yourself if you want it (``app.config.from_prefixed_env()`` or
``app.config["KVKIT_URL"] = os.environ["KVKIT_URL"]``).

Sessions
--------
Unless ``KVKIT_SERVER_SESSIONS`` is false, ``init_app`` installs
:class:`KVKitSessionInterface`: ``flask.session`` lives in the kvkit session store
(``client.sessions``) and the cookie carries only the session id (256 random bits, not
signed because it is not guessable; ``SECRET_KEY`` is not needed for sessions). The cookie
uses Flask's own ``SESSION_COOKIE_*`` settings (name, domain, path, ``HttpOnly`` (default
on), ``Secure``, ``SameSite`` (``Lax`` when Flask's is unset), ``Partitioned``); permanent
sessions get Flask's ``PERMANENT_SESSION_LIFETIME`` as cookie expiry, while the data
expires after ``KVKIT_SESSION_TTL`` of inactivity (and ``KVKIT_SESSION_MAX_AGE`` in all).

* A request without a cookie, or with an unknown, expired or tampered one, gets a fresh
  empty session; nothing is written until the session holds data.
* Changes are saved at the end of the request as an atomic merge of the items that changed
  (nested changes included; no need for ``session.modified = True``), so concurrent
  requests of one browser that change different items do not undo each other.
* A value that cannot be stored (not JSON or a kvkit tagged type) raises
  :class:`kvkit.SerializationError` when the response is made; nothing is written and the
  session keeps its previous data.
* Emptying the session (``session.clear()``) deletes it and its cookie.
* :func:`regenerate_session` gives the session a new id at once, keeping its data; the
  old id stops working immediately. Call it on login (and on privilege changes).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import threading
from collections.abc import Mapping
from typing import Any

try:
    from flask import Blueprint, Flask, current_app, has_app_context, jsonify
    from flask import session as flask_session
    from flask.sessions import SessionInterface, SessionMixin
    from flask.wrappers import Request, Response
    from werkzeug.datastructures import CallbackDict
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kvkit.ext.flask needs Flask; install it with: pip install 'kvkit-sdk[flask]'"
    ) from exc

from .._errors import ConfigError, SerializationError
from .._settings import _ENV_FIELDS, Settings
from .._sync.client import Client
from .._sync.health import (
    DEFAULT_TIMEOUT,
    full_health,
    health_client,
    redis_health,
    services_health,
)
from .._urls import parse_bool

__all__ = [
    "KVKit",
    "KVKitSession",
    "KVKitSessionInterface",
    "health_blueprint",
    "regenerate_session",
]

log = logging.getLogger("kvkit.ext.flask")

CONFIG_PREFIX = "KVKIT_"
SERVER_SESSIONS = "KVKIT_SERVER_SESSIONS"
_EXTENSION = "kvkit"
_SETTINGS_KEYS = frozenset(CONFIG_PREFIX + suffix for suffix, _, _ in _ENV_FIELDS)


class _AppState:
    """What one app gets from :meth:`KVKit.init_app` (``app.extensions["kvkit"]``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._health: Client | None = None
        self._lock = threading.Lock()

    @property
    def health_client(self) -> Client:
        with self._lock:
            if self._health is None:
                self._health = health_client(self.client)
            return self._health

    def close(self) -> None:
        with self._lock:
            health, self._health = self._health, None
        if health is not None and health is not self.client:
            health.close()
        self.client.close()


class KVKit:
    """Give Flask apps one thread-safe :class:`kvkit.Client` each.

    Args:
        app: The app; ``None`` to call :meth:`init_app` later (app factories).

    Raises:
        ConfigError: (with ``app``) see :meth:`init_app`.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Create the app's client from ``app.config`` and install server-side sessions.

        Raises:
            ConfigError: a ``KVKIT_*`` config value is invalid or unknown; the message
                names the key and never shows a URL's password.
        """
        settings = settings_from_config(app.config)
        server_sessions = _config_bool(app.config, SERVER_SESSIONS, default=True)
        app.extensions[_EXTENSION] = _AppState(Client(settings=settings))
        if server_sessions:
            app.session_interface = KVKitSessionInterface()

    def _state(self) -> _AppState:
        if has_app_context():
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        elif self._app is not None:
            app = self._app
        else:
            raise RuntimeError(
                "no Flask app: use KVKit.client inside an app context, or pass the app to KVKit"
            )
        return _state_of(app)

    @property
    def client(self) -> Client:
        """The :class:`kvkit.Client` of the current app (or of the app given to ``KVKit``)."""
        return self._state().client

    def close(self) -> None:
        """Close the current app's connection pools (they reopen if used again)."""
        self._state().close()


def _state_of(app: Flask) -> _AppState:
    state = app.extensions.get(_EXTENSION)
    if not isinstance(state, _AppState):
        raise RuntimeError("kvkit is not set up on this app: call KVKit(app) or init_app(app)")
    return state


# -- configuration ------------------------------------------------------------------------------
def settings_from_config(config: Mapping[str, Any]) -> Settings:
    """Build :class:`kvkit.Settings` from the ``KVKIT_*`` keys of a Flask config.

    Raises:
        ConfigError: a value is invalid, or a ``KVKIT_*`` key is unknown; the message names
            the key.
    """
    environ: dict[str, str] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(CONFIG_PREFIX) or key == SERVER_SESSIONS:
            continue
        if key not in _SETTINGS_KEYS:
            known = ", ".join(sorted(_SETTINGS_KEYS | {SERVER_SESSIONS}))
            raise ConfigError(f"unknown config key {key}; kvkit reads: {known}")
        if value is None:
            continue
        environ[key] = _config_text(key, value)
    return Settings.from_env(CONFIG_PREFIX, environ, source="Flask config key")


def _config_text(key: str, value: Any) -> str:
    """A config value as the text ``Settings.from_env`` parses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, dt.timedelta):
        return str(value.total_seconds())
    raise ConfigError(
        f"config key {key} must be a str, a number, a bool or a timedelta, "
        f"not {type(value).__name__!r}"
    )


def _config_bool(config: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value)
    parsed = parse_bool(text) if text.strip() else False
    if parsed is not None:
        return parsed
    raise ConfigError(f"config key {key} must be true or false, got {value!r}")


# -- sessions ------------------------------------------------------------------------------------
class KVKitSession(CallbackDict[str, Any], SessionMixin):
    """``flask.session`` when :class:`KVKitSessionInterface` is installed.

    Attributes:
        sid: The session id (``None`` until the session is first saved).
        new: Whether the request came without a live session.
        modified: Whether the dict itself was changed (nested changes are detected at save
            time anyway).
        accessed: Whether the session was read or written.
    """

    def __init__(
        self, initial: Mapping[str, Any] | None = None, sid: str | None = None, new: bool = False
    ) -> None:
        def on_update(session: KVKitSession) -> None:
            session.modified = True
            session.accessed = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.new = new
        self.modified = False
        self.accessed = False
        self.rotated = False
        self.unsaved_error = False
        # What the store holds, to find what changed (including nested changes) at save.
        self.loaded: dict[str, Any] = copy.deepcopy(dict(initial or {}))

    # Reads mark the session accessed (Flask < 3.1.3 does not do it for us).
    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Return ``self[key]`` or ``default``."""
        self.accessed = True
        return super().get(key, default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Return ``self[key]``, first storing ``default`` if it is missing."""
        self.accessed = True
        return super().setdefault(key, default)


class KVKitSessionInterface(SessionInterface):
    """Server-side Flask sessions in the kvkit session store; the cookie holds the id only.

    Installed by :meth:`KVKit.init_app`; see this module's docstring for the behaviour.

    Args:
        client: The client whose ``sessions`` store the data. Default: the app's
            :class:`KVKit` client.
    """

    session_class = KVKitSession

    def __init__(self, client: Client | None = None) -> None:
        self._client = client

    def client_for(self, app: Flask) -> Client:
        """The client storing ``app``'s sessions."""
        return self._client if self._client is not None else _state_of(app).client

    def open_session(self, app: Flask, request: Request) -> KVKitSession:
        """Load the session named by the request's cookie, or start an empty one."""
        sid = request.cookies.get(self.get_cookie_name(app))
        if sid:
            # The store honours only ids it issued: a forged, tampered, unknown or expired
            # id reads as None (a malformed one without any I/O).
            data = self.client_for(app).sessions.get(sid)
            if data is not None:
                return self.session_class(data, sid=sid)
        return self.session_class(new=True)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write what changed, then set or delete the cookie."""
        if not isinstance(session, KVKitSession):  # pragma: no cover - another interface's
            raise TypeError(f"expected a KVKitSession, not {type(session).__name__!r}")
        if session.unsaved_error:
            return  # the error response of a failed save: the session stays as it was
        store = self.client_for(app).sessions
        if session.accessed:
            response.vary.add("Cookie")
        data = dict(session)
        if not data:
            if session.sid is not None and (session.loaded or session.modified):
                store.delete(session.sid)
                self._delete_cookie(app, response)
            return
        changes = {
            k: v for k, v in data.items() if k not in session.loaded or session.loaded[k] != v
        }
        removed = [k for k in session.loaded if k not in data]
        issued = False
        try:
            if session.sid is None:
                session.sid = store.create(data)
                issued = True
            elif (changes or removed) and store.update(
                session.sid, changes, remove=removed
            ) is None:
                # The session vanished during the request (expired, or deleted by a
                # "log out everywhere"): never resurrect it under a new id.
                log.info("session ended during the request; its changes are dropped")
                session.sid = None
                self._delete_cookie(app, response)
                return
        except SerializationError as exc:
            # Flask saves the session again for the error response; that save must not
            # fail the same way (nothing is written either way).
            session.unsaved_error = True
            raise SerializationError(
                f"the Flask session cannot be saved (nothing was written): {exc}"
            ) from exc
        session.loaded = copy.deepcopy(data)
        if issued or session.rotated or changes or removed or self.should_set_cookie(app, session):
            self._set_cookie(app, session, response)

    def _cookie_options(self, app: Flask) -> dict[str, Any]:
        options: dict[str, Any] = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "httponly": self.get_cookie_httponly(app),
            # Flask leaves SameSite unset by default; server-side sessions default to Lax.
            "samesite": self.get_cookie_samesite(app) or "Lax",
        }
        partitioned = getattr(self, "get_cookie_partitioned", None)  # Flask >= 3.1
        if partitioned is not None and partitioned(app):
            options["partitioned"] = True
        return options

    def _set_cookie(self, app: Flask, session: KVKitSession, response: Response) -> None:
        assert session.sid is not None
        response.set_cookie(
            self.get_cookie_name(app),
            session.sid,
            expires=self.get_expiration_time(app, session),
            **self._cookie_options(app),
        )
        response.vary.add("Cookie")

    def _delete_cookie(self, app: Flask, response: Response) -> None:
        response.delete_cookie(self.get_cookie_name(app), **self._cookie_options(app))
        response.vary.add("Cookie")


def regenerate_session() -> str | None:
    """Give the current session a new id, keeping its data (call it on login).

    The old id is invalid at once (atomically with the move), which defeats session
    fixation; the response carries the new cookie.

    Returns:
        The new id, or ``None`` when the session was not stored yet (it gets a fresh id
        when it is first saved anyway).

    Raises:
        RuntimeError: outside a request, or the app does not use
            :class:`KVKitSessionInterface`.
        BackendError: the backend failed.
    """
    session = flask_session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(session, KVKitSession):
        raise RuntimeError("regenerate_session() needs the app to use KVKitSessionInterface")
    if session.sid is None:
        return None
    interface = current_app.session_interface
    if not isinstance(interface, KVKitSessionInterface):  # pragma: no cover - defensive
        raise RuntimeError("regenerate_session() needs the app to use KVKitSessionInterface")
    new_sid = interface.client_for(current_app).sessions.rotate(session.sid)
    # None: the session ended meanwhile; it is saved under a fresh id if it has data.
    session.sid = new_sid
    if new_sid is None:
        session.loaded = {}
    session.rotated = True
    session.modified = True
    return new_sid


# -- health --------------------------------------------------------------------------------------
def health_blueprint(
    name: str = "kvkit_health",
    *,
    url_prefix: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Blueprint:
    """Return a blueprint with the three health endpoints (same bodies as FastAPI's).

    * ``GET /health/redis``: PING latency and version of every distinct server.
    * ``GET /health/redis/services``: a real round trip through cache, sessions and a queue.
    * ``GET /health/full``: both.

    200 when every check passes, 503 otherwise; at most about ``timeout`` seconds even when
    Redis is down (checks run in threads on a client with short timeouts and no retries);
    no secrets in the body.

    Args:
        name: The blueprint's name.
        url_prefix: Prefix of the routes.
        timeout: Seconds the checks of one request may take together.
    """
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    def respond(result: tuple[int, dict[str, Any]]) -> Response:
        code, body = result
        response = jsonify(body)
        response.status_code = code
        response.headers["Cache-Control"] = "no-store"
        return response

    def probe() -> Client:
        return _state_of(current_app._get_current_object()).health_client  # type: ignore[attr-defined]

    @blueprint.get("/health/redis")
    def health_redis() -> Response:
        return respond(redis_health(probe(), timeout=timeout))

    @blueprint.get("/health/redis/services")
    def health_services() -> Response:
        return respond(services_health(probe(), timeout=timeout))

    @blueprint.get("/health/full")
    def health_full() -> Response:
        return respond(full_health(probe(), timeout=timeout))

    return blueprint
