"""TTL resolution and key validation."""

from __future__ import annotations

import copy
import pickle
from datetime import timedelta

import pytest

import kvkit
from kvkit._errors import InvalidArgument
from kvkit._keys import validate_key, validate_keys
from kvkit._ttl import MAX_SECONDS, TTLResolver, seconds_to_ms

R = TTLResolver(3600, 300, 604800)


@pytest.mark.parametrize(
    ("ttl", "ms"),
    [
        (None, 3_600_000),
        ("default", 3_600_000),
        ("temp", 300_000),
        ("long", 604_800_000),
        (kvkit.FOREVER, None),
        (10, 10_000),
        (0.25, 250),
        (0.0001, 1),
        (timedelta(seconds=1.5), 1500),
    ],
)
def test_ttl_resolution(ttl, ms):
    """Every TTL form resolves to whole milliseconds (None: no expiry)."""
    assert R.ms(ttl) == ms


@pytest.mark.parametrize(
    "bad",
    [
        0,
        -1,
        -0.5,
        float("nan"),
        float("inf"),
        True,
        False,
        "soon",
        "",
        [],
        timedelta(0),
        timedelta(-1),
    ],
)
def test_bad_ttls(bad):
    """Zero, negatives, NaN, bools and other types are InvalidArgument."""
    with pytest.raises(kvkit.InvalidArgument):
        R.ms(bad)


def test_forever_is_a_singleton():
    """FOREVER survives copy and pickling-by-reference and has a clear repr."""
    assert copy.copy(kvkit.FOREVER) is kvkit.FOREVER
    assert copy.deepcopy(kvkit.FOREVER) is kvkit.FOREVER
    assert repr(kvkit.FOREVER) == "kvkit.FOREVER"
    assert pickle.loads(pickle.dumps(kvkit.FOREVER)) is kvkit.FOREVER


def test_resolver_without_default():
    """A role without a default TTL stores without expiry on None."""
    assert TTLResolver(None, 1, 2).ms(None) is None
    assert TTLResolver(None, 1, 2).default_ms is None


def test_seconds_to_ms_rounds_up():
    """Sub-millisecond remainders round up."""
    assert seconds_to_ms(1.0001) == 1001


@pytest.mark.parametrize("key", ["a", "x" * 1024, "é" * 512, "user:{1}", "with space", "😀" * 256])
def test_valid_keys(key):
    """Keys of 1..1024 UTF-8 bytes are valid."""
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", None, 1, b"k", "x" * 1025, "é" * 513, "😀" * 257, "\ud800"])
def test_invalid_keys(key):
    """Empty, non-str, too long or unencodable keys are InvalidArgument."""
    with pytest.raises(kvkit.InvalidArgument):
        validate_key(key)


def test_validate_keys_rejects_a_bare_string():
    """A str is not a list of keys."""
    with pytest.raises(kvkit.InvalidArgument):
        validate_keys("abc")
    with pytest.raises(kvkit.InvalidArgument):
        validate_keys(5)
    assert validate_keys(iter(["a", "b"])) == ["a", "b"]


@pytest.mark.parametrize("seconds", [MAX_SECONDS + 1, 1e16, 1e300, timedelta(days=365 * 101)])
def test_durations_beyond_100_years_are_invalid(seconds):
    """Huge TTLs are rejected up front on every backend instead of overflowing on one."""
    with pytest.raises(InvalidArgument, match="at most"):
        seconds_to_ms(seconds)
    assert seconds_to_ms(MAX_SECONDS) == MAX_SECONDS * 1000
