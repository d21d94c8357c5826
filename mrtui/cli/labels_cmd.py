"""``mrtui labels import`` / ``export``: human labels as JSONL, for annotation done elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import DbOption, RunOption, app

labels_app = typer.Typer(
    help="Human labels of responses, judgements and meta-verdicts, as JSONL.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(labels_app, name="labels")


@labels_app.command("import")
def import_(
    db: DbOption,
    file: Annotated[
        Path,
        typer.Argument(
            help='JSONL, one {"key", "label", "author", "note"} object a line.', dir_okay=False
        ),
    ],
) -> None:
    """Append the labels of FILE to the log. key: a response, judgement or verdict key as the
    views name them; label: 0-5, good or bad (a response), agree or disagree (a judgement), A or
    B (a verdict: the judgement shown first or second is the better one); author: who labelled
    (default: $MRTUI_AUTHOR, else the login name); note: optional. Every line is checked first:
    one bad line records nothing. A later label of a unit supersedes an earlier one."""
    from mrtui.store.labels import read_labels_jsonl, record_labels

    n = record_labels(db, read_labels_jsonl(file))
    typer.echo(f"recorded {n} label{'' if n == 1 else 's'} in {db}")


@labels_app.command("export")
def export(
    db: DbOption,
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.", dir_okay=False)],
    run: RunOption = None,
) -> None:
    """Write the current label of every labelled unit as JSONL, in the order they were made
    (the records `mrtui labels import` reads)."""
    import json

    from mrtui.store import connect
    from mrtui.store.labels import label_rows

    with connect(db) as con:
        rows = label_rows(con, run)
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    typer.echo(f"wrote {len(rows)} label{'' if len(rows) == 1 else 's'} to {out}")
