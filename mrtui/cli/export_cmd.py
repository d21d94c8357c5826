"""``mrtui export pairs``: TRL-ready preference pairs (JSONL or Parquet) with provenance;
``mrtui export eval``: evaluation samples or results; ``mrtui export gguf``: an HF model as a
GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import DbOption, RunOption, app

export_app = typer.Typer(
    help="Write derived data to files.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(export_app, name="export")


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
    bt_prior_games: Annotated[
        float | None,
        typer.Option(
            help="Re-derive judge pairs with this Bradley-Terry prior strength (virtual games "
            "per judgement; near 0: the plain maximum-likelihood fit)."
        ),
    ] = None,
    conversational: Annotated[
        bool,
        typer.Option(
            "--conversational/--standard",
            help="TRL conversational format (lists of chat messages) or standard (plain strings).",
        ),
    ] = False,
    all_pairs: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every derived pair, not only the training set (the kinds each iteration "
            "trains on, judge pairs capped at max_judge_share).",
        ),
    ] = False,
) -> None:
    """Preference pairs in TRL's prompt/chosen/rejected columns plus kind and provenance.

    By default, exactly the pairs each iteration trains on (or would train on); `trained` says
    whether a pair is in the set a finished training used. Settings left out are those each
    iteration ran with; any given here re-derive the pairs from the log without generating
    anything.
    """
    from mrtui.loop.export import export_pairs

    counts = export_pairs(
        db,
        out,
        run=run,
        iteration=iteration,
        kind=kind,
        rederive={
            "rho": rho,
            "max_chosen_chars": max_chosen_chars,
            "judge_max_chars": judge_max_chars,
            "drop_same_score": drop_same_score,
            "weights_scope": weights_scope,
            "bt_prior_games": bt_prior_games,
        },
        conversational=conversational,
        all_pairs=all_pairs,
    )
    typer.echo(
        f"wrote {sum(counts.values())} pairs ({counts['actor']} actor, {counts['judge']} judge) "
        f"to {out}"
    )


EVAL_TABLES = {"samples": "eval_samples", "results": "eval_results"}
EVAL_ORDER = {
    "samples": "run_id, iteration, suite, seq, judge_model_id",
    "results": "run_id, iteration, suite, metric, judge_model_id",
}


@export_app.command("eval")
def eval_(
    db: DbOption,
    out: Annotated[Path, typer.Option(help="Output file: .jsonl or .parquet.", dir_okay=False)],
    run: RunOption = None,
    iteration: Annotated[
        list[int] | None, typer.Option(help="Only these iterations (repeatable).")
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(help="Only these suites (comma-separated or repeated)."),
    ] = None,
    what: Annotated[
        str,
        typer.Option(
            help="'samples': one row per answer and judge (eval_samples: prompt, response, "
            "checks, verdicts, outcome); 'results': one per metric (eval_results)."
        ),
    ] = "samples",
) -> None:
    """Evaluation data of `mrtui eval`: every answer with its rule checks or judge verdicts
    and its outcome, or the metrics with their 95% intervals."""
    from mrtui.evaluation.settings import SUITE_SETS, parse_suites
    from mrtui.loop.export import out_format, write_rows
    from mrtui.loop.settings import ConfigError
    from mrtui.store import connect

    from .errors import RUNTIME, fail

    if what not in EVAL_TABLES:
        raise ConfigError(f"--what must be 'samples' or 'results', not {what!r}")
    out_format(out)
    suites = list(parse_suites(",".join(suite or [])))
    unknown = [s for s in suites if s not in SUITE_SETS]
    if unknown:
        raise ConfigError(f"unknown suite(s) {unknown}; choose from {', '.join(SUITE_SETS)}")
    with connect(db) as con:
        cur = con.execute(
            f"SELECT * FROM {EVAL_TABLES[what]} WHERE ($run IS NULL OR run_id = $run) "
            "AND (len($its) = 0 OR list_contains($its, iteration)) "
            "AND (len($suites) = 0 OR list_contains($suites, suite)) "
            f"ORDER BY {EVAL_ORDER[what]}",
            {"run": run, "its": list(iteration or []), "suites": suites},
        )
        names = [d[0] for d in cur.description]
        json_columns = tuple(d[0] for d in cur.description if str(d[1]) == "JSON")
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        # the view's column types, so a column that is empty in these rows keeps its type
        schema = con.sql(f"SELECT * FROM {EVAL_TABLES[what]} LIMIT 0").to_arrow_table().schema
    if not rows:
        asked = [f"run {run}"] if run else []
        asked += [f"iteration(s) {list(iteration)}"] if iteration else []
        asked += [f"suite(s) {suites}"] if suites else []
        fail(
            f"no evaluation {what} in {db}"
            + (f" for {', '.join(asked)}" if asked else "")
            + f"; create some with `mrtui eval --db {db} --suite ifeval --limit 20`",
            RUNTIME,
        )
    write_rows(rows, out, json_columns, schema)
    runs = len({r["run_id"] for r in rows})
    typer.echo(f"wrote {len(rows)} evaluation {what} rows ({runs} run(s)) to {out}")


@export_app.command("gguf")
def gguf(
    model: Annotated[
        str,
        typer.Option(
            help="An HF model folder (a trained checkpoint's hf-* folder) or hf:OWNER/REPO."
        ),
    ],
    out: Annotated[Path, typer.Option(help="The .gguf file to write.", dir_okay=False)],
    type_: Annotated[
        str, typer.Option("--type", help="f32, f16, q8_0 or q4_k_m (quantised by llama.cpp).")
    ] = "f16",
    base: Annotated[
        Path | None,
        typer.Option(
            help="A GGUF of the same model to take the tokenizer from (default: the folder's)."
        ),
    ] = None,
) -> None:
    """Write an HF model as a GGUF file llama.cpp loads (qwen2, qwen3, llama, gemma3)."""
    from mrtui.backends.export import export_gguf
    from mrtui.backends.model_ref import resolve_reference
    from mrtui.loop.settings import ConfigError

    ref = resolve_reference(model)
    if ref.format != "hf":
        raise ConfigError(f"{model} is already a GGUF file ({ref.path}); nothing to convert")
    result = export_gguf(ref.path, base, out, outtype=type_)
    typer.echo(
        f"wrote {result.path} ({result.outtype}, {result.n_tensors} tensors, "
        f"sha256 {result.sha256[:12]}…) in {result.wall_s:.1f} s"
    )
