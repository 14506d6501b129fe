"""The dashboard's HTTP rules, written once for its ASGI and WSGI faces (no I/O).

:class:`Request` and :class:`Response` are the plain values the server adapters
(:mod:`kvkit.ext.dashboard`) translate from and to ASGI/WSGI; the request handling itself
(:mod:`kvkit._async.dashboard`) decides with the functions here.

Security rules:

* Reading is open to whoever reaches the page; it shows counts, queue names, dead-letter
  ids and reasons, latencies and redacted URLs -- never payloads, keys, session ids or
  passwords.
* Actions (requeue, purge) are ``POST`` only and need the dashboard's token, compared in
  constant time; a dashboard without a token is read-only (every action answers 403).
* Cross-site requests cannot act: a ``POST`` whose ``Origin`` is not the dashboard's own,
  or that the browser marks ``Sec-Fetch-Site: cross-site``, is refused before the token is
  even looked at (the token, a form field or a header, is the CSRF token as well).
* With ``allowed_hosts`` (the CLI sets the loopback names when it binds 127.0.0.1), a
  request for another ``Host`` is refused: a DNS-rebinding page cannot read it either.
* Every response carries a strict Content-Security-Policy (no inline script, no foreign
  origin), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` (the token may be in
  the page's URL) and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import functools
import hmac
import json
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import attrs

__all__ = [
    "Request",
    "Response",
    "action_refusal",
    "host_allowed",
    "json_response",
    "static_file",
    "token_ok",
]

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
)

#: Largest request body read (an action's form or JSON); more is refused with 413.
MAX_BODY = 64 * 1024

_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@attrs.frozen
class Request:
    """One HTTP request, as the dashboard sees it.

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: The path below the dashboard's mount point (``"/"``, ``"/api/overview"``).
        root: The mount point (``""`` at the top, ``"/kvkit"`` when mounted there).
        query: The query string's parameters.
        headers: Header names in lower case.
        body: The request body (at most :data:`MAX_BODY` bytes).
        scheme: ``"http"`` or ``"https"``.
    """

    method: str
    path: str
    root: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    scheme: str = "http"

    def arg(self, name: str, default: str = "") -> str:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default

    def form(self) -> dict[str, list[str]]:
        """The body's parameters: a JSON object (lists kept) or an urlencoded form."""
        if self.wants_json():
            try:
                data = json.loads(self.body or b"{}")
            except ValueError:
                return {}
            if not isinstance(data, dict):
                return {}
            out: dict[str, list[str]] = {}
            for key, value in data.items():
                items = value if isinstance(value, list) else [value]
                # true/false as the form would send them; other types are not parameters
                out[str(key)] = [
                    ("true" if item else "false") if isinstance(item, bool) else item
                    for item in items
                    if isinstance(item, (str, bool))
                ]
            return out
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=False)

    def wants_json(self) -> bool:
        """Whether the client sent JSON (an API call) rather than an HTML form."""
        kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
        return kind == "application/json"

    def link(self, path: str = "/", **params: str) -> str:
        """A URL of this dashboard (below its mount point) with query ``params``."""
        query = urlencode({k: v for k, v in params.items() if v})
        return f"{self.root}{path}" + (f"?{query}" if query else "")


@attrs.frozen
class Response:
    """One HTTP response: status, headers (lower-case names) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def make(
        cls, status: int, body: bytes | str, content_type: str, *extra: tuple[str, str]
    ) -> Response:
        """A response with the security headers, ``content_type`` and ``extra`` headers."""
        data = body.encode() if isinstance(body, str) else body
        headers = (
            ("content-type", content_type),
            ("content-length", str(len(data))),
            *SECURITY_HEADERS,
            *extra,
        )
        return cls(status, headers, data)

    @classmethod
    def text(cls, status: int, message: str, *extra: tuple[str, str]) -> Response:
        """A plain-text response (errors), with ``extra`` headers."""
        return cls.make(status, message + "\n", "text/plain; charset=utf-8", *extra)

    @classmethod
    def redirect(cls, location: str) -> Response:
        """``303 See Other`` (after a form POST, back to the page)."""
        return cls.make(303, b"", "text/plain; charset=utf-8", ("location", location))


def json_response(status: int, data: Any) -> Response:
    """A JSON response."""
    return Response.make(status, json.dumps(data), "application/json")


def static_file(name: str) -> Response | None:
    """The dashboard's script or style sheet (package data), or ``None`` if unknown."""
    kind = _STATIC.get(name)
    if kind is None:
        return None
    return Response.make(200, _static_bytes(name), kind)


@functools.cache
def _static_bytes(name: str) -> bytes:
    # Package data does not change while the process runs: read each file once.
    return resources.files("kvkit").joinpath(f"_resources/dashboard/{name}").read_bytes()


def token_ok(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` is the dashboard's token (constant time; no token: never)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def _origin_of(request: Request) -> str:
    return f"{request.scheme}://{request.headers.get('host', '')}".lower()


def action_refusal(request: Request, token: str | None) -> str | None:
    """Why the action ``request`` must be refused (403), or ``None`` if it may run."""
    if not token:
        return "this dashboard is read-only: it was started without a token"
    origin = request.headers.get("origin")
    if origin is not None and origin.lower().rstrip("/") != _origin_of(request):
        return "cross-origin request refused"
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "cross-site request refused"
    given = request.headers.get("x-kvkit-token")
    if given is None:
        values = request.form().get("token")
        given = values[0] if values else None
    if not token_ok(token, given):
        return "a valid token is required"
    return None


def host_allowed(request: Request, allowed: frozenset[str] | None) -> bool:
    """Whether the request's ``Host`` (without its port) is one the dashboard serves."""
    if allowed is None:
        return True
    host = request.headers.get("host", "").strip().lower()
    if host.startswith("["):  # [::1]:8765
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in allowed
