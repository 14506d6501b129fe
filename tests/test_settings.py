"""Settings defaults, validation and environment parsing."""

from __future__ import annotations

import attrs
import pytest

import kvkit
from kvkit import Settings


def test_defaults_match_the_original_system():
    """Defaults are the original RedisService's values."""
    s = Settings()
    assert (s.url, s.cache_url, s.session_url, s.queue_url) == (None, None, None, None)
    assert s.role_url("cache") == "memory://"  # memory:// only when no URL is configured
    assert s.prefix == "kvkit"
    assert (s.cache_ttl, s.session_ttl, s.temp_ttl, s.long_ttl) == (3600, 86400, 300, 604800)
    assert s.session_max_age is None
    assert (s.max_connections, s.socket_timeout, s.connect_timeout, s.retries) == (20, 5.0, 5.0, 3)
    assert s.cache_fail_open is False


def test_frozen():
    """Settings cannot be mutated."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Settings().prefix = "x"  # type: ignore[misc]


def test_role_urls_fall_back_to_url():
    """A role without its own URL uses url."""
    s = Settings(url="redis://h/0", session_url="redis://h/1")
    assert s.role_url("cache") == "redis://h/0"
    assert s.role_url("sessions") == "redis://h/1"
    assert s.role_url("queues") == "redis://h/0"


def test_repr_redacts_urls():
    """repr never shows a password."""
    text = repr(Settings(url="redis://:hunter2@h/0", cache_url="redis://u:hunter2@h/1"))
    assert "hunter2" not in text
    assert "redis://:***@h/0" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "nope://x"},
        {"cache_url": "redis://h?bad=1"},
        {"prefix": ""},
        {"prefix": "a*b"},
        {"prefix": "{tag}"},
        {"cache_ttl": 0},
        {"cache_ttl": -5},
        {"cache_ttl": float("nan")},
        {"cache_ttl": 1e300},
        {"socket_timeout": 1e12},
        {"session_ttl": "10"},
        {"session_max_age": 0},
        {"max_connections": 0},
        {"max_connections": 2.5},
        {"retries": -1},
        {"socket_timeout": True},
        {"cache_fail_open": "yes"},
    ],
)
def test_invalid_values_raise_config_error(kwargs):
    """Each invalid field raises ConfigError naming it."""
    with pytest.raises(kvkit.ConfigError):
        Settings(**kwargs)


def test_from_env_reads_every_variable():
    """from_env reads all fifteen variables with the given prefix."""
    env = {
        "APP_URL": "redis://h/0",
        "APP_CACHE_URL": "redis://h/1",
        "APP_SESSION_URL": "redis://h/2",
        "APP_QUEUE_URL": "redis://h/3",
        "APP_PREFIX": "myapp",
        "APP_CACHE_TTL": "60",
        "APP_SESSION_TTL": "120.5",
        "APP_TEMP_CACHE_TTL": "5",
        "APP_LONG_CACHE_TTL": "7000",
        "APP_SESSION_MAX_AGE": "3600",
        "APP_MAX_CONNECTIONS": "50",
        "APP_SOCKET_TIMEOUT": "1.5",
        "APP_CONNECT_TIMEOUT": "2",
        "APP_RETRIES": "0",
        "APP_CACHE_FAIL_OPEN": "true",
    }
    s = Settings.from_env("APP_", env)
    assert s.url == "redis://h/0"
    assert (s.cache_url, s.session_url, s.queue_url) == (
        "redis://h/1",
        "redis://h/2",
        "redis://h/3",
    )
    assert s.prefix == "myapp"
    assert (s.cache_ttl, s.session_ttl, s.temp_ttl, s.long_ttl) == (60, 120.5, 5, 7000)
    assert s.session_max_age == 3600
    assert (s.max_connections, s.socket_timeout, s.connect_timeout, s.retries) == (50, 1.5, 2.0, 0)
    assert s.cache_fail_open is True


def test_from_env_original_redis_variables():
    """prefix='REDIS_' reads the original system's variable names."""
    env = {
        "REDIS_CACHE_URL": "redis://h/0",
        "REDIS_SESSION_URL": "redis://h/1",
        "REDIS_QUEUE_URL": "redis://h/2",
        "REDIS_CACHE_TTL": "3600",
        "REDIS_SESSION_TTL": "86400",
        "REDIS_TEMP_CACHE_TTL": "300",
        "REDIS_LONG_CACHE_TTL": "604800",
    }
    s = Settings.from_env(prefix="REDIS_", environ=env)
    assert s.role_url("cache") == "redis://h/0"
    assert s.role_url("sessions") == "redis://h/1"
    assert s.role_url("queues") == "redis://h/2"


def test_from_env_empty_is_defaults():
    """No variables → defaults; blank values are ignored."""
    assert Settings.from_env(environ={}) == Settings()
    assert Settings.from_env(environ={"KVKIT_CACHE_TTL": "  "}) == Settings()


def test_from_env_uses_os_environ(monkeypatch):
    """Without environ, os.environ is read."""
    monkeypatch.setenv("KVKIT_PREFIX", "fromenv")
    assert Settings.from_env().prefix == "fromenv"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("KVKIT_CACHE_TTL", "abc"),
        ("KVKIT_CACHE_TTL", "-1"),
        ("KVKIT_MAX_CONNECTIONS", "many"),
        ("KVKIT_RETRIES", "1.5"),
        ("KVKIT_CACHE_FAIL_OPEN", "maybe"),
        ("KVKIT_URL", "bogus://x"),
        ("KVKIT_SOCKET_TIMEOUT", "0"),
    ],
)
def test_from_env_malformed_names_the_variable(var, value):
    """A malformed variable raises ConfigError naming it."""
    with pytest.raises(kvkit.ConfigError, match=var):
        Settings.from_env(environ={var: value})


def test_from_env_never_echoes_secrets():
    """A malformed URL variable is reported redacted."""
    with pytest.raises(kvkit.ConfigError) as info:
        Settings.from_env(environ={"KVKIT_CACHE_URL": "redis://:hunter2@h/notadb"})
    assert "hunter2" not in str(info.value)
    assert "KVKIT_CACHE_URL" in str(info.value)


def test_client_from_env(monkeypatch):
    """Client() and Client.from_env() read the environment."""
    monkeypatch.setenv("KVKIT_URL", "memory://from-env")
    monkeypatch.setenv("KVKIT_PREFIX", "envprefix")
    with kvkit.Client() as client:
        assert client.settings.prefix == "envprefix"
        assert client.backend("cache").url.name == "from-env"
    monkeypatch.setenv("REDIS_CACHE_TTL", "42")
    with kvkit.Client.from_env(prefix="REDIS_") as client:
        assert client.settings.cache_ttl == 42
