"""``import`` row: ``import kvkit`` vs ``import redis``, in fresh interpreters.

Each measurement starts a new ``python`` (the one running the benchmarks) that times
only the import statement with ``perf_counter``, so interpreter start-up, which both
sides pay alike, does not dilute the ratio. ``import redis`` is what a redis-py user's
program pays (it pulls in ``redis.asyncio`` too); kvkit depends on redis-py, so
``import kvkit`` only matches it by importing redis-py lazily.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .harness import Case, Env, register

ROOT = Path(__file__).resolve().parent.parent

_PROGRAM = (
    "import time\n"
    "start = time.perf_counter()\n"
    "import {module}\n"
    "print(time.perf_counter() - start)\n"
)


def import_seconds(module: str) -> float:
    """Seconds ``import module`` takes in a fresh interpreter (bytecode already cached)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    ).stdout
    return float(out.strip().splitlines()[-1])


def _importer(module: str) -> Callable[[], float]:
    return lambda: import_seconds(module)


@register(
    "import",
    "import kvkit",
    mode="timed",
    backend="-",
    baseline="import redis",
    target=1.0,
    ops=4,
    needs_redis=False,
    note="fresh interpreter per import; time of the import statement only",
)
def _imports(env: Env) -> Case:
    return Case(_importer("kvkit"), _importer("redis"))
