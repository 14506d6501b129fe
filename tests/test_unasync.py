"""The sync-code generator (scripts/unasync.py): rules, markers and the async-word check."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "unasync.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kvkit_unasync", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up by name while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


unasync = _load()


def _sync(source: str) -> str:
    return unasync.unasync_text(textwrap.dedent(source), unasync.Usage(), "<test>")


def _copy_tree(dest: Path) -> None:
    """Copy what generation reads and writes, so the real tree is never touched."""
    for src_dir, dst_dir in unasync.DIRS:
        for directory in (src_dir, dst_dir):
            shutil.copytree(ROOT / directory, dest / directory)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_fails_on_a_planted_async_word(tmp_path: Path) -> None:
    """An async-only word that survives generation fails --check even when up to date."""
    _copy_tree(tmp_path)
    cache = tmp_path / "kvkit" / "_async" / "cache.py"
    cache.write_text(cache.read_text() + "\n\n# The wrapper is a coroutine function.\n")

    written = _run(tmp_path)
    checked = _run(tmp_path, "--check")

    assert written.returncode == 1, written.stdout + written.stderr
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "async-only word 'coroutine' in kvkit/_sync/cache.py" in checked.stdout
    # The generated file is up to date: the word alone is what fails the check.
    assert "out of date" not in checked.stdout
    assert "coroutine function" in (tmp_path / "kvkit" / "_sync" / "cache.py").read_text()


def test_check_passes_on_the_repository_tree(tmp_path: Path) -> None:
    """The committed tree (copied) is up to date, with every rule used and no async word."""
    _copy_tree(tmp_path)

    checked = _run(tmp_path, "--check")

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_awaitable_with_nested_brackets() -> None:
    """Awaitable[...] is unwrapped up to its matching bracket, inner brackets kept."""
    out = _sync(
        """
        async def f(op: Callable[[], Awaitable[dict[str, int] | None]]) -> Awaitable[
            list[tuple[int, Literal["]"]]]
        ]:
            return await op()
        """
    )

    compile(out, "<sync>", "exec")  # a bracket that continued a line became a parenthesis
    assert "op: Callable[[], dict[str, int] | None]" in out
    assert '-> (\n    list[tuple[int, Literal["]"]]]\n):' in out
    assert "return op()" in out


def test_async_if_block_is_dropped_and_else_block_kept() -> None:
    """`if True:  # ASYNC` keeps its body on the async side only, `else:` on the sync side."""
    out = _sync(
        """
        async def f() -> None:
            if True:  # ASYNC
                await asleep(0)
                x = "async only"
            else:
                # the sync side blocks
                x = "sync only"
                y = (
                    1,
                )
            return x
        """
    )

    assert "async only" not in out
    assert "ASYNC" not in out
    assert '    # the sync side blocks\n    x = "sync only"\n    y = (\n        1,\n    )\n' in out
    assert "    return x\n" in out


def test_async_only_marker_drops_a_decorated_function() -> None:
    """A trailing `# ASYNC-ONLY` drops the whole statement, decorators and body included."""
    out = _sync(
        """
        @decorator  # ASYNC-ONLY
        async def only_async(
            x: int,
        ) -> None:
            await x

        import asyncio  # ASYNC-ONLY


        def kept() -> None:
            pass
        """
    )

    assert "only_async" not in out
    assert "decorator" not in out
    assert "asyncio" not in out
    assert "def kept() -> None:" in out


def test_flavour_comments_and_sync_text_directive() -> None:
    """`# async:`/`# sync:` comments and `# SYNC-TEXT` rewrite only what they mark."""
    out = _sync(
        '''
        # async: one gate per event loop
        # sync: one gate for all threads
        # SYNC-TEXT: "On the async client the wrapper is a coroutine
        #   function." -> "The wrapper is a plain function."
        def cached() -> None:
            """Memoize. On the async client the wrapper is a
            coroutine function. See AsyncCache."""
        '''
    )

    assert "event loop" not in out
    assert "# one gate for all threads\n" in out
    assert "SYNC-TEXT" not in out
    assert "Memoize. The wrapper is a plain function. See Cache." in out


def test_sync_text_that_does_not_match_fails() -> None:
    """A directive whose text is not in the next string is an error, not a silent no-op."""
    with pytest.raises(unasync.GenerationError, match="not found"):
        _sync(
            '''
            # SYNC-TEXT: "no such sentence" -> "x"
            def f() -> None:
                """Docstring."""
            '''
        )


def test_syntax_rules_do_not_touch_strings_or_comments() -> None:
    """`await`/`async with` are rewritten in code only; names are renamed everywhere."""
    out = _sync(
        """
        async def f(client: AsyncClient) -> None:
            # await it: see AsyncClient.aclose
            await client.aclose()
            message = "async with blocks are awaited"
        """
    )

    assert "def f(client: Client) -> None:" in out
    assert "# await it: see Client.close" in out
    assert "    client.close()" in out
    assert 'message = "async with blocks are awaited"' in out


def test_sync_keep_line_is_verbatim_and_exempt() -> None:
    """A `# SYNC-KEEP` line is copied as is and not reported by the async-word check."""
    out = _sync(
        """
        raise InvalidArgument(
            "handlers that return an awaitable need AsyncClient"  # SYNC-KEEP
        )
        """
    )

    assert '"handlers that return an awaitable need AsyncClient"  # SYNC-KEEP' in out
    assert unasync.async_words("x.py", out, unasync.Usage()) == []
    assert unasync.async_words("x.py", out.replace("# SYNC-KEEP", ""), unasync.Usage())


def test_every_rule_is_used_by_the_async_source() -> None:
    """Each rule still matches somewhere in kvkit/_async or tests/_async (no dead rule)."""
    usage = unasync.Usage()
    for src_dir, _ in unasync.DIRS:
        for path in sorted((ROOT / src_dir).rglob("*.py")):
            unasync.unasync_text(path.read_text(), usage, str(path))

    unused = [pattern for i, (_, pattern, _) in enumerate(unasync.RULES) if i not in usage.rules]
    assert unused == []


def test_formatter_is_pinned() -> None:
    """Generation refuses a ruff other than the pinned one (the check must reproduce it)."""
    noxfile = (ROOT / "noxfile.py").read_text()

    assert "RUFF_VERSION" in noxfile
    assert 'session.install("ruff' not in noxfile
    assert unasync.ruff_command()  # the ruff in this environment is the pinned version


def test_unused_allow_list_entry_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ALLOWED phrase that no generated file contains any more is reported as stale."""
    monkeypatch.setattr(unasync, "ALLOWED", [("kvkit/_sync/x.py", "await", "gone")])

    assert unasync.async_words("kvkit/_sync/x.py", "x = 1\n", unasync.Usage()) == []
    assert list(unasync._unused(unasync.Usage(rules=set(range(len(unasync.RULES)))))) == [
        "unused ALLOWED entry: kvkit/_sync/x.py: 'await'"
    ]
