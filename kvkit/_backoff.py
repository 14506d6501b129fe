"""Exponential backoff with jitter for retries."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]

BASE = 0.05
CAP = 1.0


def backoff_delay(attempt: int, base: float = BASE, cap: float = CAP) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    "Equal jitter": half of the exponential step is fixed, half random, so retries spread
    out (no thundering herd after a restart) but never collapse to zero.
    """
    step = min(cap, base * (2**attempt))
    return float(step / 2 + random.uniform(0, step / 2))
