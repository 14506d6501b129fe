"""Bounds of the cache on every backend: durations up to 100 years, signed 64-bit counters."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import pytest

import kvkit
from kvkit._ttl import MAX_SECONDS
from tests.backends import settings_for

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

TOO_LONG = [
    pytest.param(MAX_SECONDS + 1, id="max+1s"),
    pytest.param(10**20, id="int-1e20"),
    pytest.param(1e16, id="float-1e16"),
    pytest.param(dt.timedelta(days=365 * 101), id="timedelta-101y"),
]


def _paths(cache: kvkit.AsyncCache, ttl: object) -> dict[str, Callable[[], Any]]:
    """Every cache operation that takes a TTL, as a call with ``ttl``."""

    async def decorated() -> None:
        @cache.cached(ttl=ttl)  # type: ignore[arg-type]
        async def compute() -> int:
            return 1

    return {
        "set": lambda: cache.set("k", 1, ttl=ttl),  # type: ignore[arg-type]
        "add": lambda: cache.add("k", 1, ttl=ttl),  # type: ignore[arg-type]
        "set_many": lambda: cache.set_many({"k": 1, "j": 2}, ttl=ttl),  # type: ignore[arg-type]
        "incr": lambda: cache.incr("k", 1, ttl=ttl),  # type: ignore[arg-type]
        "touch": lambda: cache.touch("present", ttl=ttl),  # type: ignore[arg-type]
        "get_or_set": lambda: cache.get_or_set("k", lambda: 1, ttl=ttl),  # type: ignore[arg-type]
        "cached": decorated,
    }


@pytest.mark.parametrize("ttl", TOO_LONG)
async def test_ttl_beyond_100_years_is_invalid_argument_everywhere(cache, ttl):
    """Every TTL-taking operation rejects a TTL over 100 years up front; nothing is written."""
    await cache.set("present", "p", ttl=60)
    for name, call in _paths(cache, ttl).items():
        with pytest.raises(kvkit.InvalidArgument, match="at most"):
            await call()
        assert not await cache.exists("k"), name
        assert not await cache.exists("j"), name
    remaining = await cache.ttl("present")
    assert remaining is not None and remaining <= 60


async def test_ttl_of_exactly_100_years_is_accepted(cache):
    """The bound itself is a valid TTL on every backend, as int, float and timedelta."""
    for ttl in (MAX_SECONDS, float(MAX_SECONDS), dt.timedelta(seconds=MAX_SECONDS)):
        await cache.set("k", 1, ttl=ttl)
        remaining = await cache.ttl("k")
        assert remaining is not None and MAX_SECONDS - 60 < remaining <= MAX_SECONDS
        assert await cache.touch("k", ttl=ttl)
        assert await cache.incr("n", 1, ttl=ttl) >= 1


async def test_settings_preset_beyond_100_years_is_config_error(request, backend):
    """A cache TTL preset over 100 years is a ConfigError before any client exists."""
    for field in ("cache_ttl", "temp_ttl", "long_ttl"):
        with pytest.raises(kvkit.ConfigError, match="at most"):
            settings_for(request, backend, **{field: MAX_SECONDS * 2})


@pytest.mark.parametrize(
    ("start", "delta", "expected"),
    [
        pytest.param(0, INT64_MAX, INT64_MAX, id="0+max"),
        pytest.param(INT64_MAX - 1, 1, INT64_MAX, id="to-max"),
        pytest.param(2**62, 2**62 - 1, INT64_MAX, id="halves"),
        pytest.param(2**53, 1, 2**53 + 1, id="past-double-precision"),
        pytest.param(INT64_MAX, -1, INT64_MAX - 1, id="down-from-max"),
        pytest.param(0, INT64_MIN, INT64_MIN, id="0+min"),
        pytest.param(INT64_MIN + 1, -1, INT64_MIN, id="to-min"),
        pytest.param(INT64_MIN, INT64_MAX, -1, id="min+max"),
        pytest.param(-(2**53), -3, -(2**53) - 3, id="below-double-precision"),
    ],
)
async def test_incr_is_exact_over_the_signed_64_bit_range(cache, start, delta, expected):
    """incr() returns and stores the exact result near ±2**63 on every backend."""
    if start:
        await cache.set("n", start)
    assert await cache.incr("n", delta) == expected
    assert await cache.get("n") == expected


@pytest.mark.parametrize(
    ("start", "delta"),
    [
        pytest.param(INT64_MAX, 1, id="max+1"),
        pytest.param(1, INT64_MAX, id="1+max"),
        pytest.param(INT64_MIN, -1, id="min-1"),
        pytest.param(-2, INT64_MIN + 1, id="-2+min+1"),
    ],
)
async def test_incr_overflow_is_invalid_argument_and_changes_nothing(cache, start, delta):
    """A result outside the signed 64-bit range raises InvalidArgument; the value stays."""
    await cache.set("n", start, ttl=60)
    with pytest.raises(kvkit.InvalidArgument, match="'n' would overflow") as info:
        await cache.incr("n", delta)
    assert "cache:" not in str(info.value)
    assert await cache.get("n") == start
    remaining = await cache.ttl("n")
    assert remaining is not None and remaining <= 60


@pytest.mark.parametrize("delta", [INT64_MAX + 1, INT64_MIN - 1, 2**64, -(2**100)])
async def test_incr_delta_outside_64_bits_is_invalid_argument(cache, delta):
    """A delta outside the signed 64-bit range is rejected before anything is sent."""
    with pytest.raises(kvkit.InvalidArgument, match="delta must be a signed 64-bit integer"):
        await cache.incr("n", delta)
    assert not await cache.exists("n")


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("text", id="str"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param([1], id="list"),
        pytest.param(INT64_MAX + 1, id="int-above-64-bits"),
        pytest.param(INT64_MIN - 1, id="int-below-64-bits"),
    ],
)
async def test_incr_on_non_integer_names_the_callers_key(cache, stored):
    """incr() on a value that is no 64-bit integer: InvalidArgument naming 'n', not the prefix."""
    await cache.set("n", stored)
    with pytest.raises(kvkit.InvalidArgument) as info:
        await cache.incr("n", 1)
    assert str(info.value) == "value of key 'n' is not an integer"
    assert await cache.get("n") == stored


async def test_incr_in_a_namespace_names_the_callers_key(cache):
    """Inside a namespace the error names the key as the caller wrote it."""
    child = cache.namespace("ns")
    await child.set("n", "text")
    with pytest.raises(kvkit.InvalidArgument, match=r"^value of key 'n' is not an integer$"):
        await child.incr("n")


async def test_incr_result_type_is_int(cache):
    """incr() returns a Python int (never a float) at the top of the range too."""
    value = await cache.incr("n", INT64_MAX)
    assert type(value) is int
    assert not math.isinf(value)
