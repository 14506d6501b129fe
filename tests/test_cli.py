"""The kvkit command line, run as a real subprocess where it matters."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import kvkit
from kvkit.cli import build_parser, main
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


# --------------------------------------------------------------------------- issue 11: #19
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "--env", "REDIS"], "none of REDIS_URL"),
        (["check", "--env", "NOPE_"], "none of NOPE_URL"),
        (["check", "--env", " "], "--env needs"),
        (["check", "--url", ""], "--url is empty"),
        (["check"], "no backend configured"),
        (["queue", "stats", "emails"], "no backend configured"),
        (["queue", "stats", "emails", "--env", "REDIS_"], "none of REDIS_URL"),
        (["bench", "--env", "NOPE"], "none of NOPE_URL"),
        (["demo", "--env", "NOPE"], "none of NOPE_URL"),
    ],
)
def test_unset_or_unknown_source_is_a_usage_error(args, message):
    """An --env prefix that configures nothing, an empty --url or no config: exit 2."""
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "all checks passed" not in result.stdout
    assert "Traceback" not in result.stderr


def test_env_prefix_without_underscore_reads_the_variables():
    """`--env REDIS` means `--env REDIS_` (a missing trailing underscore is added)."""
    env = {"REDIS_URL": "memory://"}
    result = run_cli("check", "--env", "REDIS", env=env)
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout


@pytest.mark.redis
def test_queue_stats_reads_the_original_variables(redis_server_factory):
    """`kvkit queue stats --env REDIS_` finds the message; the password stays off argv."""
    server = redis_server_factory(password="hunter2")
    base = f"redis://:hunter2@127.0.0.1:{server.port}"
    env = {
        "REDIS_CACHE_URL": base + "/0",
        "REDIS_SESSION_URL": base + "/1",
        "REDIS_QUEUE_URL": base + "/2",
    }
    with kvkit.Client(settings=kvkit.Settings.from_env("REDIS_", environ=env)) as client:
        client.queue("emails").push({"to": "ada@example.com"})
    result = run_cli("queue", "stats", "emails", "--env", "REDIS_", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ready"] == 1
    # Without --env the KVKIT_* variables are unset: an error, not "0 ready" from memory://.
    result = run_cli("queue", "stats", "emails", env=env)
    assert result.returncode == 2
    assert "--env" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- issue 11: #20
@pytest.fixture
def black_hole():
    """A TCP server that accepts connections and never replies; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_check_against_a_black_hole_is_bounded_and_streamed(black_hole):
    """--timeout bounds the whole check; lines appear while it still runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVKIT_", "REDIS_"))}
    url = f"redis://127.0.0.1:{black_hole}/0"
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvkit", "check", "--timeout", "3", "--url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("cache")
        assert proc.poll() is None  # streamed: the header came before the checks ended
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    elapsed = time.monotonic() - start
    assert proc.returncode == 1
    assert "timed out (--timeout 3 s)" in out
    assert "not run" in out
    assert "some checks FAILED" in out
    assert "Traceback" not in err
    assert elapsed < 3 + 20  # the timeout plus interpreter start-up on a busy machine


def test_check_timeout_defaults_to_ten_seconds():
    """The default --timeout of `kvkit check` is 10 s."""
    args = build_parser().parse_args(["check", "--url", "memory://"])
    assert args.timeout == 10.0


# --------------------------------------------------------------------------- issue 11: #21
def test_version():
    """`kvkit --version` prints the package version."""
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kvkit {kvkit.__version__}"


def test_closed_stdout_ends_quietly():
    """A reader that went away (`kvkit check | head -3`) gives no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVKIT_", "REDIS_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvkit", "check", "--url", "memory://"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # every write now fails with EPIPE
    with proc.stderr:
        err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
    assert err == ""
    assert proc.returncode == 1


# --------------------------------------------------------------------------- issue 11: #22
def _keyspace(raw) -> dict[bytes, bytes]:
    return {key: raw.dump(key) for key in raw.scan_iter(count=1000)}


def _assert_left_nothing(raw, before: dict[bytes, bytes], tool: str) -> None:
    for key, dumped in before.items():
        assert raw.dump(key) == dumped, f"{tool} modified application key {key!r}"
    for key in raw.scan_iter(count=1000):
        if key not in before:
            assert 0 < raw.pttl(key) <= 60_000, f"{tool} left {key!r} without a short TTL"


@pytest.mark.redis
def test_tools_leave_nothing_and_touch_no_application_data(redis_server_factory):
    """demo, check and bench: no key without TTL, no application key modified."""
    server = redis_server_factory()
    url = server.url
    with kvkit.Client(url) as app:
        sid = app.sessions.create({"name": "Ada"}, user_id="ada")
        app.cache.namespace("demo").set("greeting", "the app's own")
        app.cache.set("visits", 41)
        app.queue("kvkit-demo").push({"app": 1})
        app.queue("__kvkit_check__").push({"app": 2})
    with server.client() as raw:
        raw.set("app:config", "x")
        before = _keyspace(raw)
        for args in (["demo"], ["check"], ["bench", "--ops", "5"]):
            result = run_cli(*args, "--url", url)
            assert result.returncode == 0, result.stdout + result.stderr
            _assert_left_nothing(raw, before, args[0])
    with kvkit.Client(url) as app:
        assert app.sessions.get(sid) == {"name": "Ada"}
        assert app.cache.namespace("demo").get("greeting") == "the app's own"
        assert app.queue("kvkit-demo").stats().ready == 1


def test_worst_case_latency_of_one_operation_is_as_documented(black_hole):
    """One read against a silent server takes (retries + 1) x socket_timeout plus backoff."""
    url = f"redis://127.0.0.1:{black_hole}/0?socket_timeout=0.2&connect_timeout=0.2&retries=2"
    with kvkit.Client(url) as client:
        start = time.monotonic()
        with pytest.raises(kvkit.BackendTimeout):
            client.cache.get("k")
        elapsed = time.monotonic() - start
    # 3 attempts of 0.2 s; the backoff between them is under 0.15 s for 2 retries.
    assert 0.6 <= elapsed < 0.6 + 0.15 + 1.0
