"""The benchmarks reach only public names (issue 19, item 4): what they time is what users run.

An AST scan of ``bench/*.py`` and of the scripts the benches hold as strings (the code a cold
run starts in a fresh interpreter). A name that starts with one underscore may follow only
``self`` or ``cls`` where the same file defines that name (a bench's own helpers, not the
privates of a Textual class it subclasses), a bench module (``_common.x``), or an expression
that ``ALLOWED`` lists with its reason. ``getattr``/``setattr``/``hasattr`` with a private name
count too."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"

ALLOWED = {
    "os._exit": "the standard library's documented exit without cleanup",
    "args._one": "gpu_check's own hidden --_one flag (an argparse attribute)",
}


def _own_privates(tree: ast.AST) -> set[str]:
    """Private names the code defines itself: methods and functions, class attributes and
    attributes it assigns on ``self``/``cls``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if n.startswith("_")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str, modules: frozenset[str] = frozenset()) -> list[str]:
    """The private names ``source`` reaches into, as ``line: expression``; ``modules`` are the
    bench's own module names. Scripts held in string constants are scanned as well."""
    tree = ast.parse(source)
    own = _own_privates(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            text = ast.unparse(node)
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if text in ALLOWED or base in modules:
                continue
            if base in ("self", "cls") and node.attr in own:
                continue
            found.append(f"{node.lineno}: {text}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            script = textwrap.dedent(node.value)
            if "\n" not in script or "import " not in script:
                continue
            try:
                inner = private_uses(script, modules)
            except SyntaxError:
                continue  # prose, not a script
            found += [f"{node.lineno} (script) {hit}" for hit in inner]
    return found


def test_scan_catches_the_private_names_the_tui_bench_used() -> None:
    old = textwrap.dedent(
        '''
        from textual.driver import Driver

        class Quiet(Driver):
            def size(self):
                return self._size

        def frames(app, screen):
            orig = app._display
            app._display = orig
            app._driver.send_message(None)
            return screen._dirty_widgets or getattr(screen, "_layout_required")

        CHILD = """
        import asyncio
        def hook(app):
            app._display = print
        """
        '''
    )
    hits = private_uses(old)
    for name in (
        "self._size",
        "app._display",
        "app._driver",
        "screen._dirty_widgets",
        "_layout_required",
        "(script)",
    ):
        assert any(name in h for h in hits), (name, hits)


def test_scan_allows_a_bench_s_own_privates() -> None:
    own = textwrap.dedent(
        """
        import _common

        class Frames:
            def __init__(self):
                self._n = 0

            def _tick(self):
                self._n += 1
                return self._tick, _common.REPO
        """
    )
    assert private_uses(own, frozenset({"_common"})) == []


BENCH_FILES = sorted(BENCH.glob("*.py"))


@pytest.mark.parametrize("path", BENCH_FILES, ids=lambda p: p.name)
def test_bench_reaches_no_private_name(path: Path) -> None:
    modules = frozenset(p.stem for p in BENCH_FILES)
    hits = private_uses(path.read_text(encoding="utf-8"), modules)
    assert not hits, (
        f"bench/{path.name} reaches into private names (use Textual's and mrtui's public API, "
        "or give mrtui a small public property):\n" + "\n".join(hits)
    )


SAMPLING = ("n", "temperature", "top_p", "max_tokens", "seed")


def hand_typed_sampling(source: str) -> list[str]:
    """``SamplingParams(...)`` calls that give a sampling value as a literal number: a stage's
    sampling belongs to the settings (``IterationSettings``, the stage table), so a bench that
    types it measures requests users never send. A greedy warm-up (literal ``temperature=0``)
    is no stage's request and may spell its values out."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name != "SamplingParams":
            continue
        literal = {
            kw.arg: kw.value.value
            for kw in node.keywords
            if kw.arg in SAMPLING
            and isinstance(kw.value, ast.Constant)
            and isinstance(kw.value.value, (int, float))
        }
        if literal and literal.get("temperature") != 0:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_sampling_scan_tells_hand_typed_values_from_settings() -> None:
    source = textwrap.dedent(
        """
        a = SamplingParams(n=4, temperature=0.8, top_p=0.95, max_tokens=256, seed=100 + i)
        b = base.SamplingParams(temperature=s.judge_temperature, max_tokens=160)
        c = SamplingParams(temperature=s.actor_temperature, top_p=s.actor_top_p, seed=seed)
        warm = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=4, seed=0)
        """
    )
    assert [h.split(":")[0] for h in hand_typed_sampling(source)] == ["2", "3"]


@pytest.mark.parametrize("path", BENCH_FILES, ids=lambda p: p.name)
def test_bench_types_no_sampling_values(path: Path) -> None:
    hits = hand_typed_sampling(path.read_text(encoding="utf-8"))
    assert not hits, (
        f"bench/{path.name} types sampling values by hand; build its requests through mrtui's "
        "stages under the preset's settings (see bench/bench_batch.py):\n" + "\n".join(hits)
    )
