"""The kvkit command line, run as a real subprocess where it matters."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

import kvkit
from kvkit.cli import main
from tests.servers import free_port


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    """Run `python -m kvkit ARGS` in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KVKIT_", "REDIS_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kvkit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin,
        timeout=120,
    )


def test_demo_on_memory_by_default():
    """`kvkit demo` walks through all three services on memory://."""
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    for section in ("1. cache", "2. sessions", "3. queue", "factory ran 1x", "processed 2"):
        assert section in result.stdout
    assert "memory://" in result.stdout


def test_demo_on_fakeredis():
    """`kvkit demo --url fakeredis://` uses the Redis driver."""
    result = run_cli("demo", "--url", "fakeredis://")
    assert result.returncode == 0, result.stderr
    assert "(fakeredis)" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["demo", "--url", "nope://:hunter2@h"], 2, "unknown URL scheme"),
        (["demo", "--url", "redis://:hunter2@h?bogus=1"], 2, "unknown option"),
        (["check", "--url", "redis://:hunter2@127.0.0.1:1/0?retries=0"], 1, "FAIL"),
        (["bench", "--ops", "0"], 2, "--ops"),
        (["bench", "--ops", "-5"], 2, "--ops"),
        (["queue", "dead", "q", "--url", "memory://", "--count", "0"], 2, "--count"),
        (["check", "--url", "memory://", "--timeout", "nan"], 2, "--timeout"),
        (["frobnicate"], 2, "invalid choice"),
        (["queue", "stats"], 2, "required"),
    ],
)
def test_bad_input_is_one_clear_line(args, code, message):
    """Bad input exits 1 or 2 with a clear message, no traceback and no password."""
    result = run_cli(*args)
    assert result.returncode == code
    output = result.stdout + result.stderr
    assert message in output
    assert "Traceback" not in output
    assert "hunter2" not in output


def test_bad_env_value_names_the_variable():
    """A malformed KVKIT_* variable is reported by name."""
    result = run_cli("check", env={"KVKIT_CACHE_TTL": "soon"})
    assert result.returncode == 2
    assert "KVKIT_CACHE_TTL" in result.stderr


@pytest.mark.redis
def test_check_passes_against_a_live_server(redis_url):
    """`kvkit check --url` passes every check against the suite's redis-server."""
    result = run_cli("check", "--url", redis_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    for role in ("cache", "sessions", "queues"):
        assert f"{role}" in result.stdout


@pytest.mark.redis
def test_check_three_database_layout_from_env(redis_server_factory):
    """`kvkit check --env REDIS_` reads the original variables and checks isolation."""
    server = redis_server_factory(password="hunter2")
    base = f"redis://:hunter2@127.0.0.1:{server.port}"
    env = {
        "REDIS_CACHE_URL": base + "/0",
        "REDIS_SESSION_URL": base + "/1",
        "REDIS_QUEUE_URL": base + "/2",
    }
    result = run_cli("check", "--env", "REDIS_", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "pass"
    assert any(row["check"] == "isolated from cache" for row in report["checks"])
    assert "hunter2" not in result.stdout
    assert report["urls"]["sessions"].endswith("/1")


@pytest.mark.redis
def test_check_fails_cleanly_against_a_stopped_server(redis_server_factory):
    """A stopped server gives exit 1, failed rows and no traceback or password."""
    server = redis_server_factory(password="hunter2")
    url = server.url
    server.stop()
    result = run_cli("check", "--url", url + "?retries=0&connect_timeout=1")
    assert result.returncode == 1
    assert "some checks FAILED" in result.stdout
    assert "BackendUnavailable" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_reports_prefix_isolation_for_one_store(monkeypatch):
    """Roles that share one store are reported as isolated by key prefix."""
    out = io.StringIO()
    monkeypatch.setenv("KVKIT_CACHE_URL", "memory://iso-check")
    monkeypatch.setenv("KVKIT_SESSION_URL", "memory://iso-check")
    monkeypatch.setenv("KVKIT_QUEUE_URL", "memory://iso-check")
    assert main(["check"], out=out) == 0
    assert "isolated by key prefix" in out.getvalue()


def test_queue_commands_in_process():
    """queue stats/dead/requeue/purge work against a shared memory store."""
    url = "memory://cli-queue"
    with kvkit.Client(url) as client:
        queue = client.queue("jobs", max_deliveries=1, visibility_timeout=0.05)
        queue.push({"n": 1})
        queue.push({"n": 2})
        message = queue.pop()
        queue.nack(message)
        assert queue.pop() is not None  # the other message, leased and left unacked
    out = io.StringIO()
    assert main(["queue", "stats", "jobs", "--url", url, "--json"], out=out) == 0
    stats = json.loads(out.getvalue())
    assert set(stats) >= {"ready", "pending", "delayed", "dead", "consumers", "oldest_pending_s"}
    out = io.StringIO()
    assert main(["queue", "dead", "jobs", "--url", url, "--json"], out=out) == 0
    dead = json.loads(out.getvalue())
    assert [d["payload"] for d in dead] == [{"n": 1}]
    out = io.StringIO()
    assert main(["queue", "requeue", "jobs", "--url", url], out=out) == 0
    assert "requeued 1" in out.getvalue()
    out = io.StringIO()
    assert main(["queue", "purge", "jobs", "--url", url, "--yes"], out=out) == 0
    assert "purged" in out.getvalue()


def test_purge_needs_confirmation():
    """purge without --yes and without a terminal refuses (exit 1)."""
    result = run_cli("queue", "purge", "jobs", "--url", "memory://", stdin="")
    assert result.returncode == 1
    assert "--yes" in result.stderr


def test_bench_prints_a_table():
    """`kvkit bench` prints p50/p99 and ops/s for each operation."""
    out = io.StringIO()
    assert main(["bench", "--ops", "20", "--url", "memory://"], out=out) == 0
    text = out.getvalue()
    for name in ("cache.get", "cache.set", "sessions.update", "queue.pop+ack", "p99"):
        assert name in text


@pytest.mark.redis
def test_bench_against_redis(redis_url):
    """`kvkit bench --url redis://` runs against a real server."""
    out = io.StringIO()
    assert main(["bench", "--ops", "20", "--url", redis_url], out=out) == 0
    assert "(redis)" in out.getvalue()


def test_unreachable_server_exits_1_quickly():
    """demo against a refused port fails with BackendUnavailable, exit 1."""
    result = run_cli("demo", "--url", f"redis://127.0.0.1:{free_port()}/0?retries=0")
    assert result.returncode == 1
    assert "BackendUnavailable" in result.stderr
