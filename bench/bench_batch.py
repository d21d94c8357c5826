"""Batched llama.cpp decoding against the sequential path, on the same requests.

    .venv/bin/python bench/bench_batch.py                 # parallel 16, 2 repeats per side
    .venv/bin/python bench/bench_batch.py --parallel 8 16 --repeats 3

The requests are the demo's three stages on the packaged Qwen2.5-Coder 0.5B: the actor's K
samples for each of the nine shipped demo prompts (temperature 0.8, 256 tokens at most), N
structured judgements of the first answer to each prompt, and the meta-judge's verdicts on
every ordered pair of those judgements (the demo's judge and meta-judge prompts and settings).
The answers and judgements that later stages read are the first run's, so every side gets the
same requests. Each side is a fresh ``LlamaCppBackend`` (load not timed) given a stage's whole
batch at once, as a stage gives it; sides alternate (sequential, batched, batched,
sequential, ...). Throughput is generated tokens per second of wall time; the ratio batched ÷
sequential is the figure that counts (the machine is shared and absolute rates move). Runs
llama.cpp: run it alone on the machine.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, demo_prompts, load, machine, median, table, today, update_section

MODEL = "qwen2.5-coder-0.5b-instruct"


def requests(k: int) -> tuple[list[Any], list[str]]:
    from mrtui.backends.base import Message, Request, SamplingParams
    from mrtui.loop.prompts import load_template

    actor = load_template("actor")
    prompts = demo_prompts()
    acts = [
        Request(
            f"a{i}",
            (Message("user", actor.render(prompt=p)),),
            SamplingParams(n=k, temperature=0.8, top_p=0.95, max_tokens=256, seed=100 + i),
        )
        for i, p in enumerate(prompts)
    ]
    return acts, prompts


def judges(prompts: list[str], answers: dict[str, str], n: int) -> list[Any]:
    from mrtui.backends.base import Message, Request, SamplingParams
    from mrtui.loop.prompts import load_template
    from mrtui.loop.stages import SCORE_CHOICES, SCORE_LEAD, final_line

    judge = load_template("judge")
    spec = final_line(SCORE_LEAD, SCORE_CHOICES, 300)
    return [
        Request(
            f"j{i}",
            (Message("user", judge.render(question=p, response=answers[f"a{i}"])),),
            SamplingParams(n=n, temperature=0.8, top_p=0.95, max_tokens=160, seed=200 + i),
            structure=spec,
        )
        for i, p in enumerate(prompts)
    ]


def metas(prompts: list[str], answers: dict[str, str], judged: dict[str, list[str]]) -> list[Any]:
    from mrtui.backends.base import Message, Request, SamplingParams
    from mrtui.loop.prompts import load_template
    from mrtui.loop.stages import WINNER_CHOICES, WINNER_LEAD, final_line

    meta = load_template("meta_judge")
    spec = final_line(WINNER_LEAD, WINNER_CHOICES, 300)
    out: list[Any] = []
    for i, p in enumerate(prompts):
        texts = judged.get(f"j{i}", [])
        for a, first in enumerate(texts):
            for b, second in enumerate(texts):
                if a != b:
                    k = len(out)
                    text = meta.render(
                        question=p, response=answers[f"a{i}"], judgement_a=first, judgement_b=second
                    )
                    out.append(
                        Request(
                            f"m{i}-{a}{b}",
                            (Message("user", text),),
                            SamplingParams(
                                n=1, temperature=0.8, top_p=0.95, max_tokens=160, seed=300 + k
                            ),
                            structure=spec,
                        )
                    )
    return out


STAGES = ("actor", "judge", "meta")


def one_run(parallel: int, k: int, n: int, fixed: dict[str, Any]) -> dict[str, Any]:
    from mrtui.backends.base import Completion
    from mrtui.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(MODEL, n_ctx=4096, parallel=parallel)
    res: dict[str, Any] = {"failures": 0}

    def stage(name: str, requests: list[Any]) -> list[Any]:
        t0 = time.perf_counter()
        done = list(backend.generate(requests))
        res[f"{name}_s"] = time.perf_counter() - t0
        comps = [r for r in done if isinstance(r, Completion)]
        res[f"{name}_tokens"] = sum(c.completion_tokens for c in comps)
        res[f"{name}_units"] = len(comps)
        res["failures"] += len(done) - len(comps)
        return comps

    try:
        acts, prompts = requests(k)
        comps = stage("actor", acts)
        # later stages read the first run's texts, so every side gets the same requests
        fixed.setdefault("answers", {c.request_id: c.text for c in comps if c.index == 0})
        jcomps = stage("judge", judges(prompts, fixed["answers"], n))
        judged: dict[str, list[str]] = {}
        for c in sorted(jcomps, key=lambda c: (c.request_id, c.index)):
            judged.setdefault(c.request_id, []).append(c.text)
        fixed.setdefault("judged", judged)
        stage("meta", metas(prompts, fixed["answers"], fixed["judged"]))
    finally:
        backend.close()
        gc.collect()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--parallel", type=int, nargs="+", default=[16])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--n", type=int, default=3)
    args = ap.parse_args()

    runs: dict[int, list[dict[str, Any]]] = {1: []}
    for p in args.parallel:
        runs[p] = []
    fixed: dict[str, Any] = {}
    order = []
    for r in range(args.repeats):
        sides = [1, *args.parallel]
        order += sides if r % 2 == 0 else sides[::-1]
    for p in order:
        res = one_run(p, args.k, args.n, fixed)
        runs[p].append(res)
        print(p, res, flush=True)

    def rate(rs: list[dict[str, Any]], stages: tuple[str, ...]) -> float:
        return median(
            [
                sum(x[f"{st}_tokens"] for st in stages) / sum(x[f"{st}_s"] for st in stages)
                for x in rs
            ]
        )

    columns = [(st,) for st in STAGES] + [STAGES]
    base = [rate(runs[1], c) for c in columns]
    rows = []
    for p, rs in runs.items():
        row: list[Any] = ["sequential" if p == 1 else f"batched, parallel {p}"]
        for c, b in zip(columns, base, strict=True):
            row += [f"{rate(rs, c):.1f}", f"{rate(rs, c) / b:.2f}×"]
        row += [f"{median([sum(x[f'{st}_s'] for st in STAGES) for x in rs]):.1f}"]
        row += [sum(x["failures"] for x in rs)]
        rows.append(row)
    units = {st: runs[1][0][f"{st}_units"] for st in STAGES}
    body = "\n".join(
        [
            "## Batched llama.cpp decoding — `bench/bench_batch.py`",
            "",
            f"{today()} · `{command()}` · {machine()} · {load()}",
            "",
            f"Model {MODEL} (2 threads). Requests: K = {args.k} actor samples for each of the 9 "
            f"demo prompts (≤ 256 tokens, T = 0.8; {units['actor']} answers), N = {args.n} "
            "structured judgements of the first answer to each prompt "
            f"({units['judge']}), and meta-verdicts on every ordered pair of those judgements "
            f"({units['meta']}), with the demo's judge and meta-judge settings. Medians of "
            f"{args.repeats} runs per side, sides alternating; tokens/s = generated tokens ÷ "
            "wall time.",
            "",
            table(
                [
                    "decoding",
                    "actor tok/s",
                    "× seq",
                    "judge tok/s",
                    "× seq",
                    "meta tok/s",
                    "× seq",
                    "all tok/s",
                    "× seq",
                    "wall s",
                    "failures",
                ],
                rows,
            ),
        ]
    )
    update_section("batch", body)
    print(body)


if __name__ == "__main__":
    main()
