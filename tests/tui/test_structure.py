"""The TUI's module structure: it does not import the CLI, its modules import each other without
cycles, and screens reach the app through typed objects (no ``type: ignore[attr-defined]``).

Imports are read with ``ast`` from every ``mrtui/tui`` module, those inside functions included.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).parents[2]
TUI = ROOT / "mrtui" / "tui"
PACKAGE = "mrtui.tui"


def _module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def _imported(path: Path) -> set[str]:
    """Every name ``path`` imports, absolute: ``from .x import y`` gives ``mrtui.tui.x`` and
    ``mrtui.tui.x.y`` (``y`` may be a module); anywhere in the file, functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative to the package that holds ``path``
                base = PACKAGE.split(".")[: len(PACKAGE.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """mrtui.tui module -> the mrtui.tui modules it imports."""
    files = {_module_name(p): p for p in sorted(TUI.glob("*.py"))}
    return {name: _imported(path) & set(files) - {name} for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_the_import_reader_sees_relative_and_function_level_imports(tmp_path: Path) -> None:
    src = tmp_path / "probe.py"
    src.write_text(
        "from . import modal\nfrom .model import Health\nimport mrtui.cli.output\n"
        "def f():\n    from ..cli.output import safe\n    from .battle import BattleScreen\n"
    )
    names = _imported(src)
    assert {"mrtui.tui.modal", "mrtui.tui.model", "mrtui.cli.output"} <= names
    assert {"mrtui.cli.output.safe", "mrtui.tui.battle"} <= names
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_tui_does_not_import_the_cli() -> None:
    for path in sorted(TUI.glob("*.py")):
        cli = sorted(n for n in _imported(path) if n == "mrtui.cli" or n.startswith("mrtui.cli."))
        assert not cli, f"{path.relative_to(ROOT)} imports {cli}"


def test_importing_the_tui_loads_no_cli_module() -> None:
    probe = "import sys, json, mrtui.tui.app\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m == "mrtui.cli" or m.startswith("mrtui.cli.")]


def test_reads_records_and_state_do_not_import_textual() -> None:
    for name in ("source", "focus", "model", "state", "running", "items", "eval_model", "scores"):
        textual = sorted(n for n in _imported(TUI / f"{name}.py") if n.split(".")[0] == "textual")
        assert not textual, f"mrtui/tui/{name}.py imports {textual}"


def test_tui_modules_import_each_other_without_cycles() -> None:
    graph = _graph()
    assert "mrtui.tui.overview" in graph["mrtui.tui.app"]  # the graph is really read
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


IGNORE = re.compile(r"type:\s*ignore(?!\[)|type:\s*ignore\[[^\]]*\battr-defined\b")


def test_no_type_ignore_attr_defined_in_the_tui() -> None:
    """Screens use typed state and controller objects instead of the app's attributes; a bare
    ``type: ignore`` would hide the same errors."""
    found = []
    for path in sorted(TUI.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT and IGNORE.search(tok.string):
                found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string}")
    assert not found, "\n".join(found)
