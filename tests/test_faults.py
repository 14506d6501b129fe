"""Fault injection: SIGKILL + restart, CLIENT KILL, slow links, cancellations.

A small TCP proxy (:class:`FaultyProxy`) sits between a client and a server when a test
needs to delay replies or lose one: it forwards requests at once and can hold replies back
or swallow the next one and cut that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import kvkit
from tests.servers import HOST, free_port

pytestmark = [pytest.mark.redis, pytest.mark.faults]


def _settings(url: str, **overrides: object) -> kvkit.Settings:
    prefix = "f" + uuid.uuid4().hex[:10]
    return kvkit.Settings(url=url, prefix=prefix, **overrides)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the proxy


class FaultyProxy:
    """A TCP proxy on 127.0.0.1 with adjustable reply delay and reply loss.

    Attributes:
        delay: seconds each chunk of server→client bytes is held back.
        lose_replies: while positive, the next reply chunk is dropped, that client
            connection is cut, and the counter goes down by one (the request itself
            reached the server: a "lost reply").
        connections: client connections accepted so far.
    """

    def __init__(self, target_port: int) -> None:
        self.target = (HOST, target_port)
        self.delay = 0.0
        self.lose_replies = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<proxy port>``."""
        return f"redis://{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if replies:
                    if self.delay:
                        time.sleep(self.delay)
                    with self._lock:
                        lose = self.lose_replies > 0
                        if lose:
                            self.lose_replies -= 1
                    if lose:
                        break  # swallow the reply and cut this client connection
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        """Stop accepting and cut every proxied connection."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def proxy(redis_server) -> Iterator[FaultyProxy]:
    """A FaultyProxy in front of the session redis_server."""
    p = FaultyProxy(redis_server.port)
    yield p
    p.close()


# --------------------------------------------------------------------------- kill + restart


def test_sigkill_and_restart_mid_workload(redis_server_factory):
    """SIGKILL + restart (AOF always): both clients recover alone; no acked write is lost."""
    server = redis_server_factory(appendonly=True)
    settings = _settings(server.url, socket_timeout=1.0, connect_timeout=0.5)
    sync_client = kvkit.Client(settings=settings)
    acked: dict[str, int] = {}
    failures: list[BaseException] = []
    first_ok_after_restart: dict[str, float] = {}
    restarted = threading.Event()
    stop = threading.Event()

    def sync_worker() -> None:
        i = 0
        while not stop.is_set():
            key = f"s{i}"
            try:
                sync_client.cache.set(key, i)
            except kvkit.BackendError as exc:
                failures.append(exc)
                time.sleep(0.01)
                continue
            acked[key] = i
            if restarted.is_set():
                first_ok_after_restart.setdefault("sync", time.monotonic())
            i += 1

    def async_worker() -> None:
        async def main() -> None:
            async with kvkit.AsyncClient(settings=settings) as client:
                i = 0
                while not stop.is_set():
                    key = f"a{i}"
                    try:
                        await client.cache.set(key, i)
                    except kvkit.BackendError as exc:
                        failures.append(exc)
                        await asyncio.sleep(0.01)
                        continue
                    acked[key] = i
                    if restarted.is_set():
                        first_ok_after_restart.setdefault("async", time.monotonic())
                    i += 1
                    await asyncio.sleep(0)

        asyncio.run(main())

    threads = [threading.Thread(target=sync_worker), threading.Thread(target=async_worker)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        server.kill()
        time.sleep(0.3)  # clients see a dead server for a while
        server.start()
        ready = time.monotonic()
        restarted.set()
        deadline = time.monotonic() + 10
        while len(first_ok_after_restart) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert set(first_ok_after_restart) == {"sync", "async"}, failures[-3:]
        recovery = max(first_ok_after_restart.values()) - ready
        assert recovery < 3.0
        assert failures, "the kill should have been noticed"
        assert all(
            isinstance(e, (kvkit.BackendUnavailable, kvkit.BackendTimeout)) for e in failures
        )
        got = sync_client.cache.get_many(list(acked))
        lost = [k for k, v in acked.items() if got.get(k) != v]
        assert lost == []
    finally:
        sync_client.cache.clear()
        sync_client.close()


# --------------------------------------------------------------------------- CLIENT KILL


def _kill_named(server, name: str) -> int:
    killed = 0
    with server.client() as raw:
        for conn in raw.client_list():
            if conn.get("name") == name:
                raw.client_kill_filter(_id=conn["id"])
                killed += 1
    return killed


def test_client_kill_then_next_operation_succeeds(redis_server):
    """After CLIENT KILL the next operations succeed, even non-idempotent ones.

    A pooled connection the server closed is detected when it is taken from the pool.
    """
    name = "kvkit-kill-" + uuid.uuid4().hex[:6]
    with kvkit.Client(settings=_settings(f"{redis_server.url}?client_name={name}")) as client:
        client.cache.set("k", "v")
        assert client.cache.incr("n") == 1
        assert _kill_named(redis_server, name) >= 1
        assert client.cache.incr("n") == 2
        assert _kill_named(redis_server, name) >= 1
        assert client.cache.get("k") == "v"
        assert client.cache.add("new", 1) is True
        client.cache.clear()


async def test_client_kill_async(redis_server):
    """The async client does the same."""
    name = "kvkit-akill-" + uuid.uuid4().hex[:6]
    url = f"{redis_server.url}?client_name={name}"
    async with kvkit.AsyncClient(settings=_settings(url)) as client:
        await asyncio.gather(*(client.cache.set(f"k{i}", i) for i in range(20)))
        assert await asyncio.to_thread(_kill_named, redis_server, name) >= 1
        assert await client.cache.incr("n") == 1
        assert await client.cache.get("k3") == 3
        assert await asyncio.to_thread(_kill_named, redis_server, name) >= 1
        assert await asyncio.gather(*(client.cache.get(f"k{i}") for i in range(20))) == list(
            range(20)
        )
        await client.cache.clear()


# --------------------------------------------------------------------------- slow server


def test_debug_sleep_times_out_within_the_socket_timeout(redis_server_factory):
    """A server stuck in DEBUG SLEEP: operations raise BackendTimeout after ~socket_timeout."""
    server = redis_server_factory()
    settings = _settings(server.url, socket_timeout=0.3, retries=0)
    with kvkit.Client(settings=settings) as client:
        client.cache.set("k", 1)
        sleeper = threading.Thread(
            target=lambda: server.client(socket_timeout=5).execute_command("DEBUG", "SLEEP", 1.2)
        )
        sleeper.start()
        time.sleep(0.1)
        try:
            for op in (lambda: client.cache.get("k"), lambda: client.cache.incr("n")):
                start = time.monotonic()
                with pytest.raises(kvkit.BackendTimeout) as info:
                    op()
                assert 0.25 < time.monotonic() - start < 0.8
                assert isinstance(info.value, TimeoutError)
        finally:
            sleeper.join()
        assert client.cache.get("k") == 1


def test_non_idempotent_writes_are_not_retried_on_timeout(proxy):
    """With retries on, a timed-out incr raises after one attempt; a timed-out get is retried."""
    settings = _settings(proxy.url, socket_timeout=0.2, retries=2)
    with kvkit.Client(settings=settings) as client:
        client.cache.set("n", 0)
        proxy.delay = 0.4
        start = time.monotonic()
        with pytest.raises(kvkit.BackendTimeout):
            client.cache.incr("n")
        single = time.monotonic() - start
        start = time.monotonic()
        with pytest.raises(kvkit.BackendTimeout):
            client.cache.get("n")
        retried = time.monotonic() - start
        assert single < 0.45 and retried > 0.55  # 1 attempt vs 3 attempts of 0.2 s
        proxy.delay = 0
        time.sleep(0.5)  # let the delayed replies drain
        assert client.cache.get("n") == 1  # the incr reached the server exactly once
        client.cache.clear()


async def test_delaying_proxy_async_timeout(proxy):
    """Delayed replies give the async client BackendTimeout within the socket timeout."""
    settings = _settings(proxy.url, socket_timeout=0.2, retries=0)
    async with kvkit.AsyncClient(settings=settings) as client:
        await client.cache.set("k", 1)
        proxy.delay = 0.5
        start = time.monotonic()
        with pytest.raises(kvkit.BackendTimeout):
            await client.cache.get("k")
        assert time.monotonic() - start < 0.45
        proxy.delay = 0
        assert await client.cache.get("k") == 1
        await client.cache.clear()


def test_lost_reply_of_an_idempotent_write_is_retried(proxy):
    """A SET whose reply is lost is retried on a fresh connection and succeeds."""
    with kvkit.Client(settings=_settings(proxy.url, socket_timeout=0.5)) as client:
        client.cache.set("warm", 1)
        proxy.lose_replies = 1
        client.cache.set("k", "v")
        assert proxy.lose_replies == 0
        assert client.cache.get("k") == "v"
        client.cache.clear()


def test_lost_reply_of_a_non_idempotent_write_is_not_retried(proxy):
    """An incr whose reply is lost raises BackendUnavailable; it was applied once."""
    with kvkit.Client(settings=_settings(proxy.url, socket_timeout=0.5)) as client:
        client.cache.set("warm", 1)
        proxy.lose_replies = 1
        with pytest.raises(kvkit.BackendUnavailable):
            client.cache.incr("n")
        assert client.cache.get("n") == 1
        client.cache.clear()


# --------------------------------------------------------------------------- cancellation


async def _cancel_then_read(client, keys: list[str]) -> None:
    """Cancel 200 in-flight reads, then check 500 reads each get their own value."""
    cache = client.cache
    tasks = [asyncio.create_task(cache.get(keys[i % len(keys)])) for i in range(200)]
    await asyncio.sleep(0)  # every task starts and suspends somewhere inside its operation
    for i, task in enumerate(tasks):
        if i % 2 == 0:
            task.cancel()
        else:  # the other half is cancelled at random points in flight
            asyncio.get_running_loop().call_later(random.uniform(0, 0.02), task.cancel)
    await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(t.cancelled() for t in tasks) >= 100
    order = random.sample(range(len(keys)), len(keys))
    values = await asyncio.gather(*(cache.get(keys[i]) for i in order))
    assert values == [f"value-{i}" for i in order]


async def test_cancelled_operations_never_leak_replies(proxy, redis_server):
    """200 operations cancelled mid-flight, then 500 reads: each gets its own key's value."""
    settings = _settings(proxy.url, max_connections=20, socket_timeout=2)
    async with kvkit.AsyncClient(settings=settings) as client:
        keys = [f"key-{i}" for i in range(500)]
        await client.cache.set_many({k: f"value-{i}" for i, k in enumerate(keys)})
        proxy.delay = 0.01  # replies in flight long enough to be cancelled
        await _cancel_then_read(client, keys)
        proxy.delay = 0
        await _cancel_then_read(client, keys)
        await client.cache.clear()


@pytest.mark.cluster
async def test_cancelled_operations_on_cluster(redis_cluster):
    """The same on Cluster (no proxy: cancellations land at random points)."""
    settings = _settings(redis_cluster.url, max_connections=20)
    async with kvkit.AsyncClient(settings=settings) as client:
        keys = [f"key-{i}" for i in range(500)]
        await client.cache.set_many({k: f"value-{i}" for i, k in enumerate(keys)})
        for _ in range(3):
            await _cancel_then_read(client, keys)
        await client.cache.clear()


async def test_unreachable_port_fails_fast():
    """Connection refused is BackendUnavailable in bounded time (no hang, no raw error)."""
    settings = _settings(f"redis://{HOST}:{free_port()}", retries=1, connect_timeout=0.3)
    async with kvkit.AsyncClient(settings=settings) as client:
        start = time.monotonic()
        with pytest.raises(kvkit.BackendUnavailable):
            await client.cache.get("k")
        assert time.monotonic() - start < 1.5


# --------------------------------------------------------------------------- queues


def test_queue_loses_nothing_across_sigkill_and_restart(redis_server_factory):
    """Pushes and pops across a SIGKILL + restart: every id a push returned is consumed."""
    server = redis_server_factory(appendonly=True)
    settings = _settings(server.url, socket_timeout=1.0, connect_timeout=0.5)
    pushed: list[str] = []
    consumed: set[str] = set()
    duplicates = 0
    failed_pushes: list[int] = []
    producing_done = threading.Event()
    stop = threading.Event()

    def producer() -> None:
        with kvkit.Client(settings=settings) as client:
            queue = client.queue("jobs", visibility_timeout=0.5)
            for n in range(400):
                try:
                    pushed.append(queue.push({"n": n}))
                except kvkit.BackendError:
                    failed_pushes.append(n)
                time.sleep(0.003)
        producing_done.set()

    def consumer() -> None:
        nonlocal duplicates

        async def main() -> None:
            nonlocal duplicates
            async with kvkit.AsyncClient(settings=settings) as client:
                queue = client.queue("jobs", visibility_timeout=0.5)
                while not stop.is_set():
                    try:
                        messages = await queue.pop_many(20, timeout=0.1)
                        for message in messages:
                            # Received is consumed: an ack lost in the crash only means
                            # the message comes again (at-least-once), counted below.
                            if message.id in consumed:
                                duplicates += 1
                            consumed.add(message.id)
                            await queue.ack(message)
                    except kvkit.BackendError:
                        await asyncio.sleep(0.01)

        asyncio.run(main())

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.4)
        assert not producing_done.is_set()
        server.kill()
        time.sleep(0.3)
        server.start()
        assert producing_done.wait(30)
        deadline = time.monotonic() + 15
        while not set(pushed) <= consumed and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    lost = set(pushed) - consumed
    assert len(pushed) + len(failed_pushes) == 400
    assert len(pushed) > 200
    assert lost == set()
    with kvkit.Client(settings=settings) as client:
        stats = client.queue("jobs").stats()
        assert (stats.ready, stats.pending, stats.dead) == (0, 0, 0)
        client.queue("jobs").purge(dead=True)


def test_push_retried_after_a_lost_reply_enqueues_once(proxy):
    """The reply of a push is lost: kvkit retries it, and exactly one message is queued."""
    with kvkit.Client(settings=_settings(proxy.url, socket_timeout=0.5)) as client:
        queue = client.queue("once")
        queue.purge()
        proxy.lose_replies = 1
        message_id = queue.push({"order": 1})
        assert proxy.lose_replies == 0  # the reply really was lost, then retried
        assert queue.stats().ready == 1
        message = queue.pop()
        assert message is not None and message.id == message_id
        assert queue.pop() is None
        queue.ack(message)
        proxy.lose_replies = 1
        ids = queue.push_many([1, 2, 3])
        assert [m.id for m in queue.pop_many(10)] == ids
        queue.purge(dead=True)


async def test_async_push_retried_after_a_lost_reply_enqueues_once(proxy):
    """The async client does the same."""
    async with kvkit.AsyncClient(settings=_settings(proxy.url, socket_timeout=0.5)) as client:
        queue = client.queue("once")
        proxy.lose_replies = 1
        message_id = await queue.push("payload")
        assert proxy.lose_replies == 0
        messages = await queue.pop_many(10)
        assert [m.id for m in messages] == [message_id]
        await queue.ack(*messages)
        await queue.purge(dead=True)
