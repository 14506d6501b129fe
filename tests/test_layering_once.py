"""Written once, named arguments, tools on public interfaces: the layering rules as tests.

Scans the hand-written sources (``kvkit/`` without the generated ``kvkit/_sync/``) with
``ast``, so a second copy of a definition or a tool reaching into a driver fails here.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import kvkit
from kvkit import _compat, _lua, _redis_compat
from kvkit._async.backends.memory_queue import AsyncMemoryQueueDriver
from kvkit._async.backends.redis import AsyncRedisBackend
from kvkit._async.backends.redis_queue import AsyncRedisQueueDriver
from kvkit._settings import ROLES
from kvkit._sync.backends.memory_queue import MemoryQueueDriver
from kvkit._sync.backends.redis import RedisBackend
from kvkit._sync.backends.redis_queue import RedisQueueDriver
from kvkit._urls import parse_url

PACKAGE = Path(kvkit.__file__).parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "_sync" not in p.relative_to(PACKAGE).parts)
TOOLS = [PACKAGE / "cli.py", PACKAGE / "testing.py"]


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"


def _string_users(text: str) -> set[str]:
    """Modules whose code holds the string literal ``text``."""
    return {
        str(path.relative_to(PACKAGE))
        for path in SOURCES
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Constant) and node.value == text
    }


def test_roles_are_defined_once():
    """The role names exist as one tuple, kvkit._settings.ROLES; nobody spells them again."""
    assert ROLES == ("cache", "sessions", "queues")
    copies = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if len(values) >= 2 and set(values) <= set(ROLES):
                    copies.append(_where(path, node))
    assert copies == ["_settings.py:" + str(_roles_line())], copies


def _roles_line() -> int:
    tree = _tree(PACKAGE / "_settings.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "ROLES":
            return node.value.lineno if node.value is not None else node.lineno
    raise AssertionError("ROLES is not defined in kvkit/_settings.py")


def test_positive_seconds_rule_is_written_once():
    """Settings, URL options, TTLs and queue durations share kvkit._ttl.check_seconds."""
    assert _string_users("must be positive and finite") == set()  # only in one f-string
    texts = {
        str(path.relative_to(PACKAGE))
        for path in SOURCES
        if "and finite, got" in path.read_text(encoding="utf-8")
    }
    assert texts == {"_ttl.py"}
    with pytest.raises(kvkit.ConfigError, match="positive and finite"):
        kvkit.Settings(cache_ttl=0)
    with pytest.raises(kvkit.ConfigError, match="positive and finite"):
        parse_url("redis://h?socket_timeout=0")
    with pytest.raises(kvkit.InvalidArgument, match="positive and finite"):
        kvkit.Client("memory://").cache.set("k", 1, ttl=-1)
    with pytest.raises(kvkit.InvalidArgument, match="positive and finite"):
        kvkit.Client("memory://").queue("q", visibility_timeout=float("nan"))


def test_redis_connection_kwargs_are_built_once():
    """Only kvkit._redis_kwargs spells redis-py's TLS and health-check argument names."""
    for name in ("ssl_check_hostname", "ssl_cert_reqs", "health_check_interval"):
        users = _string_users(name) - {"_urls.py"}  # _urls parses them as URL options
        assert users == {"_redis_kwargs.py"}, (name, users)


def test_server_check_is_built_once():
    """PING + server version is one function (probe.ping_check), used by every tool."""
    callers = []
    for path in SOURCES:
        if "backends" in path.relative_to(PACKAGE).parts:  # not the checkout's own path
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr == "server_version":
                callers.append(str(path.relative_to(PACKAGE)))
    assert callers == ["_async/probe.py"]
    for user in ("_async/client.py", "_async/health.py", "cli.py"):
        assert "ping_check" in (PACKAGE / user).read_text(encoding="utf-8"), user


def test_tools_and_services_use_no_driver_or_private_attribute():
    """cli, testing and the service mixin reach no driver factory, concrete driver or private."""
    for path in [*TOOLS, PACKAGE / "_async" / "service.py", PACKAGE / "_async" / "health.py"]:
        tree = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and path in TOOLS:
                private = node.attr.startswith("_") and not node.attr.startswith("__")
                assert not private, f"{_where(path, node)}: private attribute {node.attr}"
            if isinstance(node, ast.Attribute):
                assert node.attr != "cache_driver", _where(path, node)
            if isinstance(node, ast.ImportFrom) and path.name == "service.py":
                module = node.module or ""
                assert "memory" not in module, f"{_where(path, node)}: imports {module}"
            if isinstance(node, ast.Name):
                assert node.id != "_legacy_driver", _where(path, node)


def test_compat_holds_generic_pairs_only():
    """redis-py workarounds live in kvkit._redis_compat, not in the generic kvkit._compat."""
    redis_pairs = {
        "adrop_client",
        "drop_client",
        "aprepare_cluster",
        "prepare_cluster",
        "anode_pool",
        "node_pool",
    }
    assert not redis_pairs & set(_compat.__all__)
    assert redis_pairs == set(_redis_compat.__all__)
    for name in redis_pairs:
        doc = getattr(_redis_compat, name).__doc__ or ""
        assert "redis" in doc.lower(), name


@pytest.mark.parametrize("backend", [AsyncRedisBackend, RedisBackend])
@pytest.mark.parametrize("method", ["run", "command", "eval"])
def test_idempotent_is_keyword_only(backend, method):
    """Backend calls name ``idempotent``: a bare True/False at a call site says nothing."""
    param = inspect.signature(getattr(backend, method)).parameters["idempotent"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    "driver",
    [AsyncRedisQueueDriver, RedisQueueDriver, AsyncMemoryQueueDriver, MemoryQueueDriver],
)
def test_queue_nack_takes_keywords(driver):
    """The queue driver's nack takes everything after key and group by keyword."""
    params = list(inspect.signature(driver.nack).parameters.values())
    assert [p.name for p in params[:3]] == ["self", "key", "group"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[3:])
    assert len(params) > 3


# -- the generated tree is the I/O shell -------------------------------------------------------
ASYNC_TREE = PACKAGE / "_async"
LUA_ROOT = PACKAGE / "_resources" / "lua"
_ASYNC_MARKS = ("Async", "aclose", "asleep", "anext", "aiter")


def _is_async(node: ast.AST) -> bool:
    """Whether a definition holds anything the generator turns into its sync twin."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Await, ast.AsyncFor, ast.AsyncWith, ast.AsyncFunctionDef)):
            return True
        name = sub.id if isinstance(sub, ast.Name) else getattr(sub, "attr", None)
        if isinstance(name, str) and name.startswith(_ASYNC_MARKS):
            return True
    return False


def _no_io_lines(path: Path) -> list[tuple[str, int]]:
    """Top-level functions and classes without any async construct, and long constants."""
    found = []
    for node in _tree(path).body:  # type: ignore[attr-defined]
        lines = node.end_lineno - node.lineno + 1
        if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not _is_async(node)) or (
            isinstance(node, (ast.Assign, ast.AnnAssign)) and lines > 3 and not _is_async(node)
        ):
            found.append((_where(path, node), lines))
    return found


def test_async_tree_holds_little_code_without_io():
    """Code that does no I/O lives once outside kvkit/_async, so kvkit/_sync is the I/O shell."""
    found = [item for path in sorted(ASYNC_TREE.rglob("*.py")) for item in _no_io_lines(path)]
    assert sum(lines for _, lines in found) < 200, found


def test_no_lua_in_python_sources():
    """Lua lives in .lua package data (read, diffed and linted as Lua), never in a .py string."""
    for path in sorted(PACKAGE.rglob("*.py")):  # the generated tree too
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "redis.call(" not in node.value, _where(path, node)


def test_every_lua_file_loads_and_is_used():
    """Each packaged script loads (includes resolved) and something loads or includes it."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    scripts = sorted(LUA_ROOT.rglob("*.lua"))
    assert scripts
    included = {
        line.split()[-1]
        for path in scripts
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("--! include ")
    }
    for path in scripts:
        name = path.relative_to(LUA_ROOT).with_suffix("").as_posix()
        if path.name in included:
            continue
        assert f'LuaScript.load("{name}")' in sources, name
        source = _lua.lua_source(name)
        assert "--! include" not in source and "redis.call(" in source, name


def test_lua_include_cycle_is_reported(tmp_path, monkeypatch):
    """A script that includes itself fails loudly instead of recursing forever."""
    folder = tmp_path / "kvkit" / "_resources" / "lua" / "x"
    folder.mkdir(parents=True)
    (folder / "a.lua").write_text("--! include b.lua\n")
    (folder / "b.lua").write_text("--! include a.lua\n")
    monkeypatch.setattr(_lua.resources, "files", lambda _package: tmp_path / "kvkit")
    with pytest.raises(RuntimeError, match="include cycle"):
        _lua.lua_source("x/a")


def test_shared_classes_exist_once():
    """A class without I/O is one class for both flavours: no twin classes of one name."""
    from kvkit._async import health as async_health
    from kvkit._sync import health as sync_health

    assert async_health.HealthCheckFailed is sync_health.HealthCheckFailed
    generated = {
        node.name
        for path in (PACKAGE / "_sync").rglob("*.py")
        for node in _tree(path).body  # type: ignore[attr-defined]
        if isinstance(node, ast.ClassDef)
    }
    shared = {
        node.name
        for path in SOURCES
        if "_async" not in path.relative_to(PACKAGE).parts
        for node in _tree(path).body  # type: ignore[attr-defined]
        if isinstance(node, ast.ClassDef)
    }
    assert not generated & shared, generated & shared


def test_no_references_to_documents_outside_the_repository():
    """Comments explain in their own words: no hand-written file cites the product spec."""
    root = PACKAGE.parent
    files = [*SOURCES, *(root / "tests").rglob("*.py"), *(root / "scripts").rglob("*.py")]
    files += [*(root / "benchmarks").rglob("*.py"), root / "noxfile.py"]
    spec_ref = "SPEC" + " §"  # split so that this test does not find itself
    cited = [str(p.relative_to(root)) for p in files if spec_ref in p.read_text(encoding="utf-8")]
    assert cited == []
