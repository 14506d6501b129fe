"""Run an example web app (uvicorn / Werkzeug) as a child process on a free port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tests.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class AppProcess:
    """A web app child process: ``base`` URL, ``output()`` log, ``stop()``."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self._log = log

    def output(self) -> str:
        """Everything the process printed so far."""
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the process (SIGKILL after 5 s) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _listening(app: AppProcess) -> bool:
    if app.proc.poll() is not None:
        raise RuntimeError(f"app exited with {app.proc.returncode}:\n{app.output()}")
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", app.port)) == 0


@contextlib.contextmanager
def run_app(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, port: int | None = None
) -> Iterator[AppProcess]:
    """Start ``python *args`` (``{port}`` in an argument is replaced) and wait for its port.

    Args:
        args: Arguments after the interpreter, e.g. ``["-m", "uvicorn", "m:app", ...]``.
        env: Extra environment variables.
        port: The port (default: a free one).
    """
    port = free_port() if port is None else port
    argv = [PYTHON, *(a.replace("{port}", str(port)) for a in args)]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="kvkit-app-") as tmp:
        log = Path(tmp) / "app.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
            )
        app = AppProcess(proc, port, log)
        try:
            wait_until(
                lambda: _listening(app),
                timeout=20,
                what=f"{' '.join(args)} to listen on {port}",
                details=app.output,
                fatal=(RuntimeError,),
            )
            yield app
        finally:
            app.stop()
