"""The examples in examples/ run as written, on memory:// and on a Redis URL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.appservers import ROOT, run_app

URLS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=URLS)
def target(request) -> tuple[str, dict[str, str]]:
    """(URL, environment) of a backend; Redis runs get a key prefix of their own."""
    if request.param == "memory":
        return "memory://", {}
    prefix = "t" + uuid.uuid4().hex[:12]
    return request.getfixturevalue("redis_url"), {"KVKIT_PREFIX": prefix}


def run_script(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run examples/script.py in a child process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KVKIT_")}
    return subprocess.run(
        [sys.executable, "examples/script.py", *args],
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_script_with_url_argument(target):
    """python examples/script.py URL runs every section and ends with ok."""
    url, env = target
    result = run_script([url], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ok"
    assert "health: pass" in result.stdout
    assert "factory ran 1 time(s)" in result.stdout


def test_script_reads_kvkit_url(target):
    """Without an argument the script uses $KVKIT_URL."""
    url, env = target
    result = run_script([], {**env, "KVKIT_URL": url})
    assert result.returncode == 0, result.stdout + result.stderr
    backend = "memory" if url.startswith("memory") else "redis://127.0.0.1"
    assert backend in result.stdout.splitlines()[0]


def test_script_defaults_to_memory():
    """With neither, the script runs on memory://."""
    result = run_script([], {})
    assert result.returncode == 0, result.stderr
    assert "cache='memory://'" in result.stdout


def test_flask_app(target):
    """python examples/flask_app.py URL --port P serves sessions, cache, queue and health."""
    url, env = target
    with (
        run_app(["examples/flask_app.py", url, "--port", "{port}"], env=env) as server,
        httpx.Client(base_url=server.base, timeout=10) as http,
    ):
        assert http.get("/health/full").json()["status"] == "pass"
        assert http.post("/login", json={"user": "ada"}).status_code == 200
        assert http.get("/me").json() == {"user": "ada", "visits": 1}
        assert http.get("/me").json() == {"user": "ada", "visits": 2}
        assert http.put("/cache/k", json=[1, 2]).status_code == 200
        assert http.get("/cache/k").json() == {"key": "k", "value": [1, 2]}
        assert http.post("/queue/jobs", json={"n": 1}).status_code == 200
        assert http.post("/queue/jobs/pop").json() == {"payload": {"n": 1}}
        assert http.post("/logout").json() == {"user": None}
        assert http.get("/me").json() == {"user": None, "visits": 1}
        # Two browsers of one user: logging out everywhere ends both sessions.
        with httpx.Client(base_url=server.base, timeout=10) as other:
            assert http.post("/login", json={"user": "bob"}).status_code == 200
            assert other.post("/login", json={"user": "bob"}).status_code == 200
            assert other.get("/me").json()["user"] == "bob"
            assert http.post("/logout-everywhere").json() == {"sessions_deleted": 2}
            assert other.get("/me").json() == {"user": None, "visits": 1}


def test_fastapi_app(target):
    """python examples/fastapi_app.py URL --port P serves sessions, cache, queue and health."""
    url, env = target
    with (
        run_app(["examples/fastapi_app.py", url, "--port", "{port}"], env=env) as server,
        httpx.Client(base_url=server.base, timeout=10) as http,
    ):
        assert http.get("/health/full").json()["status"] == "pass"
        assert http.get("/session").status_code == 401
        assert http.post("/session", json={"theme": "dark"}).status_code == 200
        assert http.get("/session").json() == {"theme": "dark"}
        assert http.patch("/session", json={"n": 1}).json() == {"theme": "dark", "n": 1}
        anonymous_id = http.cookies["sid"]
        assert http.post("/login", json={"user": "ada"}).status_code == 200
        assert http.cookies["sid"] != anonymous_id  # a new id on login
        assert http.get("/session").json() == {"theme": "dark", "n": 1, "user": "ada"}
        with httpx.Client(base_url=server.base, timeout=10) as phone:
            phone.post("/login", json={"user": "ada"}, headers={"user-agent": "phone"})
            devices = http.get("/devices").json()
            assert sorted(d["device"] for d in devices) == sorted(
                ["phone", http.headers["user-agent"]]
            )
            this = [d["device"] for d in devices if d["this_device"]]
            assert this == [http.headers["user-agent"]]
            assert phone.post("/logout").json() == {"logged_out": True}
            assert len(http.get("/devices").json()) == 1
            assert http.post("/logout-everywhere").json() == {"sessions_deleted": 1}
        assert http.get("/session").status_code == 401
        assert http.put("/cache/k", json={"a": 1}).status_code == 200
        assert http.get("/cache/k").json() == {"key": "k", "value": {"a": 1}}
        assert http.get("/cache/missing").status_code == 404
        assert http.post("/queue/jobs", json=[1]).status_code == 200
        assert http.post("/queue/jobs/pop").json() == {"payload": [1]}
        assert http.post("/queue/jobs/pop").json() == {"payload": None}


def test_fastapi_app_with_a_bad_setting_fails_at_startup():
    """A malformed KVKIT_* variable stops the example's startup with ConfigError."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fastapi.testclient as t, examples.fastapi_app as m; "
            "t.TestClient(m.app).__enter__()",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "KVKIT_SESSION_TTL": "-5"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ConfigError" in result.stderr
    assert "KVKIT_SESSION_TTL" in result.stderr
