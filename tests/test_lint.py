"""The checks every change gets: ruff's lint rules, ruff's formatting and mypy.

They run as tests so that the README's test command (which CI runs) runs them too. Each uses
the tool installed next to the Python that runs the tests (the `dev` extra installs both)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def _run(*argv: str, timeout: float = 120, env: dict[str, str] | None = None) -> None:
    out = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert out.returncode == 0, f"{' '.join(argv)} failed:\n{out.stdout}{out.stderr}"


def test_ruff_check() -> None:
    _run(_tool("ruff"), "check", "--no-cache", ".")


def test_ruff_format() -> None:
    _run(_tool("ruff"), "format", "--check", "--no-cache", ".")


def test_mypy() -> None:
    """.ci/typecheck: the package as installed, strict on store/ and backends/."""
    import os

    env = {**os.environ, "MYPY": _tool("mypy")}
    _run("bash", str(ROOT / ".ci" / "typecheck"), timeout=300, env=env)
