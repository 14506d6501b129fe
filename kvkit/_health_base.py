"""The no-I/O half of the health checks: limits, probe names, errors and the body's parts.

Written once and shared by :mod:`kvkit._async.health` and its generated sync twin (which
only run the probes), so that both flavours raise and report with the same classes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ._errors import KVKitError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DEFAULT_TIMEOUT",
    "PROBE_NAME",
    "PROBE_TIMEOUT",
    "PROBE_TTL",
    "HealthCheckFailed",
    "check_body",
    "check_fields",
    "ms_since",
]

log = logging.getLogger("kvkit.health")

DEFAULT_TIMEOUT = 1.5
"""Seconds every health call may take (all its checks run concurrently within it)."""
PROBE_TIMEOUT = 0.5
"""Socket and connect timeout of the client made by ``health_client``."""
PROBE_TTL = 60
"""Seconds a probe key or session lives if a check is cut short before cleaning up."""
PROBE_NAME = "__health__"
"""Cache namespace and queue name of the probes."""


class HealthCheckFailed(KVKitError):
    """A service answered, but not with what the probe stored."""


def ms_since(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading), to 3 decimals."""
    return round((time.perf_counter() - start) * 1000.0, 3)


def check_fields(name: str, roles: list[str], kind: str, redacted_url: str) -> dict[str, Any]:
    """The fields of one check known before it runs (the rest start empty)."""
    return {
        "name": name,
        "roles": roles,
        "backend": kind,
        "url": redacted_url,
        "ok": False,
        "latency_ms": None,
        "server_version": None,
        "error": None,
    }


def check_body(
    fields: Sequence[dict[str, Any]], outcomes: Sequence[Any], start: float
) -> tuple[int, dict[str, Any]]:
    """``(200 or 503, body)`` from each check's fields and outcome (a result or an error)."""
    results: list[dict[str, Any]] = []
    for base, outcome in zip(fields, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            results.append({**base, "ok": False, "error": _describe(outcome)})
        else:
            results.append({**base, **outcome, "ok": True, "error": None})
    ok = all(result["ok"] for result in results)
    body = {
        "status": "pass" if ok else "fail",
        "duration_ms": ms_since(start),
        "checks": results,
    }
    return (200 if ok else 503), body


def _describe(exc: BaseException) -> str:
    """An error text for the body: kvkit's own messages are redacted already."""
    if isinstance(exc, (KVKitError, TimeoutError)):
        return f"{type(exc).__name__}: {exc}"
    # Anything else is unexpected: log it fully, but show only its type.
    log.error("health check failed unexpectedly", exc_info=exc)
    return f"{type(exc).__name__} (see the server log)"
