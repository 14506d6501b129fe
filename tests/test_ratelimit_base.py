"""kvkit._ratelimit_base: rates, validation and the algorithms' arithmetic on a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest

import kvkit
from kvkit._ratelimit_base import (
    RawDecision,
    SlidingLog,
    fixed_window,
    make_spec,
    token_bucket,
    validate_cost,
)

S = 1_000_000  # microseconds per second


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("5/second", 5, 1.0),
        ("5/minute", 5, 60.0),
        ("100/hour", 100, 3600.0),
        ("1/day", 1, 86400.0),
        ("50/2s", 50, 2.0),
        ("10/0.5s", 10, 0.5),
        (" 7 / Minute ", 7, 60.0),
    ],
)
def test_rate_strings(text, limit, period):
    """Every documented rate form parses to limit and period seconds."""
    rate = kvkit.Rate.parse(text)
    assert (rate.limit, rate.period) == (limit, period)


def test_rate_objects():
    """Rate takes seconds or a timedelta, prints back as a rate string, compares by value."""
    assert (
        kvkit.Rate(5, dt.timedelta(minutes=1)) == kvkit.Rate(5, 60) == kvkit.Rate.parse("5/minute")
    )
    assert str(kvkit.Rate(5, 60)) == "5/minute"
    assert str(kvkit.Rate(50, 2)) == "50/2s"
    assert kvkit.Rate.parse(kvkit.Rate(1, 1)) == kvkit.Rate(1, 1)
    for limit, period in [(0, 1), (-1, 1), (1.5, 1), (True, 1), (1, 0), (1, -1), (1, 0.0001),
                          (1, float("nan")), (1, "60"), (10**10, 1)]:  # fmt: skip
        with pytest.raises(kvkit.InvalidArgument):
            kvkit.Rate(limit, period)


def test_cost_validation():
    """cost is an int from 1 to the capacity (limit + burst)."""
    spec = make_spec(kvkit.Rate(5, 60), "token_bucket", 2)
    assert validate_cost(7, spec) == 7
    for bad in (0, 8, 1.0, True, "1", None):
        with pytest.raises(kvkit.InvalidArgument):
            validate_cost(bad, spec)


def test_token_bucket_ticks_stay_exact():
    """A huge capacity x period coarsens the tick so every product stays below 2**52."""
    small = make_spec(kvkit.Rate(10, 1), "token_bucket", None)
    assert (small.tick_us, small.period_ticks) == (1, S)
    huge = make_spec(kvkit.Rate(10**9, 86400), "token_bucket", 10**9)
    assert huge.capacity * huge.period_ticks <= 2**52
    assert huge.tick_us > 1


def test_fixed_window_aligns_to_the_period():
    """Windows start at multiples of the period; a new window starts from zero."""
    spec = make_spec(kvkit.Rate(2, 10), "fixed_window", None)
    state = None
    now = 1_000 * 10 * S + 3 * S  # 3 s into a window
    decisions = []
    for _ in range(3):
        new, raw = fixed_window(state, now, 1, spec, True)
        state = new or state
        decisions.append(raw)
    assert decisions == [
        RawDecision(True, 1, 7 * S, -1),
        RawDecision(True, 0, 7 * S, -1),
        RawDecision(False, 0, 7 * S, 7 * S),
    ]
    _, raw = fixed_window(state, now + 7 * S, 1, spec, True)
    assert raw == RawDecision(True, 1, 10 * S, -1)
    # A clock stepping back stays in the newest window seen: nothing is freed.
    _, raw = fixed_window(state, now - 5 * S, 1, spec, True)
    assert not raw.allowed


def test_sliding_window_is_exact_on_a_fake_clock():
    """Units come back exactly one period after their hit; the log stays within limit entries."""
    spec = make_spec(kvkit.Rate(3, 10), "sliding_window", None)
    log = SlidingLog()
    assert log.step(0, 2, spec, True) == RawDecision(True, 1, 10 * S, -1)
    assert log.step(4 * S, 1, spec, True) == RawDecision(True, 0, 10 * S, -1)
    # Needs 1 unit: the hit at 0 (2 units) leaves at 10 s.
    assert log.step(6 * S, 1, spec, True) == RawDecision(False, 0, 8 * S, 4 * S)
    # Needs 3 units: the hit at 4 s must leave too, at 14 s.
    assert log.step(6 * S, 3, spec, True) == RawDecision(False, 0, 8 * S, 8 * S)
    assert log.step(10 * S, 2, spec, True) == RawDecision(True, 0, 10 * S, -1)
    assert len(log.entries) == 2 and log.total == 3
    # A clock stepping back never frees units early.
    assert not log.step(1 * S, 1, spec, True).allowed


def test_sliding_window_never_admits_more_than_limit_per_period():
    """A dense fake workload: no interval of one period holds more than `limit` units."""
    spec = make_spec(kvkit.Rate(5, 1), "sliding_window", None)
    log = SlidingLog()
    admitted = []
    for step in range(5000):
        now = step * 997  # ~1 ms apart
        cost = 1 + step % 3
        if log.step(now, cost, spec, True).allowed:
            admitted.append((now, cost))
    assert sum(c for _, c in admitted) >= 20  # about 5 units in each of the 5 s
    for i, (start, _) in enumerate(admitted):
        inside = sum(c for t, c in admitted[i:] if t < start + S)
        assert inside <= 5


def test_token_bucket_on_a_fake_clock():
    """GCRA: capacity at once, then one unit per period/limit; a denial changes nothing."""
    spec = make_spec(kvkit.Rate(2, 1), "token_bucket", 1)  # capacity 3, a unit per 0.5 s
    state = None
    now = 10 * S
    for expected in (2, 1, 0):
        state, raw = token_bucket(state, now, 1, spec, True)
        assert raw.allowed and raw.remaining == expected
    new, raw = token_bucket(state, now, 1, spec, True)
    assert new is None and raw == RawDecision(False, 0, 1_500_000, 500_000)
    state, raw = token_bucket(state, now + 500_000, 1, spec, True)
    assert raw == RawDecision(True, 0, 1_500_000, -1)
    _, peek = token_bucket(state, now + 5 * S, 1, spec, False)
    assert peek == RawDecision(True, 3, 0, -1)
