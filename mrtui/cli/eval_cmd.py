"""``mrtui eval``: evaluate each iteration's model on benchmark suites, into the same log;
``mrtui eval compare``: did one evaluated model do better than another?

``eval`` is a command group that runs its own callback when no subcommand is named, so
``mrtui eval --db LOG --suite S`` evaluates as it always did and ``mrtui eval compare ...``
compares. The group's options belong to the evaluation; given before ``compare`` they are
refused (compare's own come after it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mrtui.evaluation.settings import SUITE_SETS

from .app import DbOption, JsonOption, app
from .output import print_json, print_table, safe

if TYPE_CHECKING:
    from mrtui.backends.base import InferenceBackend
    from mrtui.loop.settings import RunSettings

eval_app = typer.Typer(
    invoke_without_command=True, rich_markup_mode=None, pretty_exceptions_enable=False
)
app.add_typer(eval_app, name="eval")

_DB_HELP = "Event log file (DuckDB). Env: MRTUI_DB."
_SUITES = ", ".join(SUITE_SETS)


def _click_error(name: str) -> Any:
    """An exception class of the click that typer uses (vendored in recent typer)."""
    return getattr(sys.modules[typer.BadParameter.__module__], name)


def _missing(ctx: typer.Context, name: str) -> Exception:
    param = next(p for p in ctx.command.params if p.name == name)
    return _click_error("MissingParameter")(ctx=ctx, param=param)


@eval_app.callback()
def eval_(
    ctx: typer.Context,
    db: Annotated[
        Path | None,
        typer.Option("--db", envvar="MRTUI_DB", help=_DB_HELP, dir_okay=False),
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(help=f"Suites, comma-separated or repeated: {_SUITES}. Required."),
    ] = None,
    run_id: Annotated[str, typer.Option("--run", help="Run id inside the log.")] = "main",
    iteration: Annotated[
        list[int] | None,
        typer.Option(help="Iterations whose model to evaluate (repeatable; default: all)."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(help="Items per suite: a deterministic stratified subset (default: all)."),
    ] = None,
    target_mde: Annotated[
        float | None,
        typer.Option(
            help="Instead of --limit: evaluate enough items per suite to detect a change of "
            "this size in a rate (0.05 = 5 points) between two iterations, at 80% power and "
            "alpha 0.05. Uses the spread of the run's last comparison if there is one, else the "
            "worst case for rates.",
        ),
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
    baseline: Annotated[
        str | None,
        typer.Option(
            help="arena_hard's baseline: m1 (the run's iteration-1 answers; default), shipped "
            "(Arena-Hard v2.0's own answers), or a logged model's answers: model id, sha256 or "
            "RUN:ITERATION."
        ),
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
    rate against GPT-4-1106's answers, MT-Bench 1-10 grades, Arena-Hard v2.0 win rate against
    a baseline's answers (both orders), and the model's own judge on verifiable IFEval pairs.
    Every answer and verdict is an event in the log; results are the `eval_results` view
    (Arena-Hard's: `arena_results`). Rerun the same command to resume. `mrtui eval compare`
    then tells whether one model did better than another."""
    from dataclasses import replace

    from mrtui.evaluation.settings import EvalConfigError, EvalSettings, parse_suites
    from mrtui.loop.session import RunSession, process_started_at

    from .progress import RichProgress

    if ctx.invoked_subcommand is not None:
        given = [
            p.opts[0]
            for p in ctx.command.params
            if ctx.get_parameter_source(p.name).name == "COMMANDLINE"  # type: ignore[union-attr]
        ]
        if given:
            raise EvalConfigError(
                f"{', '.join(given)} belong to `mrtui eval` itself; give "
                f"`mrtui eval {ctx.invoked_subcommand}` its options after its name"
            )
        return
    if db is None:
        raise _missing(ctx, "db")
    if not suite:
        raise _missing(ctx, "suite")
    suites = parse_suites(",".join(suite))
    if target_mde is not None:
        if limit is not None:
            raise EvalConfigError("give --limit or --target-mde, not both")
        limit = _limit_for(db, run_id, suites, target_mde)
    settings = EvalSettings().with_changes(  # replace() validates the combination
        suites=suites,
        limit=limit,
        judge_model=judge_model,
        judge_backend=judge_backend,
        baseline=baseline,
        allow_self_judge=allow_self_judge or None,
        max_tokens=max_tokens,
        judge_max_tokens=judge_max_tokens,
        pair_samples=pair_samples,
        structured=structured,
    )
    session_args: dict[str, Any] = {}
    if threads is not None:
        from mrtui.loop.runner import default_backend

        def backend(s: RunSettings, model: str) -> InferenceBackend:
            return default_backend(
                replace(s, backend_options={**s.backend_options, "n_threads": threads}), model
            )

        session_args["backend_factory"] = backend
    with RichProgress() as progress:
        try:
            chosen, reports = RunSession(
                db,
                run_id=run_id,
                progress=progress,
                started_at=process_started_at(),
                **session_args,
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
    from mrtui.evaluation.report import caveats, table

    if not rows:
        return
    columns, lines = table(rows)
    print_table(columns, lines, title=f"run {run_id}: evaluation (95% bootstrap intervals)")
    for note in caveats(rows):
        typer.echo(f"note: {note}")


def _limit_for(db: Path, run_id: str, suites: tuple[str, ...], target: float) -> int:
    """--target-mde: the --limit that detects ``target`` (printed with its reason and what
    each suite's size allows)."""
    from mrtui.evaluation.compare import choose_limit
    from mrtui.evaluation.run import items
    from mrtui.store import StoreError, connect
    from mrtui.store.paired import mde

    try:
        with connect(db) as con:
            n, sd, why = choose_limit(con, run_id, suites, target)
    except StoreError:  # no log yet or not readable: no earlier comparison to learn from
        n, sd, why = choose_limit(None, run_id, suites, target)
    typer.echo(
        f"--target-mde {target:g}: --limit {n}, the items per suite that detect a change of "
        f"{100 * target:g} points at 80% power and alpha 0.05 (n = ((1.96 + 0.84) · σ_d / "
        f"{target:g})², {why})"
    )
    for suite in suites:
        size = len(items(suite, None))
        if suite == "mt_bench":
            typer.echo(
                f"  mt_bench's 1-10 grades are not a rate: evaluated at the same limit "
                f"({min(n, size)} of its {size} questions)"
            )
        elif size < n:
            typer.echo(
                f"  {suite} has only {size} items: all are evaluated, enough for about "
                f"{100 * (mde(sd, size) or 0.0):.0f} points"
            )
    return n


@eval_app.command("compare")
def compare(
    db: DbOption,
    run_id: Annotated[
        list[str] | None,
        typer.Option(
            "--run",
            help="Run id (default main); twice to compare across runs: A in the first, B in "
            "the second.",
        ),
    ] = None,
    iteration: Annotated[
        list[int] | None,
        typer.Option(
            help="A's iteration, then B's (repeat). One run: both given, A vs B; one, it vs "
            "the evaluated iteration before it; none, the last two evaluated. Two runs: one "
            "iteration is taken from both; none, each run's last evaluated.",
        ),
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(help=f"Only these suites, comma-separated or repeated: {_SUITES}."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Did model B do better than model A? Compares two evaluated models on the items both
    answered, per suite, metric and judge: the difference B - A with a 95% paired bootstrap
    interval, a two-sided p-value (McNemar's exact test for pass/fail metrics, a paired
    sign-flip test otherwise), the smallest difference this many items can detect (80% power,
    alpha 0.05) and a verdict. Item-level metrics only: IFEval prompt-level strict and loose,
    AlpacaEval win rate (not the length-controlled one, a fit over all items), MT-Bench score
    (a question's turns averaged), judge-ifeval rubric and pairwise accuracy."""
    from mrtui.evaluation import compare as cmp
    from mrtui.evaluation.settings import parse_suites
    from mrtui.store import connect

    suites = parse_suites(",".join(suite)) if suite else None
    with connect(db) as con:
        a, b = cmp.sides(con, run_id or ["main"], iteration or [])
        rows = cmp.compare(con, a, b, suites)
    if json_:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"nothing to compare: {a} and {b} have no item-level results", err=True)
        raise typer.Exit(1)
    _print_comparison(a, b, rows)


def _print_comparison(a: Any, b: Any, rows: list[dict[str, Any]]) -> None:
    from mrtui.evaluation.compare import p_text, signed
    from mrtui.evaluation.report import format_metric

    def value(r: dict[str, Any], side: str) -> str:
        if r[side] is None:
            return "-"
        return format_metric({"metric": r["metric"], "value": r[side], "n": r["n"]}).rsplit(
            " n=", 1
        )[0]

    def unpaired(r: dict[str, Any]) -> str:
        left = r["only_a"] + r["only_b"]
        return f"{r['n']}" + (f" (+{left} unpaired)" if left else "")

    lines = [
        (
            r["suite"],
            r["metric"],
            r["judge_model_id"] or "",
            value(r, "a"),
            value(r, "b"),
            f"{signed(r['difference'], r['metric'])} "
            f"[{signed(r['lo'], r['metric'])}, {signed(r['hi'], r['metric'])}]",
            p_text(r["p_value"]),
            "-" if r["mde"] is None else signed(r["mde"], r["metric"]).lstrip("+"),
            unpaired(r),
        )
        for r in rows
    ]
    print_table(
        ["suite", "metric", "judge", "A", "B", "B - A [95%]", "p", "MDE", "n paired"],
        lines,
        title=f"A = {a} ({rows[0]['a_model_id']}), B = {b} ({rows[0]['b_model_id']})",
    )
    for r in rows:
        typer.echo(f"{r['suite']} {r['metric']}: {safe(r['verdict'])}")
    typer.echo(
        "Differences of rates in points; p: McNemar's exact test for pass/fail metrics, a "
        "paired sign-flip test otherwise; MDE: the smallest difference found 80% of the time "
        "at alpha 0.05 with these n."
    )
