"""``mrtui report``: a self-contained HTML page of a log (issue 22)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mrtui.htmlreport import MAX_PROMPTS

from .app import DbOption, RunOption, app


@app.command()
def report(
    db: DbOption,
    html: Annotated[
        Path,
        typer.Option(
            "--html", help="Folder to write index.html into (made if missing).", file_okay=False
        ),
    ],
    run: RunOption = None,
    max_prompts: Annotated[
        int,
        typer.Option(
            "--max-prompts",
            min=0,
            help="Prompts per run in the battle browser, in file order (the rest are counted).",
        ),
    ] = MAX_PROMPTS,
) -> None:
    """Write one self-contained HTML page of the log: the overview plots, the health table and
    its alarms, the evaluation with its paired comparisons, a battle browser (prompt ->
    responses -> judgements -> verdicts, filtered as in the TUI), the human labels and the
    cost per role. The page needs no server and fetches nothing; model text in it is shown
    as text, never as markup or script."""
    from mrtui.htmlreport import write_report

    path, rows = write_report(db, html, run, max_prompts=max_prompts)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {rows} battle rows)")
