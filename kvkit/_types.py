"""Plain data types shared by the sync and async APIs (no I/O)."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["CacheStats", "Check", "Health"]


@attrs.define
class CacheStats:
    """Counters of one cache view (each :meth:`namespace` has its own).

    Attributes:
        hits: Reads that found a value.
        misses: Reads that found nothing.
        sets: Values written.
        deletes: Keys deleted.
        errors: Backend errors (including those absorbed by ``cache_fail_open``).
        near_hits: The hits served by the near cache without a round trip (counted in
            ``hits`` too; always 0 without a near cache).
    """

    hits: int = 0
    misses: int = 0
    sets: int = 0
    deletes: int = 0
    errors: int = 0
    near_hits: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits divided by reads (0.0 before any read)."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else 0.0

    def reset(self) -> None:
        """Set every counter back to zero."""
        self.hits = self.misses = self.sets = self.deletes = self.errors = self.near_hits = 0

    def to_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return attrs.asdict(self)


@attrs.frozen
class Check:
    """Result of checking one role's backend.

    Attributes:
        role: "cache", "sessions" or "queues".
        backend: Backend kind ("redis", "memory", "fakeredis", ...).
        url: The backend URL with secrets redacted.
        ok: Whether the check passed.
        latency_ms: Round-trip time of the PING in milliseconds (``None`` on failure).
        server_version: The server's version, when known.
        error: What went wrong (``None`` when ok); never contains a secret.
    """

    role: str
    backend: str
    url: str
    ok: bool
    latency_ms: float | None = None
    server_version: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen
class Health:
    """Result of :meth:`kvkit.Client.health`.

    Attributes:
        status: "pass" when every check passed, else "fail".
        checks: One :class:`Check` per role.
    """

    status: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"status": self.status, "checks": [c.to_dict() for c in self.checks]}
