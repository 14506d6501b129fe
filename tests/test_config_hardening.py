"""Issue 11: configuration hardening (no silent memory fallback, error sources, URL checks).

Everything here is decided at construction, without I/O, so no server is needed except
where a finding is about what a real server answers.
"""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from flask import Flask

import kvkit
from kvkit import Settings
from kvkit.ext.fastapi import KVKit as FastAPIKVKit
from kvkit.ext.flask import KVKit as FlaskKVKit
from kvkit.ext.flask import settings_from_config

ROLE_VARS = ("CACHE_URL", "SESSION_URL", "QUEUE_URL")

# --------------------------------------------------------------- #12 no silent memory fallback


@pytest.mark.parametrize("missing", ROLE_VARS)
def test_from_env_names_the_missing_role_url(missing):
    """Two role URLs set, the third and the main URL not: ConfigError naming the gap."""
    env = {f"REDIS_{var}": f"redis://h:6379/{i}" for i, var in enumerate(ROLE_VARS)}
    del env[f"REDIS_{missing}"]
    with pytest.raises(kvkit.ConfigError) as info:
        Settings.from_env(prefix="REDIS_", environ=env)
    text = str(info.value)
    assert f"environment variable REDIS_{missing} is not set" in text
    assert "REDIS_URL" in text  # the other way to fix it


def test_from_env_lists_every_missing_role_url():
    """Only the cache URL set: both missing variables are named."""
    with pytest.raises(kvkit.ConfigError) as info:
        Settings.from_env(environ={"KVKIT_CACHE_URL": "redis://h/0"})
    assert "KVKIT_SESSION_URL, KVKIT_QUEUE_URL are not set" in str(info.value)


def test_role_without_url_uses_the_main_url():
    """With the main URL set, a role without its own URL uses it (never memory://)."""
    env = {"KVKIT_URL": "redis://h/0", "KVKIT_SESSION_URL": "redis://h/1"}
    settings = Settings.from_env(environ=env)
    assert settings.role_url("cache") == "redis://h/0"
    assert settings.role_url("sessions") == "redis://h/1"
    assert settings.role_url("queues") == "redis://h/0"


def test_memory_only_when_nothing_is_configured():
    """No URL at all: every role is memory://; every role URL set: no main URL needed."""
    settings = Settings.from_env(environ={})
    assert {settings.role_url(r) for r in ("cache", "sessions", "queues")} == {"memory://"}
    env = {f"KVKIT_{var}": f"redis://h/{i}" for i, var in enumerate(ROLE_VARS)}
    settings = Settings.from_env(environ=env)
    assert settings.url is None
    assert [settings.role_url(r) for r in ("cache", "sessions", "queues")] == [
        "redis://h/0",
        "redis://h/1",
        "redis://h/2",
    ]


def test_settings_constructor_rejects_a_half_configured_setup():
    """Settings(cache_url=…) without url names the missing fields; the client cannot exist."""
    with pytest.raises(kvkit.ConfigError) as info:
        Settings(cache_url="redis://h/0", session_url="redis://h/1")
    assert "Settings.queue_url is not set" in str(info.value)
    with pytest.raises(kvkit.ConfigError, match="Settings.session_url"):
        kvkit.Client(cache="redis://h/0", queues="redis://h/2")
    with pytest.raises(kvkit.ConfigError, match="Settings.session_url"):
        kvkit.AsyncClient(cache="redis://h/0", queues="redis://h/2")
    # evolve() keeps "url not set", so it cannot reintroduce the fallback either.
    with pytest.raises(kvkit.ConfigError):
        kvkit.Client(cache="redis://h/0", settings=Settings(prefix="app"))


def test_client_from_a_half_configured_environment_fails(monkeypatch):
    """Client() reading the environment refuses REDIS_SESSION_URL missing (health never runs)."""
    monkeypatch.setenv("KVKIT_CACHE_URL", "redis://h/0")
    monkeypatch.setenv("KVKIT_QUEUE_URL", "redis://h/2")
    monkeypatch.delenv("KVKIT_URL", raising=False)
    monkeypatch.delenv("KVKIT_SESSION_URL", raising=False)
    with pytest.raises(kvkit.ConfigError, match="KVKIT_SESSION_URL"):
        kvkit.Client()


def test_flask_half_configured_fails_naming_the_key():
    """Flask config with KVKIT_CACHE_URL only: init_app fails naming the missing keys."""
    app = Flask(__name__)
    app.config["KVKIT_CACHE_URL"] = "redis://h/0"
    with pytest.raises(kvkit.ConfigError) as info:
        FlaskKVKit(app)
    assert "Flask config keys KVKIT_SESSION_URL, KVKIT_QUEUE_URL are not set" in str(info.value)


def test_fastapi_half_configured_fails_at_startup(monkeypatch):
    """FastAPI KVKit with REDIS_SESSION_URL missing fails at startup, naming it."""
    monkeypatch.setenv("REDIS_CACHE_URL", "redis://h/0")
    monkeypatch.setenv("REDIS_QUEUE_URL", "redis://h/2")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_SESSION_URL", raising=False)
    ext = FastAPIKVKit(FastAPI(), env_prefix="REDIS_")
    with pytest.raises(kvkit.ConfigError, match="REDIS_SESSION_URL"):
        asyncio.run(ext.open())  # what the lifespan runs at startup


# --------------------------------------------------------------- #14 the real source is named


def test_flask_config_errors_name_the_flask_config():
    """A bad app.config value is reported as a Flask config key, not an environment variable."""
    with pytest.raises(kvkit.ConfigError) as info:
        settings_from_config({"KVKIT_SESSION_TTL": "soon"})
    text = str(info.value)
    assert "Flask config key KVKIT_SESSION_TTL='soon' is invalid" in text
    assert "environment" not in text
    app = Flask(__name__)
    app.config["KVKIT_SESSION_TTL"] = "soon"
    with pytest.raises(kvkit.ConfigError, match="Flask config key KVKIT_SESSION_TTL"):
        FlaskKVKit(app)


def test_environment_errors_still_say_environment_variable():
    """from_env's default source is the environment; a custom source is used verbatim."""
    with pytest.raises(kvkit.ConfigError, match="environment variable KVKIT_SESSION_TTL"):
        Settings.from_env(environ={"KVKIT_SESSION_TTL": "soon"})
    with pytest.raises(kvkit.ConfigError, match="^settings file key KVKIT_RETRIES="):
        Settings.from_env(environ={"KVKIT_RETRIES": "x"}, source="settings file key")
