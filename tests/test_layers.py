"""The headless layers stay headless, and the CLI starts without heavy imports."""

from __future__ import annotations

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


def test_store_and_backends_import_nothing_from_the_front_end() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1]
    for folder in ("store", "backends"):
        for path in (root / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    assert not name.startswith(("mrtui.cli", "mrtui.loop", *FRONT_END)), (
                        f"{path}: imports {name}"
                    )


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
