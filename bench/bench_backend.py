"""Stage wall time through mrtui versus raw llama-cpp-python on the same requests.

    .venv/bin/python bench/bench_backend.py               # 4 prompts, K=2, N=3, 48 tokens
    .venv/bin/python bench/bench_backend.py --repeats 3   # ABBA... order, 3 runs per side

Measured side: ``mrtui.loop.stages.Stages`` (actor stage, the ``Runner.responses_to_judge``
query, judge stage) with ``LlamaCppBackend`` and a real ``EventLog`` in a temporary folder.
Baseline side: a plain loop over one ``llama_cpp.Llama`` that renders the same chat prompts
with the model file's own chat template, tokenizes them, and calls ``create_completion`` with
the same sampling settings and per-unit seeds, in the same order (prompts sorted by their
tokens, which is the order LlamaCppBackend runs a batch in, so both sides reuse the same
cached prefixes). Each run loads a fresh model (not timed) and makes one identical greedy
warm-up call, so both sides start from the same KV state; the seeds the baseline uses are the
ones the first mrtui run logged. Runs alternate sides (mrtui, raw, raw, mrtui, ...).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    command,
    load,
    machine,
    median,
    start_iteration,
    table,
    today,
    update_section,
    verdict,
)

MODEL_NAME = "qwen2.5-coder-0.5b-instruct"
PROMPTS = (
    "Write a Python function that reverses a string.",
    "What is the capital of France? Answer in one sentence.",
    "Explain what a hash table is in two sentences.",
    "Give three tips for writing readable code.",
)
RUN_ID = "bench"
WARMUP = "Say hello."
TARGET_RATIO = 1.05
SAMPLER = {"top_k": 0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}


def settings(k: int, n: int, max_tokens: int, prompts: Path) -> Any:
    from mrtui.loop.settings import IterationSettings, RunSettings

    return RunSettings(
        run_id=RUN_ID,
        prompts=str(prompts),
        # mrtui's own sampling defaults (the paper's 0.8 / 0.95); the raw side reads the same
        defaults=IterationSettings(
            k=k, n=n, actor_max_tokens=max_tokens, judge_max_tokens=max_tokens, seed=0
        ),
    )


def _threads() -> int:
    return len(os.sched_getaffinity(0))


# ---------------------------------------------------------------------------------------------
# mrtui side


def run_mrtui(
    folder: Path, run: int, k: int, n: int, max_tokens: int, flush_interval: float | None = None
) -> dict[str, Any]:
    from mrtui.backends.base import Message, Request, SamplingParams
    from mrtui.backends.llamacpp import LlamaCppBackend
    from mrtui.backends.models import resolve_model
    from mrtui.loop.runner import Runner
    from mrtui.loop.stages import ModelIdentity, Stages
    from mrtui.store import EventLog

    resolved = resolve_model(MODEL_NAME)
    model = ModelIdentity(resolved.model_id, resolved.sha256)
    prompts_file = folder / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    rs = settings(k, n, max_tokens, prompts_file)
    s = rs.for_iteration(1)
    backend = LlamaCppBackend(MODEL_NAME, n_threads=_threads())
    try:
        warm = Request(
            "warmup",
            (Message("user", WARMUP),),
            SamplingParams(temperature=0.0, top_p=1.0, max_tokens=4, seed=0),
        )
        list(backend.generate([warm]))
        db = folder / f"mrtui-{run}.duckdb"
        log = (
            EventLog(db) if flush_interval is None else EventLog(db, flush_interval=flush_interval)
        )
        runner = Runner(log, rs, backend_factory=lambda *_: backend, resolver=lambda _: model)
        prompts = runner.configure()  # setup, not timed: prompts, templates, iteration
        templates = runner.register_templates(s)
        start_iteration(runner, 1, s, model)
        log.flush()
        stages = Stages(log, RUN_ID, 1, s, model, templates, lambda: backend)
        gc.collect()
        t0 = time.perf_counter()
        actor = stages.actor(prompts)
        t1 = time.perf_counter()
        responses, judged = runner.responses_to_judge(1, s, templates["judge"].sha256, model.sha256)
        judge = stages.judge(responses, judged)
        log.flush()
        t2 = time.perf_counter()
        rows = log.query(
            "SELECT e.event_type, p.prompt, e.payload->>'$.sample_index', r.sample_index, "
            "e.payload->>'$.judge_index', e.text, e.payload->>'$.seed', "
            "e.payload->>'$.completion_tokens', e.payload->>'$.prompt_tokens', "
            "e.payload->>'$.prompt_tokens_evaluated', e.parent_key, e.seq "
            "FROM events e LEFT JOIN responses r ON r.response_key = e.parent_key "
            "LEFT JOIN prompts p ON p.prompt_key = coalesce(r.prompt_key, e.parent_key) "
            "WHERE e.event_type IN ('ResponseGenerated', 'JudgementRecorded') ORDER BY e.seq"
        )
        log.close()
    finally:
        backend.close()
    assert actor.failed == 0 and judge.failed == 0, (actor.failures, judge.failures)
    out: dict[str, Any] = {
        "wall": t2 - t0,
        "actor": t1 - t0,
        "judge": t2 - t1,
        "texts": {},
        "seeds": {},
        "gen": 0,
        "evaluated": 0,
        "judgements": [],
    }
    for kind, prompt, k_resp, k_judged, j, text, seed, ct, pt, pte, parent, _ in rows:
        if kind == "ResponseGenerated":
            unit: tuple[Any, ...] = (prompt, int(k_resp))
        else:
            unit = (prompt, int(k_judged), int(j))
            out["judgements"].append((parent, int(pt), int(pte)))
        out["texts"][unit] = text
        out["seeds"][unit] = int(seed)
        out["gen"] += int(ct)
        out["evaluated"] += int(pte)
    return out


# ---------------------------------------------------------------------------------------------
# raw llama-cpp-python side


class _EvalCounter:
    """Size of the first ``eval`` after ``arm()``: the prompt tokens really evaluated."""

    def __init__(self, llm: Any) -> None:
        self.inner, self.first, self.armed = llm.eval, 0, False
        llm.eval = self

    def arm(self) -> None:
        self.first, self.armed = 0, True

    def __call__(self, tokens: Sequence[int]) -> None:
        if self.armed:
            self.first, self.armed = len(tokens), False
        self.inner(tokens)


def run_raw(seeds: dict[tuple[Any, ...], int], s: Any) -> dict[str, Any]:
    """The same work as the mrtui side, through llama-cpp-python directly: ``s`` is that side's
    IterationSettings (K, N, token limits, temperatures and top-p), ``seeds`` its unit seeds."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from mrtui.backends.models import resolve_model

    path = resolve_model(MODEL_NAME).path
    judge_template = (
        (Path(__file__).resolve().parents[1] / "assets" / "templates" / "judge.txt")
        .read_text(encoding="utf-8")
        .rstrip("\n")
    )
    threads = _threads()
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        verbose=False,
    )
    try:
        eos = llm.detokenize([llm.token_eos()], special=True).decode()
        fmt = Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=eos,
            bos_token="",
            add_generation_prompt=True,
        )
        counter = _EvalCounter(llm)

        def tokens(user: str) -> list[int]:
            text = fmt(messages=[{"role": "user", "content": user}]).prompt
            return llm.tokenize(text.encode(), add_bos=False, special=True)

        def complete(
            toks: list[int], seed: int, temperature: float, top_p: float, limit: int
        ) -> tuple[str, int, int]:
            counter.arm()
            out = llm.create_completion(
                prompt=toks,
                max_tokens=limit,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                **SAMPLER,
            )
            return (out["choices"][0]["text"], out["usage"]["completion_tokens"], counter.first)

        complete(tokens(WARMUP), 0, 0.0, 1.0, 4)
        k, n = s.k, s.n
        gc.collect()
        res: dict[str, Any] = {"texts": {}, "gen": 0, "evaluated": 0, "prompt_tokens": {}}
        t0 = time.perf_counter()
        jobs = [(tokens(p), (p, i)) for p in PROMPTS for i in range(k)]
        jobs.sort(key=lambda j: j[0])
        for toks, unit in jobs:
            text, ct, ev = complete(
                toks, seeds[unit], s.actor_temperature, s.actor_top_p, s.actor_max_tokens
            )
            res["texts"][unit] = text
            res["gen"] += ct
            res["evaluated"] += ev
        t1 = time.perf_counter()
        jobs = []
        for p in PROMPTS:
            for i in range(k):
                user = judge_template.replace("{question}", p).replace(
                    "{response}", res["texts"][(p, i)]
                )
                toks = tokens(user)
                jobs += [(toks, (p, i, j)) for j in range(n)]
        jobs.sort(key=lambda j: j[0])
        for toks, unit in jobs:
            text, ct, ev = complete(
                toks, seeds[unit], s.judge_temperature, s.judge_top_p, s.judge_max_tokens
            )
            res["texts"][unit] = text
            res["gen"] += ct
            res["evaluated"] += ev
            res["prompt_tokens"][unit] = len(toks)
        t2 = time.perf_counter()
    finally:
        llm.close()
    res.update(wall=t2 - t0, actor=t1 - t0, judge=t2 - t1)
    return res


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument(
        "--flush-interval",
        type=float,
        default=None,
        help="what-if: EventLog flush_interval for the mrtui side (default: EventLog's own)",
    )
    args = ap.parse_args()
    load_start = load()
    k, n, mt = args.k, args.n, args.max_tokens
    order = []
    for i in range(args.repeats):  # ABBA ABBA ...
        order += ["mrtui", "raw"] if i % 2 == 0 else ["raw", "mrtui"]
    runs: dict[str, list[dict[str, Any]]] = {"mrtui": [], "raw": []}
    with tempfile.TemporaryDirectory(prefix="mrtui-bench-backend-") as d:
        for i, side in enumerate(order):
            if side == "mrtui":
                r = run_mrtui(Path(d), i, k, n, mt, args.flush_interval)
            else:
                r = run_raw(runs["mrtui"][0]["seeds"], settings(k, n, mt, Path(d)).defaults)
            runs[side].append(r)
            print(
                f"run {i + 1}/{len(order)} {side} ({load()}): {r['wall']:.2f} s "
                f"(actor {r['actor']:.2f}, judge {r['judge']:.2f}), {r['gen']} tokens "
                f"generated, {r['evaluated']} prompt tokens evaluated",
                flush=True,
            )
    m, b = runs["mrtui"], runs["raw"]
    ref = m[0]["texts"]
    same = all(r["texts"] == ref for r in m + b)
    mismatched = sum(1 for r in m + b for u in ref if r["texts"].get(u) != ref[u])
    med = {
        side: {x: median([r[x] for r in rs]) for x in ("wall", "actor", "judge")}
        for side, rs in runs.items()
    }
    ratio = med["mrtui"]["wall"] / med["raw"]["wall"]
    pair_ratios = [mr["wall"] / br["wall"] for mr, br in zip(m, b, strict=True)]
    rows = [
        [
            "actor stage",
            f"{med['raw']['actor']:.2f}",
            f"{med['mrtui']['actor']:.2f}",
            f"{med['mrtui']['actor'] / med['raw']['actor']:.3f}",
        ],
        [
            "judge stage (+ responses query)",
            f"{med['raw']['judge']:.2f}",
            f"{med['mrtui']['judge']:.2f}",
            f"{med['mrtui']['judge'] / med['raw']['judge']:.3f}",
        ],
        [
            "**both stages**",
            f"{med['raw']['wall']:.2f}",
            f"{med['mrtui']['wall']:.2f}",
            f"**{ratio:.3f}**",
        ],
        ["tokens generated (per run)", str(b[0]["gen"]), str(m[0]["gen"]), ""],
        ["prompt tokens evaluated (per run)", str(b[0]["evaluated"]), str(m[0]["evaluated"]), ""],
    ]
    tbl = table(["", "raw llama-cpp-python s", "mrtui Stages s", "mrtui / raw"], rows)
    print(tbl)

    # N judgements of one response: prompt evaluations.
    by_resp: dict[str, list[tuple[int, int]]] = {}
    for parent, pt, pte in m[0]["judgements"]:
        by_resp.setdefault(parent, []).append((pt, pte))
    jrows, ok_share = [], True
    for idx, (_, js) in enumerate(by_resp.items()):
        pt = js[0][0]
        evs = [e for _, e in js]
        ok_share &= all(e <= 1 for e in evs[1:]) and evs[0] <= pt
        jrows.append(
            [f"response {idx + 1}", str(pt), " + ".join(map(str, evs)), str(sum(evs)), str(n * pt)]
        )
    jtbl = table(
        [
            "",
            "judge prompt tokens",
            f"evaluated by its {n} judgements (log order)",
            "sum",
            f"{n} × prompt",
        ],
        jrows,
    )
    print(jtbl)
    total_pt = sum(js[0][0] for js in by_resp.values())
    total_ev = sum(e for js in by_resp.values() for _, e in js)
    ok = ratio <= TARGET_RATIO
    min_ratio = min(r["wall"] for r in m) / min(r["wall"] for r in b)
    walls = "; ".join(
        f"{side} " + ", ".join(f"{r['wall']:.2f}" for r in rs) for side, rs in runs.items()
    )
    spread = (
        f"Wall times per run (s): {walls}. Ratio of the fastest runs (least disturbed by other "
        f"work): {min_ratio:.3f}; per-pair ratios in run order: "
        + ", ".join(f"{x:.3f}" for x in pair_ratios)
    )
    s = settings(k, n, mt, Path(".")).defaults
    body = f"""## Backend — `bench/bench_backend.py`

- Date: {today()}
- Machine: {machine()}; llama-cpp-python {_llama_version()}, {_threads()} threads
- Other work on the machine: {load_start} at start, {load()} at end
- Command: `{command()}`
- Work: {len(PROMPTS)} prompts, K={k} responses each, N={n} judgements per response, max_tokens
  {mt}, temperature {s.actor_temperature} / top_p {s.actor_top_p} (mrtui's defaults) with
  mrtui's per-unit seeds, model {MODEL_NAME} (Q4_K_M).
  {args.repeats} timed runs per side in ABBA order, median.

Baseline: a plain loop over `llama_cpp.Llama.create_completion` (prompt rendered with the
model file's chat template, tokenized, same sampler settings and seeds, same order).
Measured: `Stages.actor` + `Runner.responses_to_judge` + `Stages.judge` with `LlamaCppBackend`
and an `EventLog` writing to a temporary DuckDB file, up to the last event flushed. Model load
and one identical greedy warm-up call per run are not timed.

{tbl}

Equal work: {
        "every run of both sides generated exactly the same texts"
        if same
        else f"{mismatched} unit texts differed between runs (see note)"
    }
({len(ref)} units; {b[0]["gen"]} vs {m[0]["gen"]} tokens generated,
{b[0]["evaluated"]} vs {m[0]["evaluated"]} prompt tokens evaluated, raw vs mrtui).
{spread}.

**Target mrtui / raw ≤ {TARGET_RATIO:.2f}: {verdict(ok)} ({ratio:.3f}).**

### N judgements of one response cost one prompt evaluation

From the `prompt_tokens_evaluated` field of the first mrtui run's JudgementRecorded events
(LlamaCppBackend runs a response's N judge requests back to back; llama.cpp reuses the cached
prompt and re-evaluates only the last token). The first judgement of a response also reuses
the rubric prefix it shares with the previous response's prompt.

{jtbl}

Over all {len(by_resp)} responses: {total_ev} prompt tokens evaluated for {n * len(by_resp)}
judgements whose prompts total {n * total_pt} tokens ({total_ev / (n * total_pt):.1%}; one
evaluation per response would be {total_pt}, {total_pt / (n * total_pt):.1%}).
**Target (judgements 2..N of a response evaluate ≤ 1 token each): {verdict(ok_share)}.**
"""
    name = "bench_backend"
    if args.flush_interval is not None:
        name += f"-flush{args.flush_interval:g}"
        body = body.replace(
            "## Backend —", f"## Backend (what-if: flush_interval={args.flush_interval:g}) —"
        )
    update_section(name, body)


def _llama_version() -> str:
    try:
        import llama_cpp

        return llama_cpp.__version__
    except ImportError:
        return "?"


if __name__ == "__main__":
    main()
