"""Batched llama.cpp decoding against the sequential path, on the same requests.

    .venv/bin/python bench/bench_batch.py                 # parallel 16, 2 repeats per side
    .venv/bin/python bench/bench_batch.py --parallel 8 16 --repeats 3

The requests are one demo-sized stage pair on the packaged Qwen2.5-Coder 0.5B: the actor's K
samples for each of the nine shipped demo prompts (temperature 0.8, 256 tokens at most), then
N structured judgements of the first answer to each prompt (the demo's judge prompt and
settings). Each side is a fresh ``LlamaCppBackend`` (load not timed) given the whole batch at
once, as a stage gives it; sides alternate (sequential, batched, batched, sequential, ...).
Throughput is generated tokens per second of wall time; the ratio batched ÷ sequential is the
figure that counts (the machine is shared and absolute rates move). Runs llama.cpp: run it
alone on the machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, command, load, machine, median, table, today, update_section

MODEL = "qwen2.5-coder-0.5b-instruct"


def requests(k: int, n: int) -> tuple[list[Any], list[Any]]:
    from mrtui.backends.base import Message, Request, SamplingParams
    from mrtui.loop.prompts import load_template

    actor = load_template("actor")
    prompts = [
        json.loads(line)["prompt"]
        for line in (REPO / "assets" / "prompts" / "demo.jsonl").read_text().splitlines()
        if line.strip()
    ]
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


def one_run(parallel: int, k: int, n: int, answers: dict[str, str] | None) -> dict[str, Any]:
    from mrtui.backends.base import Completion
    from mrtui.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(MODEL, n_ctx=4096, parallel=parallel)
    try:
        acts, prompts = requests(k, n)
        t0 = time.perf_counter()
        done = list(backend.generate(acts))
        t_act = time.perf_counter() - t0
        comps = [r for r in done if isinstance(r, Completion)]
        firsts = answers or {c.request_id: c.text for c in comps if c.index == 0}
        jreq = judges(prompts, firsts, n)
        t0 = time.perf_counter()
        jdone = list(backend.generate(jreq))
        t_judge = time.perf_counter() - t0
        jcomps = [r for r in jdone if isinstance(r, Completion)]
    finally:
        backend.close()
        gc.collect()
    return {
        "actor_tokens": sum(c.completion_tokens for c in comps),
        "actor_s": t_act,
        "actor_units": len(comps),
        "judge_tokens": sum(c.completion_tokens for c in jcomps),
        "judge_s": t_judge,
        "judge_units": len(jcomps),
        "failures": len(done) - len(comps) + len(jdone) - len(jcomps),
        "answers": firsts,
    }


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
    answers: dict[str, str] | None = None
    order = []
    for r in range(args.repeats):
        sides = [1, *args.parallel]
        order += sides if r % 2 == 0 else sides[::-1]
    for p in order:
        res = one_run(p, args.k, args.n, answers)
        answers = answers or res["answers"]  # every run judges the same answers
        runs[p].append(res)
        print(p, {k: v for k, v in res.items() if k != "answers"}, flush=True)

    def rate(rs: list[dict[str, Any]], stage: str) -> float:
        return median([x[f"{stage}_tokens"] / x[f"{stage}_s"] for x in rs])

    base = {s: rate(runs[1], s) for s in ("actor", "judge")}
    rows = []
    for p, rs in runs.items():
        both = median(
            [(x["actor_tokens"] + x["judge_tokens"]) / (x["actor_s"] + x["judge_s"]) for x in rs]
        )
        base_both = median(
            [
                (x["actor_tokens"] + x["judge_tokens"]) / (x["actor_s"] + x["judge_s"])
                for x in runs[1]
            ]
        )
        rows.append(
            (
                "sequential" if p == 1 else f"batched, parallel {p}",
                f"{rate(rs, 'actor'):.1f}",
                f"{rate(rs, 'actor') / base['actor']:.2f}×",
                f"{rate(rs, 'judge'):.1f}",
                f"{rate(rs, 'judge') / base['judge']:.2f}×",
                f"{both:.1f}",
                f"{both / base_both:.2f}×",
                f"{median([x['actor_s'] + x['judge_s'] for x in rs]):.1f}",
                sum(x["failures"] for x in rs),
            )
        )
    body = "\n".join(
        [
            "## Batched llama.cpp decoding — `bench/bench_batch.py`",
            "",
            f"{today()} · `{command()}` · {machine()} · {load()}",
            "",
            f"Model {MODEL} (2 threads). Requests: K = {args.k} actor samples for each of the 9 "
            f"demo prompts (≤ 256 tokens, T = 0.8), then N = {args.n} structured judgements of "
            "the first answer to each prompt (the demo's judge settings). Medians of "
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
                    "both tok/s",
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
