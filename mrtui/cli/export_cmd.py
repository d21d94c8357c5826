"""``mrtui export pairs``: TRL-ready preference pairs (JSONL or Parquet) with provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import DbOption, RunOption, app

export_app = typer.Typer(
    help="Write derived data to files.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(export_app, name="export")


def _opt(v: Any) -> str:
    return "NULL" if v is None else repr(v) if not isinstance(v, bool) else str(v).lower()


@export_app.command("pairs")
def pairs(
    db: DbOption,
    out: Annotated[Path, typer.Option(help="Output file: .jsonl or .parquet.", dir_okay=False)],
    run: RunOption = None,
    iteration: Annotated[int | None, typer.Option(help="Only this iteration.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only 'actor' or 'judge' pairs.")] = None,
    rho: Annotated[float | None, typer.Option(help="Re-derive actor pairs with this ρ.")] = None,
    max_chosen_chars: Annotated[
        int | None, typer.Option(help="Re-derive with this chosen-response cap (0: none).")
    ] = None,
    judge_max_chars: Annotated[
        int | None, typer.Option(help="Re-derive with this chosen-judgement cap (0: none).")
    ] = None,
    drop_same_score: Annotated[
        bool | None,
        typer.Option(
            "--drop-same-score/--keep-same-score",
            help="Re-derive judge pairs with or without same-score pairs.",
        ),
    ] = None,
    weights_scope: Annotated[
        str | None,
        typer.Option(help="Re-derive with position-win counts per 'response' or 'iteration'."),
    ] = None,
    conversational: Annotated[
        bool,
        typer.Option(
            "--conversational/--standard",
            help="TRL conversational format (lists of chat messages) or standard (plain strings).",
        ),
    ] = False,
) -> None:
    """Preference pairs in TRL's prompt/chosen/rejected columns plus kind and provenance.

    Settings left out are those each iteration ran with; any given here re-derive the pairs
    from the log without generating anything.
    """
    from mrtui.loop.settings import ConfigError
    from mrtui.store import connect

    if kind not in (None, "actor", "judge"):
        raise ConfigError("--kind must be 'actor' or 'judge'")
    if weights_scope not in (None, "response", "iteration"):
        raise ConfigError("--weights-scope must be 'response' or 'iteration'")
    if rho is not None and not 0 <= rho < 1:
        raise ConfigError("--rho must be in [0, 1)")
    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise ConfigError(f"--out must end in .jsonl or .parquet, not {suffix or 'nothing'}")
    source = (
        f"preference_pairs_with(rho := {_opt(rho)}, max_chosen_chars := "
        f"{_opt(max_chosen_chars)}, judge_max_chars := {_opt(judge_max_chars)}, "
        f"drop_same_score := {_opt(drop_same_score)}, weights_scope := "
        f"{_opt(weights_scope)})"
    )
    sql = (
        f"SELECT * FROM {source} WHERE (? IS NULL OR run_id = ?) "
        "AND (? IS NULL OR iteration = ?) AND (? IS NULL OR kind = ?) "
        "ORDER BY run_id, iteration, kind, prompt_key"
    )
    params = [run, run, iteration, iteration, kind, kind]
    with connect(db) as con:
        cur = con.execute(sql, params)
        columns = [d[0] for d in cur.description]
        rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    if conversational:
        for r in rows:
            r["prompt"] = [{"role": "user", "content": r["prompt"]}]
            r["chosen"] = [{"role": "assistant", "content": r["chosen"]}]
            r["rejected"] = [{"role": "assistant", "content": r["rejected"]}]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if suffix == ".jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(out)
    counts = {k: sum(1 for r in rows if r["kind"] == k) for k in ("actor", "judge")}
    typer.echo(
        f"wrote {len(rows)} pairs ({counts['actor']} actor, {counts['judge']} judge) to {out}"
    )
