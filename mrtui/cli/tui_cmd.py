"""``mrtui tui``: browse a log, watch a run another process writes, or drive one from here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .app import DbOption, app


@app.command()
def tui(
    db: DbOption,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id to show (default: the latest).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML run config, for starting a run with `s`.")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="JSONL prompts, for starting a run with `s`.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model for a run started with `s` (see `mrtui models`).")
    ] = None,
    export_dir: Annotated[
        Path, typer.Option(help="Where `e` writes the current item as JSON.")
    ] = Path("mrtui-export"),
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            metavar="RUN_A RUN_B",
            help="Open with two runs of the log side by side (health, pairs, evaluation, "
            "and the prompts whose chosen response differs).",
        ),
    ] = None,
) -> None:
    """Browse the log in a terminal UI: iterations and health plots, prompts, responses,
    judgements and judge battles. `s` starts or resumes the run, `q` quits."""
    from mrtui.store import LogNotFound, connect

    settings: Any = None
    if config or prompts or model:
        from mrtui.loop.settings import load_config

        cli = {"prompts": str(prompts) if prompts else None, "model": model, "run_id": run_id}
        settings = load_config(config, cli)
        if settings.prompts:
            from mrtui.loop.data import load_prompts

            load_prompts(settings.prompts)
        run_id = run_id or settings.run_id
    if db.exists():
        with connect(db) as con:  # fails early, in one line, on a file that is not a log
            runs = [r[0] for r in con.execute("SELECT DISTINCT run_id FROM events").fetchall()]
        if run_id is not None and run_id not in runs and settings is None:
            from mrtui.loop.settings import ConfigError

            raise ConfigError(
                f"no run {run_id!r} in {db}; it holds "
                + (", ".join(sorted(runs)) or "no runs")
                + " (leave out --run for the latest)"
            )
        _check_compare(db, compare, runs)
    elif settings is None:
        raise LogNotFound(
            f"no event log at {db}; create one with `mrtui run --db {db} ...`, or pass "
            "--prompts to start a run from the TUI"
        )
    else:
        _check_compare(db, compare, [])
    from mrtui.tui.app import MrtuiApp

    tui_app = MrtuiApp(db, run_id=run_id, settings=settings, export_dir=export_dir, compare=compare)
    tui_app.run()
    if tui_app.running:  # quit twice during a run: do not wait for the loop's thread
        import os
        import sys

        sys.stderr.write(
            "quit during a run: units finished and flushed are in the log; run `mrtui tui` "
            "and press s (or `mrtui run`) to resume\n"
        )
        sys.stderr.flush()
        os._exit(130)


def _check_compare(db: Path, compare: tuple[str, str] | None, runs: list[str]) -> None:
    """``--compare A B`` names two different runs that the log holds (a one-line error)."""
    if compare is None:
        return
    from mrtui.loop.settings import ConfigError

    missing = [r for r in compare if r not in runs]
    if missing:
        raise ConfigError(
            f"--compare: no run {missing[0]!r} in {db}; it holds "
            + (", ".join(sorted(runs)) or "no runs")
        )
    if compare[0] == compare[1]:
        raise ConfigError(f"--compare needs two different runs, got {compare[0]!r} twice")
