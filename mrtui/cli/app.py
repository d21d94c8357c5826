"""The Typer application: loop verbs at the top level, inspection commands beside them."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="mrtui",
    help="Run and inspect Meta-Rewarding self-improvement loops "
    "(actor → judge → meta-judge) over an append-only DuckDB event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)

DbOption = Annotated[
    Path,
    typer.Option(
        "--db", envvar="MRTUI_DB", help="Event log file (DuckDB). Env: MRTUI_DB.", dir_okay=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RunOption = Annotated[str | None, typer.Option("--run", help="Only this run id.")]


def _register() -> None:
    # commands register on import
    for name in (
        "run_cmd",
        "inspect_cmd",
        "export_cmd",
        "prompts_cmd",
        "tui_cmd",
        "eval_cmd",
        "judge_cmd",
        "labels_cmd",
        "report_cmd",
    ):
        importlib.import_module(f"{__package__}.{name}")


def _click_flavours() -> list[ModuleType]:
    """Exception modules of typer's vendored click (recent typer) and of click, when installed."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _usage_errors() -> tuple[type[Any], ...]:
    # Any: each is the ClickException of whichever click this typer uses (its own vendored
    # copy or click itself), so no one class names them all; each has .show() and .exit_code.
    return tuple(m.ClickException for m in _click_flavours())


def _aborts() -> tuple[type[Exception], ...]:
    return (typer.Abort, *(m.Abort for m in _click_flavours() if hasattr(m, "Abort")))


def run_app() -> None:
    from .errors import guarded

    _register()
    try:
        code = guarded(lambda: app(standalone_mode=False))
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        raise SystemExit(130) from None
    except Exception as exc:
        if isinstance(exc, _aborts()):
            sys.stderr.write("Aborted.\n")
            raise SystemExit(130) from None
        if not isinstance(exc, _usage_errors()):
            raise
        exc.show()
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)
