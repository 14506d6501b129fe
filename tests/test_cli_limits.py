"""``kvkit limits peek|reset NAME KEY``: inspect and reset one key of a rate limiter."""

from __future__ import annotations

import json
import uuid

import pytest

import kvkit
from tests.test_cli import run_cli

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url):
    """An application's client (own prefix) with a limiter that has seen two hits of "ada"."""
    prefix = "t" + uuid.uuid4().hex[:12]
    with kvkit.Client(settings=kvkit.Settings(url=redis_url, prefix=prefix)) as client:
        limiter = client.rate_limiter("login", "3/minute")
        limiter.hit("ada")
        limiter.hit("ada")
        yield client, limiter, ["--url", redis_url, "--prefix", prefix]


def test_peek_shows_the_decision(app):
    """peek prints what the next hit would get and consumes nothing."""
    _, limiter, source = app
    result = run_cli("limits", "peek", "login", "ada", "--rate", "3/minute", "--json", *source)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["remaining"] == 1 and data["allowed"] is True and data["limit"] == 3
    assert data["rate"] == "3/minute" and data["algorithm"] == "sliding_window"
    assert limiter.peek("ada").remaining == 1
    text = run_cli("limits", "peek", "login", "ada", "--rate", "3/minute", *source)
    assert "remaining    1" in text.stdout


def test_reset_gives_the_allowance_back(app):
    """reset deletes the key's hits, whatever the limiter's rate and algorithm."""
    _, limiter, source = app
    result = run_cli("limits", "reset", "login", "ada", *source)
    assert result.returncode == 0, result.stderr
    assert "reset 'ada'" in result.stdout
    assert limiter.peek("ada").remaining == 3


@pytest.mark.parametrize(
    "args",
    [
        ["limits", "peek", "login", "ada"],  # no --rate
        ["limits", "peek", "login", "ada", "--rate", "3/week"],
        ["limits", "peek", "log:in", "ada", "--rate", "3/minute"],
        ["limits", "peek", "login", "ada", "--rate", "3/minute", "--burst", "2"],
        ["limits", "peek", "login", "", "--rate", "3/minute"],
        ["limits", "wipe", "login", "ada"],
    ],
)
def test_usage_errors_exit_2(app, args):
    """Missing or bad arguments are usage errors: exit 2, one line, no traceback."""
    _, limiter, source = app
    result = run_cli(*args, *source)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert limiter.peek("ada").remaining == 1


def test_refuses_to_run_on_nothing():
    """Without --url, --env or KVKIT_* variables the command refuses (exit 2)."""
    result = run_cli("limits", "reset", "login", "ada", env={})
    assert result.returncode == 2
    assert "no backend configured" in result.stderr
