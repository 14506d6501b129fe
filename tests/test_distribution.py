"""The distribution name (issue: `pip install kvkit` installs an unrelated project)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_distribution_is_kvkit_sdk_and_imports_as_kvkit():
    """The project is published as kvkit-sdk; the import name stays kvkit."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "kvkit-sdk"
    assert project["optional-dependencies"]["all"][0].startswith("kvkit-sdk[")
    assert metadata.distribution("kvkit-sdk").metadata["Name"] == "kvkit-sdk"


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("kvkit.ext.fastapi", "fastapi", "fastapi"),
        ("kvkit.ext.flask", "flask", "flask"),
        ("kvkit.ext.starlette", "starlette", "starlette"),
    ],
)
def test_install_hints_name_the_distribution(module, blocked, extra):
    """An ImportError for a missing extra tells the user the real install line."""
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"try:\n    import {module}\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert f"pip install 'kvkit-sdk[{extra}]'" in out


def test_readme_install_lines_use_the_distribution_name():
    """No README install line points at the unrelated `kvkit` project."""
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.lstrip().startswith("pip install")]
    assert lines
    for line in lines:
        assert "kvkit-sdk" in line, line
