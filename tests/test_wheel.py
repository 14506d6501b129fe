"""The built wheel, installed into a fresh virtualenv, as a new user would get it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_TEST = '''
import asyncio

def test_cache_with_the_plugin(kvkit_client):
    """The kvkit_client fixture comes from the installed wheel's pytest11 entry point."""
    kvkit_client.cache.set("k", {"v": 1})
    assert kvkit_client.cache.get("k") == {"v": 1}

def test_async_fixture(kvkit_async_client):
    """The async fixture works without any async pytest plugin."""
    async def main():
        sid = await kvkit_async_client.sessions.create({"u": 1})
        return await kvkit_async_client.sessions.get(sid)
    assert asyncio.run(main()) == {"u": 1}
'''


@pytest.mark.slow
def test_wheel_installs_and_plugin_works(tmp_path):
    """python -m build → fresh venv → pip install wheel → kvkit demo and the plugin work."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = list(dist.glob("kvkit_sdk-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheels[0]), "pytest"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    demo = subprocess.run(
        [str(env_dir / "bin" / "kvkit"), "demo"], capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, demo.stderr
    assert "3. queue" in demo.stdout
    project = tmp_path / "userproject"
    project.mkdir()
    (project / "test_user.py").write_text(USER_TEST)
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    # The wheel ships py.typed and no tests.
    import zipfile

    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "kvkit/py.typed" in names
    # The Lua scripts are package data: every one ships, and the installed package loads
    # them (includes resolved) without the source tree.
    lua = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "kvkit").rglob("*.lua"))
    assert lua and set(lua) <= set(names)
    loads = subprocess.run(
        [
            str(python),
            "-c",
            "import kvkit._redis_queue_base, kvkit._redis_sessions_base, kvkit._sync.client;"
            "print(len(kvkit._redis_queue_base.PUSH.source))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loads.returncode == 0 and int(loads.stdout) > 100, loads.stderr
    # The distribution is kvkit-sdk: "kvkit" on the package index is another project.
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "\nName: kvkit-sdk\n" in zipfile.ZipFile(wheels[0]).read(metadata).decode()
    assert not any(name.startswith("tests/") for name in names)
    shutil.rmtree(env_dir, ignore_errors=True)
