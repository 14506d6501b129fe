"""Every ```python snippet of README.md runs, so the manual cannot rot.

Each snippet runs on its own, after a small prelude that provides what a reader's
application would (a client on a fresh memory:// store, a few example functions).
Snippets that mention ``redis://localhost:6379`` run against the suite's own
redis-server instead (never a server on 6379). Top-level ``await`` is allowed: such
snippets run in an event loop, with ``client`` an ``AsyncClient``.
"""

from __future__ import annotations

import ast
import asyncio
import re
import textwrap
import uuid
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

PRELUDE = """
import asyncio
import datetime
import kvkit

def build_report():
    return {"rows": 3}

def load_user(user_id):
    return {"id": user_id, "name": "Ada"}

def send_email(payload):
    return None

async def send_email_async(payload):
    return None

def check_password(*args):
    class User:
        id = 1
    return User()
"""


def snippets() -> list[tuple[int, str]]:
    """(line number, code) of every python block of the README."""
    text = README.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group(1)))
    return found


SNIPPETS = snippets()


def test_readme_has_snippets():
    """The README is a manual with code in it (guards the extractor itself)."""
    assert len(SNIPPETS) >= 15


# Starlette >= 1.0 prefers httpx2 for its TestClient and warns when only httpx is installed;
# either works for the FastAPI snippet (as in tests/test_ext_fastapi.py).
@pytest.mark.filterwarnings("ignore:.*httpx2")
@pytest.mark.parametrize(("line", "code"), SNIPPETS, ids=[f"line{n}" for n, _ in SNIPPETS])
def test_snippet_runs(line, code, request, monkeypatch, tmp_path):
    """The snippet at this README line runs without error."""
    monkeypatch.chdir(tmp_path)
    for var in [v for v in __import__("os").environ if v.startswith(("KVKIT_", "REDIS_"))]:
        monkeypatch.delenv(var)
    store = f"memory://readme-{uuid.uuid4().hex[:8]}"
    if "localhost:6379" in code:
        url = request.getfixturevalue("redis_url")  # the suite's own server
        host_port = url.rsplit("/", 1)[-1]
        code = code.replace("localhost:6379", host_port)
        request.applymarker(pytest.mark.redis)
    is_async = "await " in code or "async with" in code
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
    client_class = "AsyncClient" if is_async else "Client"
    exec(f"client = kvkit.{client_class}({store!r})\nredis_service = client", namespace)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if is_async else 0
    compiled = compile(textwrap.dedent(code), f"README.md:{line}", "exec", flags=flags)
    if is_async:

        async def run():
            result = eval(compiled, namespace)
            if asyncio.iscoroutine(result):
                await result
            await namespace["client"].aclose()

        asyncio.run(run())
    else:
        exec(compiled, namespace)
        client = namespace.get("client")
        if hasattr(client, "close"):
            client.close()


def _imports_and_uses(code: str) -> tuple[set[str], bool]:
    tree = ast.parse(textwrap.dedent(code))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    uses = any(
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "kvkit"
        for node in ast.walk(tree)
    )
    # A snippet importing from kvkit's submodules is a program of its own (copied whole).
    standalone = any(
        isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kvkit")
        for node in tree.body
    )
    return (imported if standalone else {"kvkit"}), uses


@pytest.mark.parametrize(("line", "code"), SNIPPETS, ids=[f"line{n}" for n, _ in SNIPPETS])
def test_snippet_with_imports_imports_kvkit(line, code):
    """A snippet that imports from a kvkit submodule and uses `kvkit.` imports kvkit too."""
    imported, uses = _imports_and_uses(code)
    assert not uses or "kvkit" in imported, f"README.md:{line} uses kvkit. without importing it"


def test_import_kvkit_loads_no_optional_dependency():
    """`import kvkit` imports neither redis, orjson nor fakeredis; orjson loads on first use."""
    import subprocess
    import sys

    code = (
        "import sys, kvkit\n"
        "print(sorted(m for m in ('redis', 'orjson', 'fakeredis') if m in sys.modules))\n"
        "client = kvkit.Client('memory://'); client.cache.set('k', {'v': 1})\n"
        "assert client.cache.get('k') == {'v': 1}\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
