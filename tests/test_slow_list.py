"""tests/slow_tests.txt names tests that exist, and its marks reach them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from slowmarks import read_list

ROOT = Path(__file__).resolve().parents[1]


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test")
    }


def test_every_listed_test_exists() -> None:
    listed = read_list()
    assert len(listed) > 50  # the list was read
    missing = []
    for node in sorted(listed):
        file, _, name = node.partition("::")
        base = re.sub(r"\[.*\]$", "", name.split("::")[-1])
        if not (ROOT / file).is_file() or base not in _test_names(ROOT / file):
            missing.append(node)
    assert not missing, f"tests/slow_tests.txt names tests that are gone: {missing[:5]}"


def test_listed_tests_are_marked_slow(request: pytest.FixtureRequest) -> None:
    listed = read_list()
    marked = {
        item.nodeid
        for item in request.session.items
        if item.nodeid in listed and item.get_closest_marker("slow") is not None
    }
    selected = {item.nodeid for item in request.session.items} & listed
    assert marked == selected
