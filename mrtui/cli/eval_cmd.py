"""``mrtui eval``: evaluate each iteration's model on benchmark suites, into the same log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .app import DbOption, app
from .output import print_table, safe


@app.command("eval")
def eval_(
    db: DbOption,
    suite: Annotated[
        list[str],
        typer.Option(
            help="Suites, comma-separated or repeated: ifeval, alpaca_eval, mt_bench, judge-ifeval."
        ),
    ],
    run_id: Annotated[str, typer.Option("--run", help="Run id inside the log.")] = "main",
    iteration: Annotated[
        list[int] | None,
        typer.Option(help="Iterations whose model to evaluate (repeatable; default: all)."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="Items per suite: a deterministic stratified subset (default: all)."),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            help="The fixed judge of alpaca_eval and mt_bench: HF model folder, hf:OWNER/REPO, "
            "packaged name, .gguf path or hf:OWNER/REPO/FILE.gguf."
        ),
    ] = None,
    judge_backend: Annotated[
        str | None, typer.Option(help="Backend serving the judge (default: the run's).")
    ] = None,
    allow_self_judge: Annotated[
        bool,
        typer.Option(help="Let the judge model be the model under evaluation."),
    ] = False,
    max_tokens: Annotated[int | None, typer.Option(help="Longest answer, in tokens.")] = None,
    judge_max_tokens: Annotated[
        int | None, typer.Option(help="Longest verdict, in tokens.")
    ] = None,
    pair_samples: Annotated[
        int | None, typer.Option(help="judge-ifeval: answers sampled per prompt.")
    ] = None,
    structured: Annotated[
        bool | None,
        typer.Option(
            "--structured/--free",
            help="Judges write a rationale, then their final line (constrained decoding).",
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (llama.cpp).")] = None,
) -> None:
    """Evaluate the model of each iteration (M_1 = the base model, then each trained
    checkpoint): IFEval's rule checks, AlpacaEval-style win rate and length-controlled win
    rate against GPT-4-1106's answers, MT-Bench 1-10 grades, and the model's own judge on
    verifiable IFEval pairs. Every answer and verdict is an event in the log; results are the
    `eval_results` view. Rerun the same command to resume."""
    from dataclasses import replace

    from mrtui.evaluation.settings import EvalSettings, parse_suites
    from mrtui.loop.session import RunSession

    from .progress import RichProgress

    settings = EvalSettings().with_changes(  # replace() validates the combination
        suites=parse_suites(",".join(suite)),
        limit=limit,
        judge_model=judge_model,
        judge_backend=judge_backend,
        allow_self_judge=allow_self_judge or None,
        max_tokens=max_tokens,
        judge_max_tokens=judge_max_tokens,
        pair_samples=pair_samples,
        structured=structured,
    )
    session_args = {}
    if threads is not None:
        from mrtui.loop.runner import default_backend

        def backend(s, model):  # type: ignore[no-untyped-def]
            return default_backend(
                replace(s, backend_options={**s.backend_options, "n_threads": threads}), model
            )

        session_args["backend_factory"] = backend
    with RichProgress() as progress:
        try:
            chosen, reports = RunSession(
                db, run_id=run_id, progress=progress, **session_args
            ).evaluate(iteration, settings)
        except KeyboardInterrupt:
            progress.note("interrupted: finished units are in the log; rerun to continue")
            raise
    failed = sum(r.failed for r in reports)
    for r in reports:
        for err in r.failures:
            typer.echo(f"  {r.stage} failure: {safe(err)}", err=True)
    print_results(db, run_id, chosen)
    if failed:
        typer.echo(f"{failed} units failed; rerun the same command to retry them", err=True)
        raise typer.Exit(1)


def print_results(db: Path, run_id: str, iterations: list[int] | None = None) -> None:
    """The run's evaluation results per iteration, with 95% intervals (nothing if none)."""
    from mrtui.evaluation.report import results
    from mrtui.store import connect

    with connect(db) as con:
        rows = results(con, run_id)
    if iterations:
        rows = [r for r in rows if r["iteration"] in iterations]
    print_eval_table(run_id, rows)


def print_eval_table(run_id: str, rows: list[dict[str, Any]]) -> None:
    """``eval_results`` rows of one run as a table: a line per suite, metric and judge, a
    column per iteration (nothing if there are none)."""
    from mrtui.evaluation.report import table

    if not rows:
        return
    columns, lines = table(rows)
    print_table(columns, lines, title=f"run {run_id}: evaluation (95% bootstrap intervals)")
