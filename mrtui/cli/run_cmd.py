"""``mrtui run``: one Meta-Rewarding data iteration (actor → judge → meta-judge), resumable."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from .app import DbOption, app
from .output import calibrated, health_pct, print_alarms, print_table, safe, tied_prompts


def _parse_set(items: list[str]) -> dict[str, Any]:
    from mrtui.loop.settings import ITERATION_KEYS, ConfigError

    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in ITERATION_KEYS:
            raise ConfigError(
                f"--set {item!r}: expected NAME=VALUE with NAME one of "
                + ", ".join(sorted(ITERATION_KEYS))
            )
        try:
            out[name] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[name] = raw  # a bare string such as weights_scope=iteration
    return out


@app.command()
def run(
    db: DbOption,
    config: Annotated[
        Path | None, typer.Option(help="TOML run config ([defaults] and [iteration.N] tables).")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option(help='JSONL prompts, one {"prompt": ...} per line.')
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="HF model folder, hf:OWNER/REPO, a .gguf path, hf:OWNER/REPO/FILE.gguf, or a "
            "packaged name (see `mrtui models`)."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Inference backend.")] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            help="An OpenAI-compatible server (vllm serve, llama-server, llama_cpp.server, a "
            "hosted API), e.g. http://127.0.0.1:8000 (repeatable: requests are spread over "
            "all). Implies --backend openai; the API key is read from $OPENAI_API_KEY.",
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id inside the log (default: main).")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Iterations to run (each trains the next model).")
    ] = None,
    k: Annotated[int | None, typer.Option("--k", help="Responses per prompt.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Judgements per response.")] = None,
    rho: Annotated[float | None, typer.Option(help="Length-control ρ in [0, 1).")] = None,
    seed: Annotated[int | None, typer.Option(help="Base seed.")] = None,
    judge_fallback: Annotated[
        bool | None,
        typer.Option(
            "--judge-fallback/--no-judge-fallback",
            help="Constrained 1-token score when a judgement has no valid score line.",
        ),
    ] = None,
    n_ctx: Annotated[int | None, typer.Option(help="Context window (llama.cpp).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (llama.cpp).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any iteration setting as NAME=VALUE (repeatable), e.g. "
            "--set judge_max_chars=1000.",
        ),
    ] = None,
) -> None:
    """Generate, judge, meta-judge and train (DPO), iteration after iteration; rerun the
    same command to resume after a stop."""
    from mrtui.loop.settings import load_config

    cli: dict[str, Any] = {
        "prompts": str(prompts) if prompts else None,
        "model": model,
        "backend": backend,
        "run_id": run_id,
        "iterations": iterations,
        "k": k,
        "n": n,
        "rho": rho,
        "seed": seed,
        "judge_fallback": judge_fallback,
    }
    cli.update(_parse_set(set_ or []))
    settings = load_config(config, cli)
    options = dict(settings.backend_options)
    if n_ctx is not None:
        options["n_ctx"] = n_ctx
    if threads is not None:
        options["n_threads"] = threads
    changes: dict[str, Any] = {}
    if endpoint:
        from mrtui.backends.registry import model_format
        from mrtui.loop.settings import ConfigError

        options["endpoints"] = list(endpoint)
        if backend is None and settings.backend == "llama.cpp":  # the default: not a server
            changes["backend"] = "openai"
        elif model_format(settings.backend) == "gguf":
            raise ConfigError(
                "--endpoint names a server; use it with --backend openai (llama.cpp runs the "
                "model in this process)"
            )
    if options != settings.backend_options:
        changes["backend_options"] = options
    if changes:
        from dataclasses import replace

        settings = replace(settings, **changes)
    execute(db, settings)


def execute(db: Path, settings: Any) -> None:
    """Run ``settings`` against the log at ``db`` with Rich progress, then summarise."""
    from mrtui.loop.session import RunSession, process_started_at

    from .progress import RichProgress

    with RichProgress() as progress:
        try:
            result = RunSession(
                db, settings, progress=progress, started_at=process_started_at()
            ).run()
        except KeyboardInterrupt:
            progress.note(
                "interrupted: finished units are in the log; rerun the same command to continue"
            )
            raise
    reports = result.reports
    rows = [
        (r.iteration, r.stage, r.planned, r.skipped, r.done, r.failed, f"{r.wall_s:.1f}")
        for r in reports
    ]
    print_table(
        ["iteration", "stage", "planned", "already logged", "done", "failed", "seconds"],
        rows,
        title=f"run {settings.run_id} → {db}",
    )
    for r in reports:
        for err in r.failures:
            typer.echo(f"  {r.stage} failure: {safe(err)}", err=True)
    print_summary(db, settings.run_id)
    typer.echo(
        f"Explore: mrtui tui --db {db}   ·   mrtui status --db {db}   ·   mrtui sql --db {db} "
        '"SELECT * FROM preference_pairs"   ·   '
        f"mrtui export pairs --db {db} --out pairs.jsonl"
    )
    if result.failed:
        raise typer.Exit(1)


_BARS = "▁▂▃▄▅▆▇█"


def _histogram(counts: list[int] | None) -> str:
    if not counts or not any(counts):
        return "-"
    top = max(counts)
    bars = "".join(_BARS[min(7, round(7 * c / top))] if c else " " for c in counts)
    return f"0{bars}5 " + "/".join(str(c) for c in counts)


def _num(v: Any, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def print_summary(db: Path, run_id: str) -> None:
    """The per-iteration table: pairs, scores, parse failures, DPO loss and accuracy."""
    from mrtui.loop.report import summary
    from mrtui.store import connect

    with connect(db) as con:
        rows = summary(con, run_id)
    columns = ["", *(f"iteration {r['iteration']}" for r in rows)]
    lines = [
        ("model", lambda r: r["model_id"]),
        ("prompts", lambda r: r["prompts"]),
        ("pairs actor / judge", lambda r: f"{r['actor_pairs'] or 0} / {r['judge_pairs'] or 0}"),
        ("mean response score", lambda r: _num(r["mean_response_score"])),
        ("mean response chars", lambda r: _num(r["mean_response_chars"], "{:.0f}")),
        ("responses cut at the token limit", lambda r: health_pct(r, "truncated_share")),
        ("judge scores 0..5", lambda r: _histogram(r["scores"])),
        (
            "judge / meta parse failures",
            lambda r: (
                f"{_num(r['judge_parse_failure_rate'], '{:.0%}')} / "
                f"{_num(r['meta_parse_failure_rate'], '{:.0%}')}"
            ),
        ),
        ("judge fallback used", lambda r: _num(r["judge_fallback_rate"], "{:.0%}")),
        ("share of 5s", lambda r: health_pct(r, "share_of_fives")),
        ("judgements without a rationale", lambda r: health_pct(r, "no_rationale_share")),
        ("prompts whose scores all tie", tied_prompts),
        ("score-length correlation", lambda r: _num(r["score_length_corr"], "{:+.2f}")),
        ("meta first-position wins", lambda r: _num(r["first_position_win_rate"], "{:.0%}")),
        ("meta P(first shown better)", lambda r: _num(r["mean_p_first"], "{:.2f}")),
        ("meta position consistency", lambda r: health_pct(r, "position_consistency")),
        ("meta consistency, calibrated", calibrated),
        (
            "trained on actor / judge",
            lambda r: (
                "-"
                if r["steps"] is None
                else f"{r['trained_actor_pairs']} / {r['trained_judge_pairs']} ({r['steps']} steps)"
            ),
        ),
        ("DPO final loss", lambda r: _num(r["final_loss"], "{:.3f}")),
        ("DPO reward accuracy", lambda r: _num(r["reward_accuracy"], "{:.0%}")),
    ]
    print_table(
        columns,
        [(label, *(get(r) for r in rows)) for label, get in lines],
        title=f"run {run_id}: summary",
    )
    print_alarms(run_id, rows)
    from .eval_cmd import print_results

    print_results(db, run_id)


@app.command()
def demo(
    db: Annotated[
        Path,
        typer.Option("--db", envvar="MRTUI_DB", help="Where the demo log goes.", dir_okay=False),
    ] = Path("runs/demo.duckdb"),
    prompts: Annotated[
        int,
        typer.Option(help="Prompts per iteration, fresh each time, from the 9 shipped."),
    ] = 4,
    threads: Annotated[int | None, typer.Option(help="CPU threads (llama.cpp).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Another model (HF folder, hf:OWNER/REPO, .gguf, packaged name)."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="Another backend (e.g. transformers); the preset's options are dropped."),
    ] = None,
) -> None:
    """The packaged demo: two Meta-Rewarding iterations (with DPO between them) of
    Qwen2.5-Coder 0.5B with structured judging, each on its own prompts drawn from the shipped
    ones (assets/presets/demo.toml). Resumable like `run`."""
    from dataclasses import replace
    from importlib import resources

    from mrtui.loop.settings import load_config

    assets = resources.files("mrtui.assets")
    with (
        resources.as_file(assets.joinpath("presets", "demo.toml")) as preset,
        resources.as_file(assets.joinpath("prompts", "demo.jsonl")) as prompt_file,
    ):
        settings = load_config(
            preset, {"prompts": str(prompt_file), "prompts_per_iteration": prompts}
        )
        if model is not None:
            settings = replace(settings, model=model)
        if backend is not None and backend != settings.backend:
            settings = replace(settings, backend=backend, backend_options={})
        if threads is not None:
            options = {**settings.backend_options, "n_threads": threads}
            settings = replace(settings, backend_options=options)
        typer.echo(f"mrtui demo: log at {db}", err=True)
        execute(db, settings)


@app.command()
def train(
    db: DbOption,
    iteration: Annotated[int, typer.Option(help="Train on this iteration's pairs.")],
    run_id: Annotated[str, typer.Option("--run", help="Run id inside the log.")] = "main",
) -> None:
    """DPO on one iteration's pairs, making the next iteration's model (the training stage
    alone; `run` does it after each iteration's data stages). Runs under `accelerate launch`
    too (DDP, FSDP, DeepSpeed; configs in mrtui/assets/accelerate/), where only the main
    process reads and writes the log."""
    from mrtui.backends.distributed import ranks
    from mrtui.loop.session import RunSession, process_started_at

    from .progress import RichProgress

    launch = ranks()
    if launch is not None and not launch.is_main:
        RunSession(db, run_id=run_id).train(iteration)  # joins the training; says nothing
        return
    with RichProgress() as progress:
        report = RunSession(
            db, run_id=run_id, progress=progress, started_at=process_started_at()
        ).train(iteration)
    ckpt = report.checkpoint
    state = "already trained" if report.skipped else f"{report.steps} steps"
    typer.echo(
        f"iteration {iteration}: {report.pairs['actor']} actor + "
        f"{report.pairs['judge']} judge pairs, {state}; "
        f"M_{iteration + 1} = {(ckpt.hf_dir or ckpt.gguf_path) if ckpt else '-'}"
    )
