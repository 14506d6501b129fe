"""The kvkit pytest plugin, run in isolated pytester sessions."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import asyncio
import pytest

def test_sync_cache(kvkit_client):
    """The sync fixture is a working client."""
    kvkit_client.cache.set("k", {"v": 1})
    assert kvkit_client.cache.get("k") == {"v": 1}

def test_isolated(kvkit_client):
    """Each test starts empty."""
    assert kvkit_client.cache.get("k") is None
    kvkit_client.cache.set("k", 2)

def test_async_cache(kvkit_async_client, kvkit_client):
    """The async fixture works and shares the test's store with the sync one."""
    async def main():
        await kvkit_async_client.cache.set("shared", "yes")
        return await kvkit_async_client.cache.get("shared")
    assert asyncio.run(main()) == "yes"
    assert kvkit_client.cache.get("shared") == "yes"

def test_settings_override(kvkit_settings):
    """Settings are exposed for overriding."""
    assert kvkit_settings.prefix
'''


def test_plugin_memory_mode(pytester: pytest.Pytester):
    """By default the fixtures use an isolated memory:// store per test."""
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=4)


@pytest.mark.redis
def test_plugin_redis_mode(pytester: pytest.Pytester, redis_url, redis_server):
    """--kvkit-url runs the same tests against Redis, prefixed and cleaned up."""
    with redis_server.client() as raw:
        raw.set("unrelated", "stays")
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("-q", f"--kvkit-url={redis_url}")
    result.assert_outcomes(passed=4)
    with redis_server.client() as raw:
        leftovers = [k for k in raw.scan_iter(match="kvkit-test-*")]
        assert leftovers == []
        assert raw.get("unrelated") == b"stays"
        raw.delete("unrelated")


@pytest.mark.redis
def test_plugin_env_url(pytester: pytest.Pytester, redis_url, monkeypatch):
    """KVKIT_TEST_URL selects the backend too."""
    monkeypatch.setenv("KVKIT_TEST_URL", redis_url)
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=4)


def test_plugin_bad_url_fails_clearly(pytester: pytest.Pytester):
    """A bad --kvkit-url fails with a ConfigError, password redacted."""
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "--kvkit-url=nope://:pw@h")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*ConfigError*unknown URL scheme*"])
    assert ":pw@" not in result.stdout.str() + result.stderr.str()


SETTINGS_ONLY_TESTS = '''
import kvkit

STATE = {}

def test_a_writes_through_settings_only(kvkit_settings):
    """Like a Flask test: the app builds its own client from kvkit_settings."""
    with kvkit.Client(settings=kvkit_settings) as client:
        client.cache.set("k", 1)
        client.sessions.create({"a": 1}, user_id="u1")
        client.queue("jobs").push({"n": 1})
    STATE["settings"] = kvkit_settings

def test_b_nothing_is_left():
    """Whatever test_a wrote was deleted after it."""
    settings = STATE["settings"]
    with kvkit.Client(settings=settings) as client:
        assert client.cache.get("k") is None
        assert client.sessions.user_sessions("u1") == []
        assert client.queue("jobs").stats().ready == 0
        if client.backend("cache").kind != "memory":
            assert list(client.redis().scan_iter(match=settings.prefix + "*")) == []
'''

MODES = [
    pytest.param([], id="default"),
    pytest.param(["--kvkit-url=memory://"], id="memory"),
    pytest.param(["--kvkit-url=memory://?maxsize=100"], id="memory-maxsize"),
    pytest.param(["--kvkit-url=fakeredis://"], id="fakeredis"),
    pytest.param(None, id="redis", marks=pytest.mark.redis),
]


@pytest.mark.parametrize("args", MODES)
def test_every_spelling_of_a_backend_shares_and_cleans_up(pytester: pytest.Pytester, request, args):
    """Explicit memory:// / fakeredis:// share like the default; settings-only tests clean up."""
    if args is None:
        args = [f"--kvkit-url={request.getfixturevalue('redis_url')}"]
    pytester.makepyfile(test_users=USER_TESTS, test_settings_only=SETTINGS_ONLY_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:randomly", *args)
    result.assert_outcomes(passed=6)
