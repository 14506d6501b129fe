"""Flask integration: a thread-safe client per app, server-side sessions, health endpoints.

::

    from flask import Flask, session
    from kvkit.ext.flask import KVKit, health_blueprint, login_session, logout_session

    app = Flask(__name__)
    app.config["KVKIT_URL"] = "redis://localhost:6379/0"
    kv = KVKit(app)                    # or kv = KVKit(); kv.init_app(app); or KVKit(app, client=c)
    app.register_blueprint(health_blueprint())

    @app.post("/login")
    def login():
        ...                            # check the password
        login_session(user.id)         # new id (fixation), bound to the user
        session["user_id"] = user.id
        return "ok"

    @app.post("/logout")
    def logout():
        logout_session()               # deleted server-side, cookie expired
        return "bye"

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
``KVKIT_CACHE_FAIL_OPEN``, ``KVKIT_METRICS`` (values may be ``str``, numbers, ``bool`` or,
for durations, a ``timedelta``), plus ``KVKIT_SERVER_SESSIONS`` (default true). Unset keys keep the
Settings defaults (``memory://``). An invalid value, or an unknown ``KVKIT_*`` key (a typo),
raises :class:`kvkit.ConfigError` naming the key. The environment is not read: load it
into the config yourself if you want it (``app.config.from_prefixed_env()`` or
``app.config["KVKIT_URL"] = os.environ["KVKIT_URL"]``). ``KVKit(app, client=c)`` uses an
existing :class:`kvkit.Client` instead (the ``KVKIT_*`` settings keys are then not read, and
``close()`` leaves ``c`` open).

Flask-Session's names are honoured where they mean something here: ``SESSION_PERMANENT``
(default true), ``PERMANENT_SESSION_LIFETIME`` (the session TTL when ``KVKIT_SESSION_TTL``
is not set; a different value from it is a ``ConfigError``; Flask's default of 31 days
counts as unset), ``SESSION_REFRESH_EACH_REQUEST`` and ``SESSION_COOKIE_*``. Its other keys
(``SESSION_TYPE``, ``SESSION_USE_SIGNER``, ``SESSION_KEY_PREFIX``, ...) are ignored with a
warning at ``init_app``.

Sessions
--------
Unless ``KVKIT_SERVER_SESSIONS`` is false, ``init_app`` installs
:class:`KVKitSessionInterface`: ``flask.session`` lives in the kvkit session store
(``client.sessions``) and the cookie carries only the session id (256 random bits, not
signed because it is not guessable; ``SECRET_KEY`` is not needed for sessions). The cookie
uses Flask's own ``SESSION_COOKIE_*`` settings (name, domain, path, ``HttpOnly`` (default
on), ``Secure``, ``SameSite`` (``Lax`` when Flask's is unset), ``Partitioned``).

One lifetime: the stored session expires after ``session_ttl`` (``KVKIT_SESSION_TTL``, or
``PERMANENT_SESSION_LIFETIME``) of inactivity, and a permanent session's cookie expires
``session_ttl`` after the response (capped by ``KVKIT_SESSION_MAX_AGE``), refreshed on
every request (``SESSION_REFRESH_EACH_REQUEST``) as the stored session slides. Sessions
are permanent unless ``SESSION_PERMANENT`` is false (then the cookie ends with the browser
session; ``session.permanent = True`` opts one session in, and is remembered).

* A request without a cookie, or with an unknown, expired or tampered one, gets a fresh
  empty session with ``session.sid`` ``None``; nothing is written, and no id exists, until
  the session holds data (ids are issued by the store, never made up by the app).
* Changes are saved at the end of the request as an atomic merge of the items that changed
  (found by comparing encoded values: nested changes and changes between equal values such
  as ``1`` and ``True`` included; no need for ``session.modified = True``), so concurrent
  requests of one browser that change different items do not undo each other.
* A value that cannot be stored (not JSON or a kvkit tagged type) raises
  :class:`kvkit.SerializationError` when the response is made; nothing is written and the
  session keeps its previous data.
* Emptying the session (``session.clear()``) deletes it and its cookie.
* :func:`login_session` moves the session to a new id bound to a user (so
  ``sessions.delete_user(user_id)`` logs the browser out); :func:`logout_session` deletes
  it at once and expires the cookie. :func:`regenerate_session` only changes the id.
* Store failures: a failed read (backend down, undecodable data) gives an empty
  session and one logged warning (the cookie is kept); the health endpoints never load
  the session. A failed write is logged and the response becomes the app's answer to the
  :class:`kvkit.BackendError` (its ``errorhandler(kvkit.BackendError)``), or a 503 when it
  has none (with ``PROPAGATE_EXCEPTIONS``, as under ``app.testing``, the error propagates);
  the stored session and the cookie stay as they were.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

try:
    from flask import Blueprint, Flask, current_app, g, has_app_context, jsonify
    from flask import request as flask_request
    from flask import session as flask_session
    from flask.blueprints import BlueprintSetupState
    from flask.sessions import SessionInterface, SessionMixin
    from flask.wrappers import Request, Response
    from werkzeug.datastructures import CallbackDict
    from werkzeug.exceptions import ServiceUnavailable
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kvkit.ext.flask needs Flask; install it with: pip install 'kvkit-sdk[flask]'"
    ) from exc

from .._errors import BackendError, ConfigError, DecodeError, InvalidArgument, SerializationError
from .._ratelimit_base import (
    Rate,
    make_spec,
    response_headers,
    validate_cost,
    validate_limiter_name,
)
from .._sessions_base import diff_data, snapshot_data
from .._settings import _ENV_FIELDS, Settings
from .._sync.client import Client
from .._sync.health import (
    DEFAULT_TIMEOUT,
    full_health,
    health_client,
    redis_health,
    services_health,
)
from .._ttl import seconds_to_ms
from .._urls import parse_bool

__all__ = [
    "KVKit",
    "KVKitSession",
    "KVKitSessionInterface",
    "health_blueprint",
    "login_session",
    "logout_session",
    "metrics_blueprint",
    "rate_limit",
    "regenerate_session",
]

log = logging.getLogger("kvkit.ext.flask")

CONFIG_PREFIX = "KVKIT_"
SERVER_SESSIONS = "KVKIT_SERVER_SESSIONS"
SESSION_PERMANENT = "SESSION_PERMANENT"  # Flask-Session's name; default true as there
_SESSION_TTL_KEY = "KVKIT_SESSION_TTL"
_LIFETIME_KEY = "PERMANENT_SESSION_LIFETIME"
_FLASK_DEFAULT_LIFETIME = 31 * 86400.0  # Flask's default PERMANENT_SESSION_LIFETIME
#: Flask-Session settings that have no meaning here (the id is a 256-bit secret issued by
#: the store, not signed; keys and serialization are kvkit's): warned about, not used.
_FLASK_SESSION_ONLY = (
    "SESSION_TYPE",
    "SESSION_USE_SIGNER",
    "SESSION_KEY_PREFIX",
    "SESSION_ID_LENGTH",
    "SESSION_SERIALIZATION_FORMAT",
    "SESSION_REDIS",
    "SESSION_CLEANUP_N_REQUESTS",
)
_EXTENSION = "kvkit"
_SESSIONLESS_PATHS = "kvkit.sessionless_paths"  # app.extensions key: paths that skip sessions
_SETTINGS_KEYS = frozenset(CONFIG_PREFIX + suffix for suffix, _, _ in _ENV_FIELDS)


class _AppState:
    """What one app gets from :meth:`KVKit.init_app` (``app.extensions["kvkit"]``)."""

    def __init__(self, client: Client, *, owns_client: bool = True) -> None:
        self.client = client
        self.owns_client = owns_client
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
        if self.owns_client:
            self.client.close()


class KVKit:
    """Give Flask apps one thread-safe :class:`kvkit.Client` each.

    Args:
        app: The app; ``None`` to call :meth:`init_app` later (app factories).
        client: An existing client to use (e.g. the pytest plugin's ``kvkit_client``)
            instead of one built from ``app.config``; the ``KVKIT_*`` settings keys are
            then not read, and :meth:`close` leaves it open (whoever made it closes it).

    Raises:
        ConfigError: (with ``app``) see :meth:`init_app`; ``client`` is not a
            :class:`kvkit.Client`.
    """

    def __init__(self, app: Flask | None = None, *, client: Client | None = None) -> None:
        if client is not None and not isinstance(client, Client):
            raise ConfigError(f"client must be a kvkit.Client, not {type(client).__name__!r}")
        self._app = app
        self._client = client
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<kvkit.ext.flask.KVKit client={self._client!r}>"

    def init_app(self, app: Flask) -> None:
        """Set up the app's client (from ``app.config`` unless one was given) and sessions.

        Raises:
            ConfigError: a ``KVKIT_*`` config value is invalid or unknown, or
                ``SESSION_PERMANENT`` / ``PERMANENT_SESSION_LIFETIME`` is invalid or
                disagrees with ``KVKIT_SESSION_TTL``; the message names the key and never
                shows a URL's password.
        """
        server_sessions = _config_bool(app.config, SERVER_SESSIONS, default=True)
        _config_bool(app.config, SESSION_PERMANENT, default=True)  # fail at startup
        if self._client is not None:
            _check_lifetime(app.config, self._client.settings.session_ttl, "the client's")
            state = _AppState(self._client, owns_client=False)
        else:
            state = _AppState(Client(settings=settings_from_config(app.config)))
        app.extensions[_EXTENSION] = state
        if server_sessions:
            app.session_interface = KVKitSessionInterface()
            ignored = [key for key in _FLASK_SESSION_ONLY if key in app.config]
            if ignored:
                log.warning(
                    "kvkit sessions ignore the Flask-Session setting(s) %s (see the README's "
                    "Flask section); sessions stored by Flask-Session are not read",
                    ", ".join(ignored),
                )

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
    if _SESSION_TTL_KEY in environ:
        _check_lifetime(config, environ[_SESSION_TTL_KEY], "the configured")
    else:
        lifetime = _flask_lifetime(config)
        if lifetime is not None:  # Flask-Session's name for the same thing
            environ[_SESSION_TTL_KEY] = repr(lifetime)
    return Settings.from_env(CONFIG_PREFIX, environ, source="Flask config key")


def _flask_lifetime(config: Mapping[str, Any]) -> float | None:
    """``PERMANENT_SESSION_LIFETIME`` in seconds; ``None`` when unset or Flask's default.

    Flask always has a value (31 days), so only another value counts as the app's choice.

    Raises:
        ConfigError: it is not a positive number of seconds or ``timedelta`` of at most
            100 years.
    """
    value = config.get(_LIFETIME_KEY)
    if value is None:
        return None
    try:
        seconds = seconds_to_ms(value, _LIFETIME_KEY) / 1000
    except InvalidArgument as exc:
        raise ConfigError(f"config key {_LIFETIME_KEY} is invalid: {exc}") from None
    return None if seconds == _FLASK_DEFAULT_LIFETIME else seconds


def _check_lifetime(config: Mapping[str, Any], session_ttl: Any, source: str) -> None:
    """Refuse a ``PERMANENT_SESSION_LIFETIME`` that disagrees with the session TTL.

    Cookie and stored session share one lifetime (the store's idle TTL); two different
    values would mean a cookie promising what the server does not keep, or the reverse.
    """
    lifetime = _flask_lifetime(config)
    try:
        ttl = float(session_ttl)
    except ValueError:
        return  # Settings.from_env reports the invalid KVKIT_SESSION_TTL, naming it
    if lifetime is not None and lifetime != ttl:
        raise ConfigError(
            f"{_LIFETIME_KEY} ({lifetime:g} s) and {source} session TTL "
            f"(KVKIT_SESSION_TTL, {ttl:g} s) disagree: kvkit uses one lifetime for the "
            "session cookie and the stored session; set only one of them"
        )


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
_PERMANENT_ITEM = "_permanent"  # where Flask (and Flask-Session) keep a per-session override


class KVKitSession(CallbackDict[str, Any], SessionMixin):
    """``flask.session`` when :class:`KVKitSessionInterface` is installed.

    Attributes:
        sid: The session id, or ``None`` while the session is not stored: a request
            without a live session gets an empty session without an id, and an id is
            issued (by the store) when the session is first saved with data (or by
            :func:`login_session`).
        new: Whether the request came without a live session.
        modified: Whether the dict itself was changed (nested changes are detected at save
            time anyway).
        accessed: Whether the session was read or written.
    """

    def __init__(
        self,
        initial: Mapping[str, Any] | None = None,
        sid: str | None = None,
        new: bool = False,
        *,
        permanent_default: bool = True,
    ) -> None:
        def on_update(session: KVKitSession) -> None:
            session.modified = True
            session.accessed = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.new = new
        self.modified = False
        self.accessed = False
        self.permanent_default = permanent_default
        self.rotated = False  # the id changed during the request: the cookie must follow
        self.bound = False  # login_session() ran: keep the session even when empty
        self.ended = False  # logout_session() ran: the cookie must go
        self.save_failed = False  # a save failed; Flask saves again for the error response
        # What the store holds, by item (snapshot_data): comparing with it finds every
        # change, including nested ones and those between values that compare equal
        # (1 -> True, 1 -> 1.0, set -> frozenset).
        self.loaded: dict[str, Any] = {}

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (default: ``SESSION_PERMANENT``).

        Setting it to the configured default stores nothing; another value is stored in
        the session (as Flask does), so it holds for the following requests too.
        """
        value = dict.get(self, _PERMANENT_ITEM)
        return self.permanent_default if value is None else bool(value)

    @permanent.setter
    def permanent(self, value: bool) -> None:
        if bool(value) == self.permanent_default:
            if _PERMANENT_ITEM in self:
                del self[_PERMANENT_ITEM]
        else:
            self[_PERMANENT_ITEM] = bool(value)

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
        """Load the session named by the request's cookie, or start an empty one.

        A failed read (backend down, undecodable data) gives an empty session and logs a
        warning: the request goes on (health endpoints, pages that need no login), and
        the stored session is left as it is.
        """
        permanent = _config_bool(app.config, SESSION_PERMANENT, default=True)
        sid = request.cookies.get(self.get_cookie_name(app))
        # Health endpoints never touch the session: they must answer whatever its store does.
        if sid and request.path not in app.extensions.get(_SESSIONLESS_PATHS, ()):
            store = self.client_for(app).sessions
            try:
                # The store honours only ids it issued: a forged, tampered, unknown or
                # expired id reads as None (a malformed one without any I/O).
                data = store.get(sid)
                if data is not None:
                    session = self.session_class(data, sid=sid, permanent_default=permanent)
                    session.loaded = snapshot_data(store.codec, data)
                    return session
            except (BackendError, DecodeError) as exc:
                # The id is a secret: the message names the session by its hash at most.
                log.warning(
                    "the session could not be read, the request gets an empty session: %s: %s",
                    type(exc).__name__,
                    exc,
                )
        return self.session_class(new=True, permanent_default=permanent)

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> dt.datetime | None:
        """Cookie expiry of a permanent session: now + the store's idle TTL (one source).

        The stored session slides by ``session_ttl`` on every request, so the cookie says
        the same (never more than ``session_max_age`` either). Non-permanent sessions get
        a browser-session cookie.
        """
        if not session.permanent:
            return None
        settings = self.client_for(app).settings
        lifetime = settings.session_ttl
        if settings.session_max_age is not None:
            lifetime = min(lifetime, settings.session_max_age)
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=lifetime)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write what changed, then set or delete the cookie.

        A backend failure is never silent: it is logged and handed to the app's error
        handler for :class:`kvkit.BackendError` (or answered 503), see the module docstring.
        """
        if not isinstance(session, KVKitSession):  # pragma: no cover - defensive
            opened: object = session
            if opened is None:
                return  # opening failed with an error Flask is already answering
            raise TypeError(f"expected a KVKitSession, not {type(session).__name__!r}")
        if session.save_failed:
            return  # the error response of a failed save: the session stays as it was
        if session.accessed:
            response.vary.add("Cookie")
        try:
            self._write(app, session, response)
        except SerializationError as exc:
            # Flask saves the session again for the error response; that save must not
            # fail the same way (nothing is written either way).
            session.save_failed = True
            raise SerializationError(
                f"the Flask session cannot be saved (nothing was written): {exc}"
            ) from exc
        except BackendError as exc:
            session.save_failed = True
            log.error("the Flask session could not be saved: %s: %s", type(exc).__name__, exc)
            # Inside the except block: Flask's handle_user_exception re-raises the active
            # exception when the app has no handler for it.
            _answer_with_error(app, response)

    def _write(self, app: Flask, session: KVKitSession, response: Response) -> None:
        store = self.client_for(app).sessions
        data = dict(session)
        if not data and not session.bound:
            if session.sid is not None and (session.loaded or session.modified):
                store.delete(session.sid)
                session.sid = None
                session.ended = True
            if session.ended:
                self._delete_cookie(app, response)
            return
        # A value that cannot be stored raises SerializationError before any write: the
        # snapshot encodes what may change in place, create/update the rest before sending.
        changes, removed, snapshot = diff_data(store.codec, session.loaded, data)
        issued = False
        if session.sid is None:
            session.sid = store.create(data)
            issued = True
        elif (changes or removed) and store.update(session.sid, changes, remove=removed) is None:
            # The session vanished during the request (expired, or deleted by a
            # "log out everywhere"): never resurrect it under a new id.
            log.info("session ended during the request; its changes are dropped")
            session.sid = None
            self._delete_cookie(app, response)
            return
        session.loaded = snapshot
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


def _answer_with_error(app: Flask, response: Response) -> None:
    """Turn ``response`` into the app's answer to the exception being handled.

    The session is saved after the view and the ``after_request`` functions, where Flask
    no longer runs error handlers of its own, so this asks the app for the response it
    would give had the view raised: its handler for the exception (e.g.
    ``errorhandler(kvkit.BackendError)``), else a 503 (through the app's 503 handler if
    it has one). With ``PROPAGATE_EXCEPTIONS`` (testing, debug) and no handler, the
    exception propagates as Flask's own errors do. The answer replaces the response in
    place (status, headers and body).
    """
    try:
        answer = app.handle_user_exception(sys.exc_info()[1])  # type: ignore[arg-type]
    except BackendError:
        propagate = app.config.get("PROPAGATE_EXCEPTIONS")
        if propagate if propagate is not None else (app.testing or app.debug):
            raise
        answer = app.handle_http_exception(
            ServiceUnavailable("the session could not be saved; please try again")
        )
    replacement = app.make_response(answer)
    response.status = replacement.status
    response.headers = replacement.headers
    response.response = replacement.response
    response.direct_passthrough = replacement.direct_passthrough


def _current_session() -> tuple[KVKitSession, KVKitSessionInterface]:
    session = flask_session._get_current_object()  # type: ignore[attr-defined]
    interface = current_app.session_interface
    if not isinstance(session, KVKitSession) or not isinstance(interface, KVKitSessionInterface):
        raise RuntimeError("this needs the app to use KVKitSessionInterface (server sessions)")
    return session, interface


def regenerate_session() -> str | None:
    """Give the current session a new id, keeping its data (call it on login).

    The old id is invalid at once (atomically with the move), which defeats session
    fixation; the response carries the new cookie. To also bind the session to a user
    (so that ``sessions.delete_user()`` logs it out), use :func:`login_session`.

    Returns:
        The new id, or ``None`` when the session was not stored yet (it gets a fresh id
        when it is first saved anyway).

    Raises:
        RuntimeError: outside a request, or the app does not use
            :class:`KVKitSessionInterface`.
        BackendError: the backend failed.
    """
    session, interface = _current_session()
    if session.sid is None:
        return None
    new_sid = interface.client_for(current_app).sessions.rotate(session.sid)
    # None: the session ended meanwhile; it is saved under a fresh id if it has data.
    session.sid = new_sid
    if new_sid is None:
        session.loaded = {}
    session.rotated = True
    session.modified = True
    return new_sid


def login_session(user_id: str, meta: Mapping[str, Any] | None = None) -> str:
    """Log the current browser in as ``user_id``: a new id, the same data, bound to the user.

    Call it after checking the credentials. The session (with what it holds now,
    including this request's changes) moves to a new id owned by ``user_id``, so that
    ``client.sessions.delete_user(user_id)`` logs this browser out, and the old id stops
    working (session fixation). The response carries the new cookie; the session is kept
    even if it holds no data.

    Args:
        user_id: The user (a kvkit key: a non-empty ``str``).
        meta: What a "your devices" page should show about this session (device, IP
            address, ...): a mapping with ``str`` keys, listed by
            ``client.sessions.user_sessions(user_id, details=True)``.

    Returns:
        The new session id.

    Raises:
        RuntimeError: outside a request, or the app does not use
            :class:`KVKitSessionInterface`.
        InvalidArgument: ``user_id`` or ``meta`` is invalid.
        SerializationError: the session or ``meta`` holds a value that cannot be stored.
        BackendError: the backend failed (the view's error handlers apply).
    """
    session, interface = _current_session()
    store = interface.client_for(current_app).sessions
    data = dict(session)
    new_sid = store.create(data, user_id=user_id, meta=meta)
    if session.sid is not None:
        # The old id dies right after the new one exists (create + delete: there is no
        # moment without a session, and the old id is never valid after this returns).
        store.delete(session.sid)
    session.sid = new_sid
    session.loaded = snapshot_data(store.codec, data)
    session.rotated = session.bound = True
    session.ended = False
    return new_sid


def logout_session() -> bool:
    """Log the current browser out: delete its stored session now and expire the cookie.

    Items set after the call (say, a flashed "goodbye") start a new anonymous session.

    Returns:
        Whether a stored session was deleted.

    Raises:
        RuntimeError: outside a request, or the app does not use
            :class:`KVKitSessionInterface`.
        BackendError: the backend failed (the view's error handlers apply).
    """
    session, interface = _current_session()
    existed = False
    if session.sid is not None:
        existed = interface.client_for(current_app).sessions.delete(session.sid)
    dict.clear(session)  # no callback: clearing this dict is not a change to save
    session.sid = None
    session.loaded = {}
    session.bound = session.rotated = False
    session.ended = session.accessed = True
    return existed


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
    paths = ("/health/redis", "/health/redis/services", "/health/full")

    @blueprint.record
    def skip_sessions(state: BlueprintSetupState) -> None:
        # The health routes must not depend on (or slide) the session: answer 503 JSON
        # when the store is down, whatever cookie the request carries.
        prefix = (state.url_prefix or "").rstrip("/")
        skipped = state.app.extensions.setdefault(_SESSIONLESS_PATHS, set())
        skipped.update(prefix + path for path in paths)

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


# -- rate limits ---------------------------------------------------------------------------------
_View = TypeVar("_View", bound=Callable[..., Any])


def rate_limit(
    rate: Any,
    *,
    key: Callable[[Request], str] | None = None,
    name: str | None = None,
    algorithm: str = "sliding_window",
    cost: int = 1,
    burst: int | None = None,
    fail_open: bool = False,
) -> Callable[[_View], _View]:
    """View decorator: rate-limit a route (``@rate_limit("5/minute")`` under ``@app.get``).

    Each request costs ``cost`` units of the allowance of ``key(request)`` (default: the
    client's address, ``request.remote_addr``) under the limiter ``name`` (default: the
    view function's dotted name). A denied request gets a 429 with ``Retry-After`` and
    ``{"detail": "rate limit exceeded"}`` and the view does not run; allowed and denied
    responses carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``
    (whole seconds, rounded up). The decision is ``flask.g.rate_limit`` during the view.
    The limiter runs on the app's :class:`KVKit` client.

    Args:
        rate: ``"N/minute"``, ... or a :class:`kvkit.Rate`.
        key: ``key(request) -> str`` naming whose allowance a request uses.
        name: The limiter's name; views sharing a name share the counter.
        algorithm: ``"sliding_window"``, ``"fixed_window"`` or ``"token_bucket"``.
        cost: Units one request takes.
        burst: Extra units of the token bucket.
        fail_open: Admit requests (and log a warning) while the backend is down.

    Raises:
        InvalidArgument: a bad rate, name, algorithm, burst or cost (at import time).
    """
    parsed = Rate.parse(rate)
    units = validate_cost(cost, make_spec(parsed, algorithm, burst))
    options: dict[str, Any] = {"algorithm": algorithm, "burst": burst, "fail_open": fail_open}
    limiters: weakref.WeakKeyDictionary[Client, Any] = weakref.WeakKeyDictionary()

    def decorator(view: _View) -> _View:
        limit_name = validate_limiter_name(
            name if name is not None else f"{view.__module__}.{view.__qualname__}"
        )

        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Response:
            client = _state_of(current_app._get_current_object()).client  # type: ignore[attr-defined]
            limiter = limiters.get(client)
            if limiter is None:
                limiter = limiters.setdefault(
                    client, client.rate_limiter(limit_name, parsed, **options)
                )
            request = flask_request._get_current_object()  # type: ignore[attr-defined]
            who = key(request) if key is not None else request.remote_addr or "anonymous"
            decision = limiter.hit(who, units)
            g.rate_limit = decision
            headers = response_headers(decision)
            if decision.allowed:
                response = current_app.make_response(view(*args, **kwargs))
            else:
                response = jsonify(detail="rate limit exceeded")
                response.status_code = 429
            response.headers.update(headers)
            return response

        return limited  # type: ignore[return-value]

    return decorator


# -- metrics -------------------------------------------------------------------------------------
def metrics_blueprint(
    name: str = "kvkit_metrics",
    *,
    url_prefix: str | None = None,
    path: str = "/metrics",
    registry: Any = None,
    **collector_options: Any,
) -> Blueprint:
    """Return a blueprint serving ``GET /metrics`` in the Prometheus text format.

    The app's client's metrics (see :mod:`kvkit.ext.prometheus`), queue gauges read at
    scrape time within their time limit; needs ``pip install 'kvkit-sdk[prometheus]'``.

    Args:
        name: The blueprint's name.
        url_prefix: Prefix of the route.
        path: The route.
        registry: A ``prometheus_client`` registry whose metrics are served too (e.g.
            ``prometheus_client.REGISTRY`` for the process metrics).
        **collector_options: Passed to :class:`kvkit.ext.prometheus.KVKitCollector`
            (``queues``, ``discover``, ``max_queues``, ``timeout``).

    Raises:
        ImportError: prometheus-client is not installed (the message says how to get it).
    """
    from .prometheus import CONTENT_TYPE_LATEST, collector_for, exposition

    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    @blueprint.record
    def skip_sessions(state: BlueprintSetupState) -> None:
        # A scrape carries no session cookie worth loading, and must not depend on it.
        prefix = (state.url_prefix or "").rstrip("/")
        state.app.extensions.setdefault(_SESSIONLESS_PATHS, set()).add(prefix + path)

    @blueprint.get(path)
    def metrics() -> Response:
        client = _state_of(current_app._get_current_object()).client  # type: ignore[attr-defined]
        body = exposition(collector_for(client, **collector_options), None, registry)
        response = Response(body, content_type=CONTENT_TYPE_LATEST)
        response.headers["Cache-Control"] = "no-store"
        return response

    return blueprint
