"""Judge signal on the shipped labelled set: sampled vs expected judging, with and without
rationale, on the packaged Qwen2.5-Coder 0.5B and 1.5B (issue 20, item 7).

Each cell is one ``mrtui judge check`` (:func:`mrtui.loop.judgecheck.check_judge`) on
assets/judge_check/preferences.jsonl with the demo preset's judge settings (structured
judging, n = 3, judge temperature 0.8, llama.cpp with 16 parallel sequences) and two changes:
``judge_scoring`` (sampled: the number or winner the final line names; expected: Σ s·p(s) and
P(first shown better) from the choice probabilities, both orders averaged) and
``judge_rationale`` (off: the final line right after the prompt). Pairwise comparisons use the
same scoring, so "expected" is also the probability pairwise/meta judging of the issue.

Cells run in separate calls so that other work can take the model lock in between; each call
adds its cells to a JSON store, and ``--write`` turns the store into the RESULTS.md section
``judge-signal``. Runs llama.cpp: run it alone on the machine, e.g.

    flock /tmp/mrtui-model.lock timeout 1800 .venv/bin/python bench/bench_judge_signal.py \\
        --model qwen2.5-coder-0.5b-instruct --cells sampled,expected
    .venv/bin/python bench/bench_judge_signal.py --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, command, load, machine, table, today, update_section

CELLS = {  # name -> (judge_scoring, judge_rationale)
    "sampled": ("sampled", False),
    "expected": ("expected", False),
    "sampled+rationale": ("sampled", True),
    "expected+rationale": ("expected", True),
}
MODELS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
STORE = Path("/tmp/mrtui-judge-signal.json")
SECTION = "judge-signal"


def run_cells(model: str, cells: list[str], limit: int | None, n: int | None, store: Path) -> None:
    from mrtui.loop.judgecheck import check_judge, read_labels, shipped_labels
    from mrtui.loop.runner import default_backend
    from mrtui.loop.settings import load_config

    preset = REPO / "assets" / "presets" / "demo.toml"
    run = load_config(preset, {"model": model})
    pairs = read_labels(shipped_labels(), limit)
    results = json.loads(store.read_text()) if store.exists() else {}
    backend = default_backend(run, model)
    try:
        for cell in cells:
            scoring, rationale = CELLS[cell]
            changes: dict[str, Any] = {
                "judge_scoring": scoring,
                "judge_rationale": rationale,
                "pairwise_rationale": rationale,  # the comparisons reason (or not) alike
            }
            if n is not None:
                changes["n"] = n
            settings = run.defaults.with_flat(**changes)
            print(f"{model} {cell}: {len(pairs)} pairs, n={settings.n} ...", flush=True)
            result = check_judge(backend, pairs, settings).to_dict()
            result.update(
                model=model,
                cell=cell,
                limit=limit,
                date=today(),
                machine=machine(),
                load=load(),
                command=command(),
            )
            results[f"{model} {cell}"] = result
            store.write_text(json.dumps(results, indent=1))
            print(_line(result), flush=True)
    finally:
        backend.close()


def _ci(r: dict[str, Any], name: str) -> str:
    value = r[name]
    lo, hi = r["intervals"][name]
    if value is None:
        return "-"
    return f"{value:.0%} [{lo:.0%}, {hi:.0%}]"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _line(r: dict[str, Any]) -> str:
    return (
        f"  pointwise {_ci(r, 'pointwise_accuracy')}  pairwise {_ci(r, 'pairwise_accuracy')}  "
        f"consistency {_ci(r, 'position_consistency')}  ties {_ci(r, 'ties')}  "
        f"first {_pct(r['first_preference'])}  {r['cost']['wall_s']:.0f} s"
    )


def _short(model: str) -> str:
    return model.replace("qwen2.5-coder-", "").replace("-instruct", "")


def write(store: Path) -> None:
    results = json.loads(store.read_text())
    order = [f"{m} {c}" for m in MODELS for c in CELLS]
    rows = []
    for key in order:
        r = results.get(key)
        if r is None:
            continue
        s = r["settings"]
        rows.append(
            (
                _short(r["model"]),
                s["judge_scoring"],
                "yes" if s["judge_rationale"] else "no",
                s["n"],
                r["n"],
                _ci(r, "pointwise_accuracy"),
                _ci(r, "pairwise_accuracy"),
                _ci(r, "position_consistency"),
                _ci(r, "ties"),
                _pct(r["first_preference"]),
                f"{r['cost']['wall_s']:.0f}",
                f"{r['cost']['wall_s'] / r['n']:.1f}",
            )
        )
    header = [
        "model",
        "scoring",
        "rationale",
        "n",
        "pairs",
        "pointwise accuracy",
        "pairwise accuracy",
        "position consistency",
        "ties",
        "first shown",
        "seconds",
        "s/pair",
    ]
    runs = sorted({(r["date"], r["command"], r["load"]) for r in results.values()})
    machines = sorted({r["machine"] for r in results.values()})
    body = [
        f"## Judge signal on the shipped labelled set — `bench/{Path(__file__).name}`",
        "",
        "Each row is one judge check (`mrtui judge check`) on "
        "`assets/judge_check/preferences.jsonl` (24 bench pairs, 36 IFEval pairs) with the "
        "demo preset's judge settings (structured judging, judge temperature 0.8, llama.cpp "
        "with 16 parallel sequences) and the row's `judge_scoring`, `judge_rationale` (and "
        "`pairwise_rationale` alike) and n "
        "(judgements per response, pointwise). *Pointwise accuracy*: score(chosen) > "
        "score(rejected), ties half. *Pairwise accuracy*: the judge compares the two "
        "responses in both orders (sampled: agreeing verdicts decide, disagreeing ones count "
        "half; expected: mean(P_AB, 1 − P_BA) > 0.5). *Position consistency*: both orders pick "
        "the same response. *First shown*: share of verdicts (sampled) or mean probability "
        "(expected) for the response shown first. Brackets: 95% bootstrap intervals over the "
        "pairs. Seconds: the whole check, wall time.",
        "",
        table(header, rows),
        "",
        "By source (accuracy on the bench pairs, which tell a right answer from a partial or "
        "irrelevant one, and on the IFEval pairs, whose two answers differ only in following "
        "an instruction):",
        "",
        table(
            [
                "model",
                "scoring",
                "rationale",
                "pointwise bench",
                "pointwise IFEval",
                "pairwise bench",
                "pairwise IFEval",
            ],
            [_by_source(results[k]) for k in order if k in results],
        ),
        "",
        *_verdicts(results),
        "",
        "Machine: " + "; ".join(machines) + ".",
        "",
        "Rationale cells are capped for cost: n = 1 judgement per response (the others: the "
        "preset's n = 3), and on the 1.5B the first 20 pairs (10 of each source). Seconds are "
        "wall time on a shared 2-core machine (the load is listed per run).",
        "",
        "Runs (finished, command, load):",
        *[f"- {d}: `{c}` ({lo})" for d, c, lo in runs],
    ]
    update_section(SECTION, "\n".join(body))
    print("\n".join(body))


def _by_source(r: dict[str, Any]) -> tuple[str, ...]:
    """A cell's accuracies on each source of the shipped set (the check keeps file order)."""
    from mrtui.loop.judgecheck import shipped_labels

    sources = [json.loads(line)["source"] for line in shipped_labels().read_text().splitlines()]
    cells: list[str] = []
    for metric in ("pointwise", "pairwise"):
        for source in ("bench", "ifeval"):
            y = [p[metric] for p, src in zip(r["pairs"], sources, strict=False) if src == source]
            cells.append(f"{sum(y) / len(y):.0%} of {len(y)}" if y else "-")
    s = r["settings"]
    return (_short(r["model"]), s["judge_scoring"], "yes" if s["judge_rationale"] else "no", *cells)


def _verdicts(results: dict[str, Any]) -> list[str]:
    """Which settings win, per model, and whether the issue's two targets are met."""
    out = []
    for model in MODELS:
        cells = {c: results.get(f"{model} {c}") for c in CELLS}
        ran = {c: r for c, r in cells.items() if r is not None}
        if not ran:
            continue
        most = max(r["n"] for r in ran.values())
        have = {c: r for c, r in ran.items() if r["n"] == most}  # compare like with like
        capped = sorted(c for c in ran if c not in have)
        if capped:
            out.append(
                f"- {_short(model)}: {', '.join(capped)} ran on the first "
                f"{min(ran[c]['n'] for c in capped)} pairs only (cost), so they are left out "
                "of the comparison below."
            )
        for metric, label in (
            ("pointwise_accuracy", "pointwise"),
            ("pairwise_accuracy", "pairwise"),
        ):
            best = max(have, key=lambda c: have[c][metric])
            out.append(
                f"- {_short(model)}, {label}: best is **{best}** ({_ci(have[best], metric)})."
            )
        s, e = cells["sampled"], cells["expected"]
        if s is not None and e is not None:
            beyond = (
                e["intervals"]["pointwise_accuracy"][0] > s["intervals"]["pointwise_accuracy"][1]
            )
            bench = _by_source(e)[5]
            out.append(
                f"- {_short(model)}: on the bench pairs alone, combined-order pairwise "
                f"probabilities are right for {bench}."
            )
            out.append(
                f"- {_short(model)}: expected scoring beats sampled scoring beyond the intervals "
                f"(no rationale): **{'yes' if beyond else 'no'}**; combined-order pairwise "
                f"probabilities reach 80%: **{'yes' if e['pairwise_accuracy'] >= 0.8 else 'no'}**."
            )
            out.append(f"- {_short(model)}: {_paired(e, s)}")
    return out


def _paired(e: dict[str, Any], s: dict[str, Any]) -> str:
    """Expected minus sampled on the same pairs, with a paired 95% bootstrap interval of the
    difference (the per-pair outcomes resampled together): tighter than comparing the two
    cells' own intervals, which ignore that both judged the same pairs."""
    from mrtui.store.evalstats import bootstrap

    parts = []
    for key, label in (("pointwise", "pointwise"), ("pairwise", "pairwise")):
        diff = [a[key] - b[key] for a, b in zip(e["pairs"], s["pairs"], strict=True)]
        value, lo, hi = bootstrap("mean", diff)
        assert value is not None and lo is not None and hi is not None
        sure = "excludes 0" if lo > 0 or hi < 0 else "includes 0"
        parts.append(
            f"{label} {100 * value:+.0f} points [{100 * lo:+.0f}, {100 * hi:+.0f}] "
            f"(the interval {sure})"
        )
    return "expected − sampled on the same pairs (paired bootstrap): " + "; ".join(parts) + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, help="run the cells on this packaged model")
    ap.add_argument(
        "--cells", default=",".join(CELLS), help=f"comma-separated, of: {', '.join(CELLS)}"
    )
    ap.add_argument("--limit", type=int, help="only the first N pairs (for costly cells)")
    ap.add_argument("--n", type=int, help="judgements per response (default: the preset's)")
    ap.add_argument("--store", type=Path, default=STORE, help="JSON store of finished cells")
    ap.add_argument("--write", action="store_true", help="write the RESULTS.md section")
    args = ap.parse_args()
    if args.model:
        cells = [c.strip() for c in args.cells.split(",") if c.strip()]
        unknown = set(cells) - set(CELLS)
        if unknown:
            ap.error(f"unknown cells {sorted(unknown)}; known: {', '.join(CELLS)}")
        run_cells(args.model, cells, args.limit, args.n, args.store)
    if args.write:
        write(args.store)
    if not args.model and not args.write:
        ap.error("give --model to run cells, --write to write RESULTS.md, or both")


if __name__ == "__main__":
    main()
