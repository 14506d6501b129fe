"""The package's layering: no import cycles, drivers never import services.

The import graph is read from the source with :mod:`ast`, so it covers every import a
module can make: module level, inside ``if TYPE_CHECKING:`` and inside functions (an
import moved into a function still couples the two modules; it only hides the cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kvkit"

#: The service layer (and what sits above it) of each flavour.
SERVICES = frozenset(
    f"kvkit.{flavour}.{name}"
    for flavour in ("_async", "_sync")
    for name in ("cache", "sessions", "queue", "ratelimit", "service", "client", "health")
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(base: str, level: int, is_package: bool) -> str:
    """The absolute package a relative import of ``level`` dots starts from."""
    parts = base.split(".")
    # In a package's __init__, "." is the package itself; in a module, its parent.
    drop = level - 1 if is_package else level
    return ".".join(parts[: len(parts) - drop])


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The kvkit modules that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _resolve(name, node.level, is_package)
                base = f"{package}.{base}" if base else package
            # "from pkg import mod" imports the submodule pkg.mod when there is one (and
            # pkg/__init__ only as every import of pkg.mod does: not an edge of its own);
            # "from pkg import name" imports pkg/__init__ itself.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        for target in targets:
            if target in modules and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_import_graph_is_read() -> None:
    """The graph sees relative, absolute and function-level imports (guards the parser)."""
    graph = _graph()
    assert "kvkit._async.cache" in graph["kvkit._async.client"]
    assert "kvkit._async.backends.base" in graph["kvkit._async.cache"]
    assert "kvkit._sync.client" in graph["kvkit"]


def test_no_import_cycles() -> None:
    """No kvkit module imports, directly or indirectly, a module that imports it."""
    graph = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


@pytest.mark.parametrize("flavour", ["_async", "_sync"])
def test_drivers_do_not_import_services(flavour: str) -> None:
    """Modules under backends/ depend on the driver layer only, never on a service."""
    graph = _graph()
    prefix = f"kvkit.{flavour}.backends"
    offenders = {
        name: sorted(deps & SERVICES)
        for name, deps in graph.items()
        if (name == prefix or name.startswith(prefix + ".")) and deps & SERVICES
    }
    assert offenders == {}
