"""Tests proving that the real-server helpers of ``tests/servers.py`` work."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.servers import (
    FORBIDDEN_PORTS,
    HOST,
    RedisCluster,
    RedisServer,
    RedisServerError,
    SentinelSetup,
    TLSFiles,
    free_port,
)

Factory = Callable[..., RedisServer]
REPO_ROOT = Path(__file__).resolve().parent.parent


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _sentinel(setup: SentinelSetup) -> redis.sentinel.Sentinel:
    """A redis-py Sentinel client for ``setup`` (close it)."""
    return redis.sentinel.Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        setup.sentinels, socket_timeout=2
    )


def _port_is_bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- ports / guards


def test_free_port_never_repeats_and_checks_the_bus_port() -> None:
    """free_port hands out distinct ports; cluster ports have a free bus port too."""
    ports = [free_port() for _ in range(20)]
    cluster_ports = [free_port(cluster=True) for _ in range(5)]
    everything = ports + cluster_ports + [p + 10000 for p in cluster_ports]
    assert len(set(everything)) == len(everything)
    assert not FORBIDDEN_PORTS & set(everything)
    assert all(p + 10000 <= 65535 and _port_is_bindable(p + 10000) for p in cluster_ports)


def test_well_known_port_is_refused() -> None:
    """A server can never be configured on the developer's port 6379."""
    with pytest.raises(ValueError, match="6379"):
        RedisServer(port=6379)


# --------------------------------------------------------------------------- standalone


@pytest.mark.redis
def test_server_starts_answers_stops_and_releases_its_port(
    redis_server_factory: Factory,
) -> None:
    """A server answers PING once started; after stop() it is gone and its port is free."""
    server = redis_server_factory()
    assert server.ping() and server.port not in FORBIDDEN_PORTS
    assert server.url == f"redis://127.0.0.1:{server.port}"
    with redis.Redis.from_url(server.url, retry=_no_retry()) as client:
        assert client.ping() is True
    server.stop()
    assert not server.running and server.pid is None
    assert _port_is_bindable(server.port)
    with (
        redis.Redis(host=HOST, port=server.port, retry=_no_retry()) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()


@pytest.mark.redis
def test_start_moves_to_a_new_port_when_the_chosen_one_was_taken(tmp_path: Path) -> None:
    """A bind race on an automatically chosen port is retried on another free port."""
    server = RedisServer(directory=tmp_path)
    taken = server.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, taken))  # bound, not listening: redis-server cannot bind it
        with server:
            assert server.port != taken
            assert server.ping()


@pytest.mark.redis
def test_start_failure_raises_with_the_log_tail(tmp_path: Path) -> None:
    """A server that cannot start raises RedisServerError quoting its own output."""
    server = RedisServer(directory=tmp_path, extra_config=["no-such-directive yes"])
    with pytest.raises(RedisServerError, match="no-such-directive"):
        server.start()
    assert not server.running


@pytest.mark.redis
def test_session_server_url_and_flush(redis_url: str, redis_flush: RedisServer) -> None:
    """The session server is reachable through redis_url and redis_flush empties it."""
    assert redis_url == redis_flush.url
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("kvkit:test", "1")
        assert client.get("kvkit:test") == b"1"


@pytest.mark.redis
def test_password_server_rejects_clients_without_auth(redis_server_factory: Factory) -> None:
    """The requirepass is enforced, the URL carries the (quoted) password, repr hides it."""
    password = "s3cr:t/@pw"
    server = redis_server_factory(password=password)
    with (
        redis.Redis(host=HOST, port=server.port, retry=_no_retry()) as anon,
        pytest.raises(redis.AuthenticationError),
    ):
        anon.get("x")
    with redis.Redis.from_url(server.url, retry=_no_retry()) as client:
        assert client.ping() is True
    assert password not in repr(server)


@pytest.mark.redis
def test_acl_user_can_log_in_with_its_permissions(redis_server_factory: Factory) -> None:
    """An ACL user line is applied: the user authenticates and is confined to its keys."""
    server = redis_server_factory(acl_users=["user app on >apppass ~app:* +@all"])
    with server.client(username="app", password="apppass") as client:
        assert client.acl_whoami() == "app"
        client.set("app:k", "v")
        assert client.get("app:k") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("other:k", "v")
    with (
        server.client(username="app", password="wrong") as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()


@pytest.mark.redis
@pytest.mark.faults
def test_appendonly_server_keeps_data_across_kill_and_restart(
    redis_server_factory: Factory,
) -> None:
    """With appendonly+fsync always, a key written before SIGKILL is there after restart."""
    server = redis_server_factory(appendonly=True)
    port, pid = server.port, server.pid
    with server.client() as client:
        client.set("durable", "yes")
    server.kill()
    assert not server.running and pid is not None and not _pid_alive(pid)
    server.restart()
    assert server.port == port and server.pid != pid
    with server.client() as client:
        assert client.get("durable") == b"yes"


@pytest.mark.redis
def test_unix_socket_server_answers_on_its_socket(redis_server_factory: Factory) -> None:
    """unixsocket=True exposes a 0700 socket at unix_path that answers commands."""
    server = redis_server_factory(unixsocket=True)
    assert server.unix_path is not None
    assert stat.S_IMODE(os.stat(server.unix_path).st_mode) == 0o700
    with redis.Redis(unix_socket_path=server.unix_path, retry=_no_retry()) as client:
        assert client.ping() is True
        client.set("via", "unix")
    with server.client() as client:
        assert client.get("via") == b"unix"


@pytest.mark.redis
def test_tls_server_verifies_with_its_ca_only(
    redis_server_factory: Factory, tls_files: TLSFiles
) -> None:
    """A TLS server accepts a client trusting its CA; one trusting another CA fails."""
    server = redis_server_factory(tls=tls_files)
    assert server.url == f"rediss://127.0.0.1:{server.port}"
    with redis.Redis(
        host=HOST, port=server.port, ssl=True, ssl_ca_certs=tls_files.ca_cert, retry=_no_retry()
    ) as client:
        assert client.ping() is True
    with redis.Redis.from_url(
        server.url, ssl_ca_certs=tls_files.ca_cert, retry=_no_retry()
    ) as client:
        assert client.ping() is True
    with (
        redis.Redis(
            host=HOST,
            port=server.port,
            ssl=True,
            ssl_ca_certs=tls_files.other_ca_cert,
            retry=_no_retry(),
        ) as client,
        pytest.raises(redis.ConnectionError, match="certificate verify failed"),
    ):
        client.ping()


@pytest.mark.redis
def test_atexit_hook_kills_servers_left_running() -> None:
    """A server never stopped by its owner dies with the Python process that started it."""
    script = textwrap.dedent(
        """
        from tests.servers import RedisServer
        server = RedisServer().start()
        print(server.pid, flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid)


# --------------------------------------------------------------------------- cluster


@pytest.mark.cluster
def test_cluster_is_ok_and_serves_keys_in_all_slots(redis_cluster: RedisCluster) -> None:
    """Every node reports cluster_state:ok and a RedisCluster client uses all three."""
    assert redis_cluster.url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{node.port}" for node in redis_cluster.nodes
    )
    for node in redis_cluster.nodes:
        with node.client(decode_responses=True) as client:
            assert client.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
    keys = [f"kvkit:{i}" for i in range(30)]
    with redis_cluster.client() as client:
        for key in keys:
            client.set(key, key)
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]
        owners = {client.get_node_from_key(key).port for key in keys}
        assert len({client.keyslot(key) for key in keys}) > 1
    assert owners == {node.port for node in redis_cluster.nodes}


# --------------------------------------------------------------------------- sentinel


@pytest.mark.sentinel
def test_sentinel_clients_find_master_and_replica(sentinel_setup: SentinelSetup) -> None:
    """redis-py's Sentinel finds the master (read/write) and the replica."""
    assert (
        sentinel_setup.url == f"redis+sentinel://127.0.0.1:{sentinel_setup.sentinel.port}/mymaster"
    )
    assert sentinel_setup.service_name == "mymaster"
    with _sentinel(sentinel_setup) as sentinel:
        assert sentinel.discover_master("mymaster") == (HOST, sentinel_setup.master.port)
        with sentinel.master_for("mymaster", socket_timeout=2) as master:
            master.set("kvkit:sentinel", "1")
            assert master.get("kvkit:sentinel") == b"1"
            assert master.wait(1, 2000) == 1
        with sentinel.slave_for("mymaster", socket_timeout=2) as replica:
            assert replica.get("kvkit:sentinel") == b"1"


@pytest.mark.sentinel
@pytest.mark.faults
def test_sentinel_failover_moves_the_master(tmp_path: Path) -> None:
    """failover() promotes the replica, Sentinel clients follow, and it can fail back."""
    with SentinelSetup(tmp_path) as setup:
        old_master, old_replica = setup.master, setup.replica
        with setup.master.client() as client:
            client.set("before", "failover")
            assert client.wait(1, 2000) == 1
        new_address = setup.failover()
        assert new_address == (HOST, old_replica.port)
        assert setup.master is old_replica and setup.replica is old_master
        with _sentinel(setup) as sentinel:
            assert sentinel.discover_master("mymaster") == new_address
            with sentinel.master_for("mymaster", socket_timeout=2) as master:
                assert master.get("before") == b"failover"
                master.set("after", "failover")
                # Replication is asynchronous: fail back only once the write has reached
                # the replica, or the failback may lose it.
                assert master.wait(1, 2000) == 1
        with old_master.client() as client:
            assert client.info("replication")["role"] == "slave"
        assert setup.failover() == (HOST, old_master.port)  # converged: it can go back
        with setup.master.client() as client:
            assert client.get("after") == b"failover"
