"""`kvkit locks list`: held locks with owner, token and ttl; never a password."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid

import pytest

import kvkit
from kvkit.cli import main


def run_cli(*args: str):
    """Run `python -m kvkit ARGS` in a subprocess without KVKIT_*/REDIS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVKIT_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "kvkit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(args), out=out)
    return code, out.getvalue()


def test_lists_held_locks_with_owner_token_and_ttl():
    """The table shows each held lock's name, token, remaining ttl and owner."""
    url = f"memory://cli-locks-{uuid.uuid4().hex[:8]}"
    with kvkit.Client(url) as client:
        code, text = _cli("locks", "list", "--url", url)
        assert code == 0 and "no locks held under prefix 'kvkit'" in text
        lock = client.lock("report-rebuild", ttl=60)
        odd = client.lock("tab\there\x1b", ttl=60)
        assert lock.acquire() and odd.acquire()
        code, text = _cli("locks", "list", "--url", url)
        assert code == 0
        assert "2 lock(s) held" in text
        row = next(line for line in text.splitlines() if line.startswith("report-rebuild"))
        assert str(lock.token) in row and ":" in row.split()[-1] and "60.0" in row
        assert "tab\\there\\x1b" in text and "\x1b" not in text  # escaped, not sent raw
        code, text = _cli("locks", "list", "--url", url, "--json")
        data = json.loads(text)
        assert [d["name"] for d in data] == ["report-rebuild", "tab\there\x1b"]
        assert data[0]["token"] == lock.token and 0 < data[0]["ttl"] <= 60
        lock.release()
        odd.release()
        code, text = _cli("locks", "list", "--url", url, "--json")
        assert json.loads(text) == []


@pytest.mark.redis
def test_lists_values_written_by_others_without_failing(redis_url):
    """Foreign values (or another type) under a lock key are listed as unreadable."""
    prefix = "c" + uuid.uuid4().hex[:10]
    settings = kvkit.Settings(url=redis_url, prefix=prefix)
    with kvkit.Client(settings=settings) as client:
        raw = client.redis()
        raw.set(f"{prefix}:lock:{{foreign}}", "not a kvkit value", ex=30)
        raw.hset(f"{prefix}:lock:{{hashed}}", "a", "b")
        raw.expire(f"{prefix}:lock:{{hashed}}", 30)
        raw.set(f"{prefix}:lock:{{forever}}", "7:someone")
        with client.lock("real"):
            code, text = _cli("locks", "list", "--url", redis_url, "--prefix", prefix)
        raw.delete(*(f"{prefix}:lock:{{{n}}}" for n in ("foreign", "hashed", "forever")))
    assert code == 0
    rows = {line.split()[0]: line for line in text.splitlines()[2:] if line.strip()}
    assert set(rows) == {"name", "foreign", "hashed", "forever", "real"}
    assert "(not written by kvkit)" in rows["foreign"] and "?" in rows["hashed"]
    assert "no expiry" in rows["forever"] and "someone" in rows["forever"]


@pytest.mark.redis
def test_subprocess_never_prints_the_password(redis_server_factory):
    """Against a password-protected server the output shows the URL redacted."""
    server = redis_server_factory(password="hunter2")
    with kvkit.Client(server.url) as client, client.lock("job"):
        result = run_cli("locks", "list", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert "job" in result.stdout and ":***@" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["locks"], 2, "required"),
        (["locks", "show", "--url", "memory://"], 2, "invalid choice"),
        (["locks", "list"], 2, "no backend configured"),
        (["locks", "list", "--url", "redis://:hunter2@127.0.0.1:1/0?retries=0"], 1, "Backend"),
    ],
)
def test_bad_input_and_unreachable_server(args, code, message):
    """Usage errors exit 2, an unreachable server 1; one line, no traceback or password."""
    result = run_cli(*args)
    assert result.returncode == code
    output = result.stdout + result.stderr
    assert message in output
    assert "Traceback" not in output and "hunter2" not in output
