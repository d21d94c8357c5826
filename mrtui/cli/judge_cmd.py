"""``mrtui judge check``: how often a judge prefers the better response of labelled pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .app import JsonOption, app
from .output import print_json, print_table, safe

judge_app = typer.Typer(
    help="Check a judge before trusting it.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(judge_app, name="judge")

_ROWS = (
    ("pointwise_accuracy", "pointwise accuracy (chosen scored higher; ties half)"),
    ("pairwise_accuracy", "pairwise accuracy (both orders combined)"),
    ("position_consistency", "position consistency (both orders agree)"),
    ("ties", "pointwise ties"),
    ("first_preference", "preference for the response shown first"),
)


@judge_app.command("check")
def check(
    labels: Annotated[
        Path | None,
        typer.Option(
            help='JSONL in TRL\'s preference format, one {"prompt", "chosen", "rejected"} a '
            "line (default: the set shipped with mrtui).",
            dir_okay=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="The judge: HF model folder, hf:OWNER/REPO, a .gguf path or a packaged name "
            "(default: the config's model)."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Inference backend.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML run config whose judge settings to check.")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="A packaged preset instead of --config: demo or paper.")
    ] = None,
    iteration: Annotated[
        int, typer.Option(help="Use the config's settings for this iteration.")
    ] = 1,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any iteration setting as NAME=VALUE (repeatable), e.g. "
            "--set judge_scoring=expected --set judge_rationale=false.",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Check only the first N pairs.")] = None,
    json_: JsonOption = False,
) -> None:
    """Score labelled preference pairs with the run's judge settings: pointwise accuracy,
    pairwise accuracy (both orders), position consistency and ties, each with a 95%
    bootstrap interval."""
    from mrtui.loop import runner
    from mrtui.loop.judgecheck import check_judge, read_labels, shipped_labels
    from mrtui.loop.settings import ConfigError, load_config

    from .progress import RichProgress
    from .run_cmd import _parse_set

    source = labels if labels is not None else shipped_labels()
    pairs = read_labels(source, limit)
    if config is not None and preset is not None:
        raise ConfigError("give --config or --preset, not both")
    cli: dict[str, Any] = {"model": model, "backend": backend, **_parse_set(set_ or [])}
    with _preset_path(preset) as preset_file:
        run_settings = load_config(config or preset_file, cli)
    if iteration < 1:
        raise ConfigError(f"--iteration must be at least 1, got {iteration}")
    settings = run_settings.for_iteration(iteration)
    judge = runner.default_backend(run_settings, run_settings.model)
    try:
        with RichProgress() as progress:
            result = check_judge(judge, pairs, settings, progress=progress)
    finally:
        judge.close()
    out = {
        "labels": str(source),
        "model": run_settings.model,
        "backend": run_settings.backend,
        **result.to_dict(),
    }
    if json_:
        print_json(out)
    else:
        _print(out)
    for error in result.errors:
        typer.echo(f"  {safe(error)}", err=True)
    if result.failures:
        typer.echo(f"{result.failures} requests failed; their judgements count as none", err=True)
        raise typer.Exit(1)


def _preset_path(name: str | None) -> Any:
    """A context manager giving the packaged preset's file (None without a preset)."""
    import contextlib
    from importlib import resources

    from mrtui.loop.settings import ConfigError

    if name is None:
        return contextlib.nullcontext(None)
    presets = resources.files("mrtui.assets").joinpath("presets")
    known = sorted(p.name[: -len(".toml")] for p in presets.iterdir() if p.name.endswith(".toml"))
    if name not in known:
        raise ConfigError(f"unknown preset {name!r}; packaged presets: {', '.join(known)}")
    return resources.as_file(presets.joinpath(f"{name}.toml"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _print(out: dict[str, Any]) -> None:
    rows = []
    for key, label in _ROWS:
        lo, hi = out["intervals"][key]
        rows.append((label, _pct(out[key]), f"[{_pct(lo)}, {_pct(hi)}]"))
    print_table(
        ["", "value", "95% interval"],
        rows,
        title=f"judge check: {out['model']} on {out['n']} pairs",
    )
    s = out["settings"]
    cost = out["cost"]
    typer.echo(
        f"judge_scoring={s['judge_scoring']} judge_rationale={str(s['judge_rationale']).lower()}"
        f" pairwise_rationale={str(s['pairwise_rationale']).lower()}"
        f" structured_judging={str(s['structured_judging']).lower()} n={s['n']}"
        f" judge_temperature={s['judge_temperature']} · {cost['wall_s']:.0f} s,"
        f" {cost['completion_tokens']} completion tokens · labels: {safe(out['labels'])}"
    )
    if out["unscored"] or out["undecided"]:
        typer.echo(
            f"{out['unscored']} pairs had a response without a valid score and "
            f"{out['undecided']} an order without a verdict (counted half)"
        )
