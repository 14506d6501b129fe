"""Security: no secret shown, no pickle run, no session id reused.

Secrets are checked where they could leak: ``repr``/``str`` of every kvkit object, error
messages and their chained causes, every log record at DEBUG (kvkit's and redis-py's),
health output and CLI output.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import threading
import time
import traceback
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvkit
from kvkit._urls import parse_url, redact_url
from kvkit.cli import main as cli_main
from kvkit.ext.flask import settings_from_config
from tests.backends import BACKENDS, settings_for
from tests.servers import HOST, free_port

SECRET = "s3cr3t-Pa55"  # distinctive, so any leak is found by a plain substring search


def _texts_of(exc: BaseException) -> list[str]:
    """Everything an exception shows: str, repr, the full formatted chain."""
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text, text


@pytest.fixture
def debug_logs(caplog):
    """Capture every log record at DEBUG, from every logger (kvkit and redis-py)."""
    caplog.set_level(logging.DEBUG)
    return caplog


# --------------------------------------------------------------------------- secrets


@pytest.mark.redis
def test_no_secret_in_any_output_standalone(redis_server_factory, debug_logs, capsys):
    """Right and wrong passwords, a dead server: the password never shows anywhere."""
    server = redis_server_factory(password=SECRET)
    good = f"redis://:{SECRET}@{HOST}:{server.port}/0"
    bad = f"redis://:wrong-{SECRET}@{HOST}:{server.port}/0"
    down = f"redis://app:{SECRET}@{HOST}:{free_port()}/0"
    shown: list[str] = []
    with kvkit.Client(good) as client:
        client.cache.set("k", 1)
        client.redis().client_kill_filter(_id=client.redis().client_id())
        assert client.cache.get("k") == 1  # a retried failure: redis-py logs at DEBUG
        shown += [repr(client), str(client), repr(client.settings), repr(client.cache)]
        shown += [repr(client.backend()), str(client.health()), repr(client.sessions)]
        client.cache.clear()
    for url in (bad, down):
        settings = kvkit.Settings(url=url, retries=1, connect_timeout=0.5)
        with kvkit.Client(settings=settings) as client:
            with pytest.raises(kvkit.BackendError) as info:
                client.cache.get("k")
            shown += _texts_of(info.value)
            shown += [str(client.health()), repr(client)]
    with pytest.raises(kvkit.ConfigError) as config_error:
        kvkit.Client(f"redis://:{SECRET}@{HOST}:{server.port}/0?nope=1")
    shown += _texts_of(config_error.value)
    out = io.StringIO()
    assert cli_main(["demo", "--url", good], out=out) == 0
    assert cli_main(["demo", "--url", bad], out=out) != 0
    captured = capsys.readouterr()
    shown += [out.getvalue(), captured.out, captured.err]
    shown += [r.getMessage() for r in debug_logs.records] + [debug_logs.text]
    _assert_no_secret(*shown)
    assert any("redis://:***@" in text for text in shown)


@pytest.mark.redis
async def test_no_secret_in_async_output(redis_server_factory, debug_logs):
    """The async client: errors, health and logs never show the password."""
    server = redis_server_factory(password=SECRET)
    shown: list[str] = []
    async with kvkit.AsyncClient(f"redis://:{SECRET}@{HOST}:{server.port}/0") as client:
        await client.cache.set("k", 1)
        shown += [repr(client), str(await client.health())]
        await client.cache.clear()
    bad = kvkit.Settings(url=f"redis://:x{SECRET}@{HOST}:{server.port}/0", retries=0)
    async with kvkit.AsyncClient(settings=bad) as client:
        with pytest.raises(kvkit.AuthenticationError) as info:
            await client.cache.get("k")
        shown += [*_texts_of(info.value), str(await client.health())]
    shown += [debug_logs.text]
    _assert_no_secret(*shown)


@pytest.mark.redis
def test_acl_user_secret_never_shown(redis_server_factory, debug_logs):
    """redis://user:pass@ with an ACL user: works; a wrong password fails fast and quietly."""
    server = redis_server_factory(acl_users=[f"user app on >{SECRET} ~* +@all"])
    with kvkit.Client(f"redis://app:{SECRET}@{HOST}:{server.port}/0") as client:
        client.cache.set("k", "v")
        assert client.cache.get("k") == "v"
        shown = [repr(client), str(client.health())]
    with kvkit.Client(f"redis://app:bad{SECRET}@{HOST}:{server.port}/0") as client:
        start = time.monotonic()
        with pytest.raises(kvkit.AuthenticationError) as info:
            client.cache.get("k")
        assert time.monotonic() - start < 1.0  # never retried, no backoff
        shown += _texts_of(info.value)
    shown += [debug_logs.text]
    _assert_no_secret(*shown)
    assert "redis://***:***@" in shown[0]


@pytest.mark.cluster
def test_no_secret_in_cluster_and_sentinel_output(redis_cluster, debug_logs):
    """Cluster and Sentinel URLs: repr, errors (reachable or not) and logs stay clean."""
    seeds = ",".join(f"{HOST}:{node.port}" for node in redis_cluster.nodes)
    urls = [
        f"redis+cluster://app:{SECRET}@{seeds}",
        f"redis+cluster://:{SECRET}@{HOST}:{free_port()}",
        f"rediss+cluster://:{SECRET}@{HOST}:{free_port()}?ssl_cert_reqs=none",
        f"redis+sentinel://:{SECRET}@{HOST}:{free_port()}/mymaster?sentinel_auth=true",
    ]
    shown: list[str] = []
    for url in urls:
        with kvkit.Client(settings=kvkit.Settings(url=url, retries=0)) as client:
            shown += [repr(client), repr(client.backend()), repr(client.settings)]
            with pytest.raises(kvkit.BackendError) as info:
                client.cache.get("k")
            shown += [*_texts_of(info.value), str(client.health())]
    shown += [debug_logs.text]
    _assert_no_secret(*shown)


# --------------------------------------------------------------------------- pickle


class _Exploit:
    """Unpickling this would write the marker file: proof of code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every backend of the conformance suite."""
    return str(request.param)


async def test_planted_pickle_never_executes(request, backend, tmp_path):
    """Pickle payloads planted in the cache and in a session raise DecodeError, run nothing."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    async with kvkit.AsyncClient(settings=settings_for(request, backend)) as client:
        cache = client.cache
        await cache._driver.set(cache.prefix + "evil", payload, None)
        with pytest.raises(kvkit.DecodeError, match="evil"):
            await cache.get("evil")
        with pytest.raises(kvkit.DecodeError):
            await cache.get_many(["evil"])
        with pytest.raises(kvkit.DecodeError):
            await cache.get_or_set("evil", lambda: 1)
        sessions = client.sessions
        sid = await sessions.create({"user": "ann"})
        assert await sessions._driver.replace(sessions._keys.key(sid), {"user": payload})
        with pytest.raises(kvkit.DecodeError):
            await sessions.get(sid)
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            await cache._driver.set(
                cache.prefix + "p", pickle.dumps(_Exploit(marker), protocol), None
            )
            with pytest.raises(kvkit.DecodeError):
                await cache.get("p")
        await sessions.delete(sid)
        await cache.clear()
    assert not marker.exists()


def test_no_pickle_import_in_kvkit():
    """kvkit's source never imports pickle (or marshal/shelve)."""
    root = Path(kvkit.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for module in ("pickle", "marshal", "shelve", "dill", "cloudpickle"):
            assert f"import {module}" not in text, path
            assert f"from {module}" not in text, path


# --------------------------------------------------------------------------- session ids


async def test_session_ids_are_never_reused(request, backend):
    """Ids are unique and >= 256 bits; deleted and rotated ids are dead for good."""
    async with kvkit.AsyncClient(settings=settings_for(request, backend)) as client:
        sessions = client.sessions
        first = [await sessions.create({"n": i}) for i in range(300)]
        assert len(set(first)) == 300
        assert all(len(sid) >= 43 for sid in first)  # 256 bits in URL-safe base64
        for sid in first[:150]:
            assert await sessions.delete(sid)
        rotated = [await sessions.rotate(sid) for sid in first[150:]]
        assert None not in rotated
        second = [await sessions.create({"n": i}) for i in range(300)]
        every = first + rotated + second
        assert len(set(every)) == len(every)
        for sid in first:  # deleted or rotated away: never honoured again
            assert await sessions.get(sid) is None
            assert await sessions.set(sid, {"x": 1}) is False
            assert await sessions.update(sid, {"x": 1}) is None
            assert await sessions.touch(sid) is False
            assert await sessions.rotate(sid) is None
        for sid in rotated + second:
            await sessions.delete(sid)


async def test_forged_ids_are_never_honoured(request, backend):
    """An id the store did not create is not honoured, even one shaped like a real id."""
    async with kvkit.AsyncClient(settings=settings_for(request, backend)) as client:
        sessions = client.sessions
        real = await sessions.create({"a": 1})
        forged = real[:-4] + ("AAAA" if real[-4:] != "AAAA" else "BBBB")
        for sid in (forged, "x", "", "../" + real, real + "x", real.upper()):
            if sid == real:
                continue
            assert await sessions.get(sid) is None
            assert await sessions.set(sid, {"b": 2}) is False
        assert await sessions.get(real) == {"a": 1}
        await sessions.delete(real)


def test_session_ids_unique_across_threads():
    """8 threads creating sessions at once never receive the same id."""
    ids: list[str] = []
    lock = threading.Lock()
    with kvkit.Client(f"memory://ids-{uuid.uuid4().hex}") as client:

        def work() -> None:
            mine = [client.sessions.create() for _ in range(500)]
            with lock:
                ids.extend(mine)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(ids) == len(set(ids)) == 4000


# --------------------------------------------------------------- issue 11 #13: any password

# Every run of ordinary characters in a generated secret contains "zq", so a leaked piece
# of a secret is found by searching for "zq" even when a reserved character split it.
_RESERVED = " /#?@:%&=+[],!$'()*;~"
_secret_piece = st.builds(
    lambda tail, sep: "zq" + tail + sep,
    st.text(alphabet="abcXYZ019-._", max_size=3),
    st.text(alphabet=_RESERVED, max_size=3),
)
_secrets = st.lists(_secret_piece, min_size=1, max_size=4).map("".join)
_FORMS = ("raw_userinfo", "encoded_userinfo", "raw_query", "encoded_query", "user_and_password")
_TAILS = ("", "bogus=1", "socket_timeout=abc")


def _url_for(form: str, secret: str, tail: str) -> str:
    host = "redis.invalid:6379/0"
    join = "&" if "query" in form else "?"
    extra = (join + tail) if tail else ""
    if form == "raw_userinfo":
        return f"redis://:{secret}@{host}{extra}"
    if form == "encoded_userinfo":
        return f"redis://:{quote(secret, safe='')}@{host}{extra}"
    if form == "user_and_password":
        return f"redis://{quote(secret, safe='')}:{secret}@{host}{extra}"
    value = secret if form == "raw_query" else quote(secret, safe="")
    return f"redis://{host}?password={value}{extra}"


def _everything_shown_for(url: str) -> list[str]:
    """Every text kvkit produces for ``url`` without I/O: reprs, errors, CLI stderr, logs."""
    shown: list[str] = [redact_url(url)]
    try:
        parsed = parse_url(url)
    except kvkit.ConfigError as exc:
        shown += _texts_of(exc)
    else:
        settings = kvkit.Settings(url=url)
        client = kvkit.Client(settings=settings)
        shown += [repr(parsed), str(parsed), repr(settings), repr(client), str(client)]
        shown += [repr(client.backend()), repr(client.cache), repr(client.sessions)]
        client.close()
    for var in ("KVKIT_URL", "KVKIT_QUEUE_URL"):
        try:
            kvkit.Settings.from_env(environ={var: url, "KVKIT_CACHE_TTL": "x"})
        except kvkit.ConfigError as exc:
            shown += _texts_of(exc)
    try:
        settings_from_config({"KVKIT_URL": url + "&bogus=1"})
    except kvkit.ConfigError as exc:
        shown += _texts_of(exc)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        # An unknown option makes every form a ConfigError before any I/O.
        assert cli_main(["check", "--url", url + ("&" if "?" in url else "?") + "bogus=1"]) == 2
    shown.append(err.getvalue())
    return shown


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=_secrets, form=st.sampled_from(_FORMS), tail=st.sampled_from(_TAILS))
def test_no_random_password_is_ever_shown(secret, form, tail):
    """Property: for any password in any form, no piece of it appears in any output."""
    url = _url_for(form, secret, tail)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        shown = _everything_shown_for(url)
    finally:
        root.removeHandler(handler)
    shown += [r.getMessage() for r in records]
    for text in shown:
        assert "zq" not in text.lower(), (url, text)
    if form.startswith("encoded") and not tail:
        # Percent-encoded, every password is accepted and read back exactly.
        assert parse_url(url).password == secret


# --------------------------------------------------------------- issue 11 #5 on a real server


@pytest.mark.redis
def test_database_beyond_the_server_is_a_config_error(redis_server):
    """/99999 passes parsing (servers may have that many dbs) but is a ConfigError, not retried."""
    url = f"{redis_server.url}/99999"
    with kvkit.Client(url) as client:
        start = time.monotonic()
        with pytest.raises(kvkit.ConfigError, match="no such database"):
            client.cache.get("k")
        assert time.monotonic() - start < 1.0  # not retried with backoff
        assert client.health().status != "pass"


@pytest.mark.redis
async def test_database_beyond_the_server_async(redis_server):
    """The async client reports the missing database the same way."""
    async with kvkit.AsyncClient(f"{redis_server.url}/99999") as client:
        with pytest.raises(kvkit.ConfigError, match="no such database"):
            await client.cache.set("k", 1)


@pytest.mark.redis
def test_bad_client_name_fails_before_reaching_the_server(redis_server):
    """client_name with a space used to fail at first use as a BackendError."""
    with pytest.raises(kvkit.ConfigError, match="client_name"):
        kvkit.Client(f"{redis_server.url}/0?client_name=my%20app")
    with kvkit.Client(f"{redis_server.url}/0?client_name=my-app") as client:
        client.cache.set("k", 1)
        names = [c["name"] for c in client.redis().client_list()]
        assert "my-app" in names
        client.cache.clear()


@pytest.mark.redis
def test_query_password_authenticates(redis_server_factory, debug_logs):
    """?password= is accepted as redis-py accepts it, and never shown (logs included)."""
    server = redis_server_factory(password=SECRET)
    url = f"redis://{HOST}:{server.port}/0?password={quote(SECRET, safe='')}"
    with kvkit.Client(url) as client:
        client.cache.set("k", 1)
        assert client.cache.get("k") == 1
        shown = [repr(client), str(client.health()), repr(client.settings)]
        client.cache.clear()
    wrong = url.replace("password=", "password=x")
    with kvkit.Client(settings=kvkit.Settings(url=wrong, retries=0)) as client:
        with pytest.raises(kvkit.AuthenticationError) as info:
            client.cache.get("k")
        shown += [*_texts_of(info.value), str(client.health())]
    shown += [debug_logs.text]
    _assert_no_secret(*shown)
    assert "?password=***" in shown[0]
