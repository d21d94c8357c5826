"""The headless layers stay headless, and the CLI starts without heavy imports."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from probes import modules_after

FRONT_END = ("textual", "typer", "rich", "click")
HEAVY = (
    "torch",
    "trl",
    "transformers",
    "vllm",
    "llama_cpp",
    "numpy",
    "pyarrow",
    "duckdb",
    "textual",
)


def _loaded_after(code: str) -> set[str]:
    return {m.split(".")[0] for m in modules_after(code)}


def test_store_and_backends_load_without_front_end_libraries() -> None:
    loaded = _loaded_after(
        "import mrtui.store, mrtui.store.log, mrtui.store.db, mrtui.store.elo\n"
        "import mrtui.backends, mrtui.backends.base, mrtui.backends.registry\n"
        "import mrtui.backends.models, mrtui.backends.llamacpp, mrtui.backends.gguf_io\n"
        "import mrtui.backends.training, mrtui.backends.trl_dpo, mrtui.backends.hf_models\n"
        "import mrtui.backends.export\n"
        "from mrtui.store import EventLog, connect"
    )
    assert not loaded & set(FRONT_END), loaded & set(FRONT_END)
    assert not loaded & {"torch", "trl", "transformers", "peft", "vllm", "llama_cpp"}


def test_cli_help_imports_no_heavy_library() -> None:
    loaded = _loaded_after(
        "import sys\nsys.argv = ['mrtui', '--help']\n"
        "from mrtui.cli.app import run_app\n"
        "try:\n    run_app()\nexcept SystemExit:\n    pass"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_no_test_folder_shadows_an_installed_package() -> None:
    """tests/ is on sys.path (the tests import ``fakes``), so a test folder named like a
    library hides it: ``tests/datasets`` once made ``import datasets`` miss Hugging Face's."""
    import importlib.metadata

    tests = Path(__file__).parent
    folders = {d.name for d in tests.iterdir() if (d / "__init__.py").is_file()}
    assert not folders & set(importlib.metadata.packages_distributions())


# --- The layer contracts, read from the source (what import-linter would check) -------------
#
# A module's name is the one it has when installed: pyproject.toml maps mrtui.store to
# ./store, mrtui.backends to ./backends and mrtui.assets to ./assets. Relative imports are
# resolved, so `from ..cli import x` in a store module counts as an import of mrtui.cli.

ROOT = Path(__file__).parents[1]
SOURCES = {
    "mrtui": ROOT / "mrtui",
    "mrtui.store": ROOT / "store",
    "mrtui.backends": ROOT / "backends",
}
FRONT_END_MODULES = ("mrtui.cli", "mrtui.tui", "mrtui.loop", "mrtui.evaluation")
# The layers whose import graph must have no cycle: each names the modules under it.
LAYERS = (
    "mrtui.store", "mrtui.backends", "mrtui.datasets", "mrtui.loop", "mrtui.evaluation",
    "mrtui.cli", "mrtui.tui",
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module
    target: str  # the module imported (for `from m import name`: m.name when that is a module)
    names: tuple[str, ...]  # the names taken by `from m import ...`, else ()
    line: int
    module_level: bool  # run on import: not inside a function or an `if TYPE_CHECKING:` block


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "mrtui" and parts[0] in ("store", "backends", "assets"):
                continue  # not there in this tree, but never read a stray copy
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node``, and whether it runs when the module is imported."""
    for child in ast.iter_child_nodes(node):
        yield child, module_level
        inner = module_level and not isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for n in child.body:
                yield n, False
                yield from _walk(n, False)
            for n in child.orelse:
                yield n, inner
                yield from _walk(n, inner)
            continue
        yield from _walk(child, inner)


def _imports(module: str) -> list[Import]:
    path = MODULES[module]
    return _imports_of(module, ast.parse(path.read_text()), path.name == "__init__.py")


def _imports_of(module: str, tree: ast.Module, is_package: bool) -> list[Import]:
    """The imports of ``tree``, the source of ``module`` (a package's ``__init__``)."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node, top in _walk(tree, True):
        if isinstance(node, ast.Import):
            out += [Import(module, a.name, (), node.lineno, top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = tuple(a.name for a in node.names)
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            for target in subs or [base]:
                out.append(Import(module, target, names, node.lineno, top))
    return out


IMPORTS = [i for m in sorted(MODULES) for i in _imports(m)]


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """Imports (anywhere in the module: lazy ones and type-only ones count too) from a module
    under ``importers`` of one under ``forbidden``."""
    return [
        f"{MODULES[i.importer].relative_to(ROOT)}:{i.line}: imports {i.target}"
        for i in IMPORTS
        if _under(i.importer, importers) and _under(i.target, forbidden)
    ]


def test_the_import_graph_sees_every_layer() -> None:
    """The checks below would pass vacuously if the graph missed a folder or an import."""
    for layer in LAYERS:
        assert any(_under(m, (layer,)) for m in MODULES), layer
    assert "mrtui.store.log" in MODULES and "mrtui.backends.base" in MODULES
    edges = {(i.importer, i.target) for i in IMPORTS}
    assert ("mrtui.store.log", "mrtui.store.events") in edges  # relative, resolved
    assert ("mrtui.cli.app", "typer") in edges
    lazy = [i for i in IMPORTS if i.importer == "mrtui.evaluation.run" and not i.module_level]
    assert any(i.target == "mrtui.loop.runner" for i in lazy)  # under TYPE_CHECKING


def test_store_and_backends_import_no_front_end() -> None:
    bad = _violations(("mrtui.store", "mrtui.backends"), (*FRONT_END_MODULES, *FRONT_END))
    assert not bad, "\n".join(bad)


def test_the_loop_imports_no_user_interface() -> None:
    bad = _violations(("mrtui.loop",), ("mrtui.tui", "mrtui.cli", *FRONT_END))
    assert not bad, "\n".join(bad)


def test_evaluation_imports_no_user_interface() -> None:
    bad = _violations(("mrtui.evaluation",), ("mrtui.tui", "mrtui.cli", *FRONT_END))
    assert not bad, "\n".join(bad)


def test_the_contract_checks_can_fail() -> None:
    """The same check on a pair of layers that does import: the CLI imports the loop."""
    assert _violations(("mrtui.cli",), ("mrtui.loop",))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_names(trees: Iterable[ast.Module]) -> set[str]:
    """Private functions, classes, methods and attributes defined in ``trees``."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return {n for n in names if _private(n)}


def _loop_private_names() -> set[str]:
    """Private functions, classes, methods and attributes defined in mrtui.loop."""
    loop = [p for m, p in MODULES.items() if _under(m, ("mrtui.loop",))]
    return _private_names(ast.parse(p.read_text()) for p in loop)


def private_uses(
    where: str, tree: ast.Module, imports: Sequence[Import], private: set[str]
) -> list[str]:
    """Where the module ``tree`` (whose imports are ``imports``) reaches one of the loop's
    ``private`` names: by importing it, by an attribute of something other than its own
    class (``stages._keyer``, ``super()._run``), or by overriding it in a subclass of a loop
    class."""
    found = []
    into_loop = [i for i in imports if _under(i.target, ("mrtui.loop",))]
    loop_names = {n for i in into_loop for n in i.names}
    for i in into_loop:
        found += [f"{where}:{i.line}: imports {n}" for n in i.names if _private(n)]
    loop_classes = [
        c
        for c in ast.walk(tree)
        if isinstance(c, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id in loop_names for b in c.bases)
    ]
    in_loop_class = {id(n) for c in loop_classes for n in ast.walk(c)}
    for c in loop_classes:
        for item in c.body:
            if isinstance(item, ast.FunctionDef) and item.name in private:
                found.append(f"{where}:{item.lineno}: overrides {c.name}.{item.name}")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in private):
            continue
        on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
        if on_self and id(node) not in in_loop_class:
            continue  # a private attribute of one of evaluation's own classes
        found.append(f"{where}:{node.lineno}: uses .{node.attr}")
    return sorted(set(found), key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def loop_private_uses() -> list[str]:
    """Where mrtui.evaluation reaches a private name of mrtui.loop (see :func:`private_uses`)."""
    private = _loop_private_names()
    found = []
    for module, path in MODULES.items():
        if _under(module, ("mrtui.evaluation",)):
            imports = [i for i in IMPORTS if i.importer == module]
            where = str(path.relative_to(ROOT))
            found += private_uses(where, ast.parse(path.read_text()), imports, private)
    return found


def test_evaluation_uses_only_public_names_of_the_loop() -> None:
    uses = loop_private_uses()
    assert not uses, f"{len(uses)} uses of the loop's private names:\n" + "\n".join(uses)


def test_the_private_name_check_flags_private_uses() -> None:
    """The check above on a made-up loop module and a made-up evaluation module that uses it
    every way the check knows, and in the ways it allows, so that it cannot pass by finding
    nothing."""
    loop = ast.parse(
        "class Stages:\n"
        "    def __init__(self):\n"
        "        self._seen = {}\n"
        "    def _run(self): ...\n"
        "    def execute(self): ...\n"
        "def _helper(): ...\n"
    )
    private = _private_names([loop])
    assert private == {"_seen", "_run", "_helper"}
    evaluation = ast.parse(
        "from mrtui.loop.stages import Stages, _helper\n"  # line 1: imports _helper
        "class EvalStages(Stages):\n"
        "    def _run(self):\n"  # line 3: overrides Stages._run
        "        return self._seen\n"  # line 4: a loop attribute on self
        "    def _own(self):\n"  # its own private method: allowed
        "        return self.execute()\n"  # public: allowed
        "class Evaluation:\n"
        "    def __init__(self, stages):\n"
        "        self._run = stages.execute\n"  # its own attribute, named like the loop's
        "        stages._run()\n"  # line 10: the loop's private method on another object
    )
    imports = _imports_of("mrtui.evaluation.made_up", evaluation, False)
    assert private_uses("made_up.py", evaluation, imports, private) == [
        "made_up.py:1: imports _helper",
        "made_up.py:3: overrides EvalStages._run",
        "made_up.py:4: uses ._seen",
        "made_up.py:10: uses ._run",
    ]
    assert len(_loop_private_names()) > 10  # and the loop's own names are read


def layer_of(module: str) -> str:
    """The layer that ``module`` is in; a module at the top of mrtui (``mrtui.untrusted``,
    ``mrtui.__main__``) is a layer of its own."""
    return next((layer for layer in LAYERS if _under(module, (layer,))), module)


def layer_cycles(imports: Sequence[Import] = IMPORTS) -> list[list[str]]:
    """Cycles among the layers in the graph of imports that run when a module is imported
    (imports inside functions and ``if TYPE_CHECKING:`` blocks left out), each a list of
    layers, its first layer again at the end, with one import that makes each step."""
    edges: dict[str, dict[str, str]] = {}
    for i in imports:
        if not i.module_level or not _under(i.target, ("mrtui",)):
            continue
        a, b = layer_of(i.importer), layer_of(i.target)
        if a != b:
            edges.setdefault(a, {}).setdefault(b, f"{i.importer} -> {i.target}")
    cycles: list[list[str]] = []

    def visit(path: list[str]) -> None:
        for nxt in sorted(edges.get(path[-1], {})):
            if nxt == path[0]:
                cycles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its least layer
                visit([*path, nxt])

    for start in sorted(edges):
        visit([start])
    return [[f"{a} ({edges[a][b]})" for a, b in itertools.pairwise(c)] + [c[-1]] for c in cycles]


def test_no_import_cycle_between_layers() -> None:
    cycles = layer_cycles()
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    """The graph of today's imports plus the one that made the cycle this test replaced
    (loop.settings importing evaluation.settings at import time); inside a function it is
    no cycle."""
    back = Import("mrtui.loop.settings", "mrtui.evaluation.settings", ("EvalSettings",), 16, True)
    cycles = layer_cycles([*IMPORTS, back])
    assert [{step.split(" ")[0] for step in c} for c in cycles] == [
        {"mrtui.evaluation", "mrtui.loop"}
    ], cycles
    assert not layer_cycles([*IMPORTS, replace(back, module_level=False)])
