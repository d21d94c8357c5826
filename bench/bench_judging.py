"""Judging quality on the packaged 0.5B model: free-text judging against structured judging.

Each configuration judges the same labelled set (bench/data/judge_labelled.jsonl: per question
a correct, a partial and an off-topic answer, written by hand) N times through the loop's own
judge stage (``Stages.judge``, templates from ``Runner.register_templates``, the backend as the
CLI makes it) into a scratch log, then reads the ``judgements`` view. "After" is the demo
preset's judging as shipped (assets/presets/demo.toml, loaded as ``mrtui demo`` loads it);
"before" is the same preset with the demo's judging before structured judging (free text, 192
tokens, sampled scores): the only values typed here.

- share of judgements with a rationale of at least one sentence (``rationale_words`` >= 3);
- parse rate without the fallback, and with it;
- completion tokens and seconds per judgement;
- score separation: mean score per label, and the share of (correct, off-topic) and
  (correct, partial) answer pairs of one question whose mean scores are ordered right.

It also re-parses the free-text judgements with the parser of before this change (commit
2f5d7ed, read from git) and the current one, for the parse-rate comparison. Runs llama.cpp:
run it alone on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, command, load, machine, table, today, update_section

DATA = REPO / "bench" / "data" / "judge_labelled.jsonl"
OLD_PARSER_COMMIT = "2f5d7ed"
SENTENCE = 3  # words: what counts as a rationale of at least one sentence

PRESET = REPO / "assets" / "presets" / "demo.toml"

# Changes over the demo preset. "before": the demo's judging until structured judging;
# "after": the demo's judging now, as the preset ships it.
CONFIGS: dict[str, dict[str, Any]] = {
    "free text + fallback (before)": {
        "structured_judging": False,
        "judge_max_tokens": 192,
        "judge_scoring": "sampled",
    },
    "demo preset (after)": {},
}


def demo_run(model: str | None) -> Any:
    """The demo preset as ``mrtui demo`` loads it, on ``model`` where given."""
    from mrtui.loop.settings import load_config

    return load_config(PRESET, {} if model is None else {"model": model})


def judge(run: Any, changes: dict[str, Any], n: int, items: list[dict[str, str]], d: Path) -> Any:
    from mrtui.loop.runner import Runner, default_backend
    from mrtui.loop.stages import ModelIdentity, Stages
    from mrtui.store import EventLog

    settings = run.defaults.with_flat(n=n, **changes)
    backend = default_backend(run, run.model)
    info = backend.info()
    db = d / f"judge-{time.monotonic_ns()}.duckdb"
    try:
        with EventLog(db) as log:
            templates = Runner(log, run).register_templates(settings)
            stages = Stages(
                log,
                run.run_id,
                1,
                settings,
                ModelIdentity(info.model_id, info.model_sha256 or ""),
                templates,
                lambda: backend,
            )
            t0 = time.perf_counter()
            stages.judge(
                [(it["id"], it["id"].split("-")[0], it["question"], it["response"]) for it in items]
            )
            wall = time.perf_counter() - t0
            rows = log.query(
                "SELECT response_key, judgement, score, fallback_used, completion_tokens, "
                "rationale_words, payload FROM judgements"
            )
    finally:
        backend.close()
    return settings, wall, rows


def old_parser() -> Any:
    src = subprocess.run(
        ["git", "show", f"{OLD_PARSER_COMMIT}:mrtui/loop/prompts.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader("mrtui_old_prompts", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(src, "old_prompts.py", "exec"), module.__dict__)  # our own file, at a commit
    return module.parse_score


def summarise(name: str, wall: float, rows: list[Any], labels: dict[str, str]) -> dict[str, Any]:
    from mrtui.loop.prompts import parse_score

    n = len(rows)
    scores: dict[str, list[float]] = defaultdict(list)
    for key, _, score, *_ in rows:
        if score is not None:
            scores[key].append(score)
    means = {k: mean(v) for k, v in scores.items()}
    by_label: dict[str, list[float]] = defaultdict(list)
    for key, m in means.items():
        by_label[labels[key]].append(m)

    def ordered(worse: str) -> float | None:
        pairs = [
            (means.get(f"{q}-correct"), means.get(f"{q}-{worse}"))
            for q in {k.split("-")[0] for k in labels}
        ]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        return sum(a > b for a, b in pairs) / len(pairs) if pairs else None

    # what the model wrote before a fallback appended its recovered final line
    first_texts = [t.rsplit("\n", 1)[0] if fb and s is not None else t for _, t, s, fb, *_ in rows]
    return {
        "config": name,
        "judgements": n,
        "rationale_share": sum((w or 0) >= SENTENCE for *_, w, _ in rows) / n,
        "parsed_first": sum(parse_score(t).error is None for t in first_texts) / n,
        "parsed_final": sum(s is not None for _, _, s, *_ in rows) / n,
        "tokens": mean(r[4] or 0 for r in rows),
        "seconds": wall / n,
        "label_means": {lab: mean(v) for lab, v in by_label.items() if v},
        "correct_over_off": ordered("off_topic"),
        "correct_over_partial": ordered("partial"),
        "first_texts": first_texts,
    }


def judging(s: Any) -> str:
    """The judge settings a configuration ran with, as the section names them."""
    form = (
        f"structured, rationale ≤ {s.rationale_max_chars} characters"
        if s.structured_judging
        else "free text"
    )
    fallback = "with" if s.judge_fallback else "without"
    return (
        f"{form}, judge_max_tokens {s.judge_max_tokens}, temperature {s.judge_temperature:g}, "
        f"top_p {s.judge_top_p:g}, {s.judge_scoring} scores, {fallback} the fallback"
    )


def main() -> None:
    from mrtui.loop.prompts import parse_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, help="judgements per labelled answer (the preset's n)")
    ap.add_argument("--model", help="the model to judge with (the preset's)")
    ap.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = ap.parse_args()
    items = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    labels = {it["id"]: it["label"] for it in items}
    load_start = load()
    old = old_parser()  # fail now, not after the model has run
    run = demo_run(args.model)
    n = run.defaults.n if args.n is None else args.n
    results, used = [], []
    with tempfile.TemporaryDirectory(prefix="mrtui-bench-judging-") as d:
        for name, config in CONFIGS.items():
            settings, wall, rows = judge(run, config, n, items, Path(d))
            used.append(settings)
            raw = Path(tempfile.gettempdir()) / f"bench_judging_{len(results)}.json"
            raw.write_text(json.dumps({"wall": wall, "rows": rows}, default=str))
            results.append(summarise(name, wall, rows, labels))
            r = results[-1]
            print(f"{name}: {r['judgements']} judgements, {r['seconds']:.2f} s each", flush=True)
    free = results[0]["first_texts"]
    old_rate = sum(old(t).error is None for t in free) / len(free)
    new_rate = sum(parse_score(t).error is None for t in free) / len(free)

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    rows = [
        [
            r["config"],
            r["judgements"],
            pct(r["rationale_share"]),
            pct(r["parsed_first"]),
            pct(r["parsed_final"]),
            f"{r['tokens']:.0f}",
            f"{r['seconds']:.2f}",
            " / ".join(
                f"{r['label_means'].get(k, float('nan')):.2f}"
                for k in ("correct", "partial", "off_topic")
            ),
            pct(r["correct_over_off"]),
            pct(r["correct_over_partial"]),
        ]
        for r in results
    ]
    body = "\n".join(
        [
            "## Judging quality: free text vs structured judging (bench_judging.py)",
            "",
            f"{today()} · `{command()}` · {machine()} · {load_start} · model {run.model} "
            f"({run.backend}, the demo preset's options), {len(items)} labelled answers × "
            f"N = {n}; the demo preset's judging, before structured judging and now: "
            + "; ".join(
                f"{name.split(' (')[-1].rstrip(')')}: {judging(s)}"
                for name, s in zip(CONFIGS, used, strict=True)
            ),
            "",
            table(
                [
                    "judging",
                    "judgements",
                    "rationale ≥ 1 sentence",
                    "parsed (no fallback)",
                    "parsed (final)",
                    "tokens / judgement",
                    "s / judgement",
                    "mean score correct / partial / off-topic",
                    "correct > off-topic",
                    "correct > partial",
                ],
                rows,
            ),
            "",
            f"Score parser on the {len(free)} free-text judgements (before the fallback): "
            f"parser of {OLD_PARSER_COMMIT} {pct(old_rate)}, current parser {pct(new_rate)}.",
        ]
    )
    print(body)
    if not args.no_write:
        update_section("judging", body)


if __name__ == "__main__":
    main()
