"""``mrtui export pairs``: TRL-ready preference pairs (JSONL or Parquet) with provenance;
``mrtui export eval``: evaluation samples or results; ``mrtui export gguf``: an HF model as a
GGUF file."""

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


def _trained_keys(con: Any, run_id: str, iteration: int) -> set[str] | None:
    """The pair keys the finished training of an iteration used (None: not trained yet)."""
    row = con.execute(
        "SELECT s.payload->'$.pair_keys' FROM events s JOIN events f "
        "ON f.event_type = 'TrainingFinished' "
        "AND f.payload->>'$.attempt' = s.payload->>'$.attempt' "
        "WHERE s.event_type = 'TrainingStarted' AND s.run_id = ? AND s.iteration = ? "
        "ORDER BY s.seq DESC LIMIT 1",
        [run_id, iteration],
    ).fetchall()
    return set(json.loads(row[0][0])) if row else None


def out_format(out: Path) -> str:
    """``.jsonl`` or ``.parquet``, from the file name; anything else is a usage error."""
    from mrtui.loop.settings import ConfigError

    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise ConfigError(f"--out must end in .jsonl or .parquet, not {suffix or 'nothing'}")
    return suffix


def write_rows(
    rows: list[dict[str, Any]],
    out: Path,
    json_columns: tuple[str, ...] = (),
    schema: Any = None,
) -> None:
    """Write ``rows`` to ``out`` (through a temporary file): JSONL, one object per row (lists
    and structs as JSON), or Parquet with pyarrow (column types from ``schema``, a pyarrow
    schema, when given; else from the values). ``json_columns`` hold JSON text: nested
    objects in JSONL, the text itself in Parquet."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out_format(out) == ".jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for r in rows:
                r = {k: _json(v) if k in json_columns else v for k, v in r.items()}
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    tmp.replace(out)


def _json(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str) else text


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
    from mrtui.loop.settings import ITERATION_KEYS, ConfigError, IterationSettings
    from mrtui.loop.training import training_pairs
    from mrtui.store import connect

    if kind not in (None, "actor", "judge"):
        raise ConfigError("--kind must be 'actor' or 'judge'")
    given = {
        "rho": rho,
        "max_chosen_chars": max_chosen_chars,
        "judge_max_chars": judge_max_chars,
        "drop_same_score": drop_same_score,
        "weights_scope": weights_scope,
        "bt_prior_games": bt_prior_games,
    }
    IterationSettings().with_flat(**{k: v for k, v in given.items() if v is not None})
    out_format(out)
    source = "preference_pairs_with(" + ", ".join(f"{k} := {_opt(v)}" for k, v in given.items())
    source += ")"
    rows: list[dict[str, Any]] = []
    with connect(db) as con:
        # Derived once for every iteration asked for; each iteration's set is taken from it.
        con.execute(
            f"CREATE TEMP TABLE mrtui_export_pairs AS SELECT * FROM {source} "
            "WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR iteration = ?)",
            [run, run, iteration, iteration],
        )
        iterations = con.execute(
            "SELECT run_id, iteration, settings FROM iteration_settings "
            "WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR iteration = ?) "
            "ORDER BY run_id, iteration",
            [run, run, iteration, iteration],
        ).fetchall()
        for run_id, it, settings in iterations:
            logged = {k: v for k, v in json.loads(settings).items() if k in ITERATION_KEYS}
            s = IterationSettings.from_flat(logged, f"iteration {it} of {run_id}")
            pairs = training_pairs(con, run_id, it, s, "mrtui_export_pairs", select=not all_pairs)
            trained = _trained_keys(con, run_id, it)
            for p in pairs:
                p["trained"] = None if trained is None else p["pair_key"] in trained
            rows += [p for p in pairs if kind is None or p["kind"] == kind]
    if conversational:
        for r in rows:
            r["prompt"] = [{"role": "user", "content": r["prompt"]}]
            r["chosen"] = [{"role": "assistant", "content": r["chosen"]}]
            r["rejected"] = [{"role": "assistant", "content": r["rejected"]}]
    write_rows(rows, out)
    counts = {k: sum(1 for r in rows if r["kind"] == k) for k in ("actor", "judge")}
    typer.echo(
        f"wrote {len(rows)} pairs ({counts['actor']} actor, {counts['judge']} judge) to {out}"
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
