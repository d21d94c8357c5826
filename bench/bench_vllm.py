"""One iteration's generation through in-process vLLM versus the OpenAI API against vllm serve.

The check a user with a CUDA GPU runs (vLLM needs one; this script exits with a message
without it). Install both backends (``pip install -e '.[vllm,openai]'``), then start the server,
leaving GPU memory for the in-process engine:

    vllm serve Qwen/Qwen2.5-0.5B-Instruct --gpu-memory-utilization 0.4 --seed 0
    .venv/bin/python bench/bench_vllm.py --endpoint http://localhost:8000/v1

Work: the actor and judge stages of one Meta-Rewarding iteration, built the way the loop builds
them (the shipped actor and judge templates, the demo prompts, the default iteration settings,
per-unit seeds): P prompts with K responses each (one request with ``n=K`` per prompt), then N
judgements of every response (N requests with their own seeds, structured judging unless
``--free-text``). Both sides get the same requests: the judge requests are built once, from the
in-process side's responses. Each side makes one warm-up call first (not timed).

Measured: wall time of each stage and generated tokens per second, in-process
(``VLLMBackend``, one ``LLM.generate`` per stage) and through the OpenAI backend (registry name
"openai") against the server; and the prompt tokens the in-process judge stage really
evaluated (prefix caching: the N judgements of one response share its prompt).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command, demo_prompts, load, machine, table, today, update_section

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
NEEDS = "bench_vllm.py needs vLLM and a CUDA GPU: pip install 'mrtui[vllm]' on a GPU machine"


def require_vllm_and_gpu() -> None:
    """Exit with a message unless vLLM is installed and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        sys.exit(f"{NEEDS} (vllm is not installed in {sys.prefix})")
    try:
        import torch
    except ImportError:
        sys.exit(f"{NEEDS} (torch is not installed)")
    if not torch.cuda.is_available():
        sys.exit(f"{NEEDS} (torch {torch.__version__} sees no CUDA GPU)")


# ---------------------------------------------------------------------------------------------
# requests, as the loop builds them


def actor_requests(prompts: Sequence[str], settings: Any) -> list[Any]:
    from mrtui.backends.base import Message, Request, SamplingParams
    from mrtui.loop.prompts import load_template
    from mrtui.loop.stages import unit_seed
    from mrtui.store.events import content_key

    tpl = load_template("actor")
    out = []
    for i, prompt in enumerate(prompts):
        key = content_key("resp", i, prompt)
        params = SamplingParams(
            n=settings.k,
            temperature=settings.actor_temperature,
            top_p=settings.actor_top_p,
            max_tokens=settings.actor_max_tokens,
            seed=unit_seed(settings.seed, key),
        )
        out.append(Request(key, (Message("user", tpl.render(prompt=prompt)),), params))
    return out


def judge_requests(
    prompts: Sequence[str], responses: dict[tuple[int, int], str], settings: Any, structured: bool
) -> list[Any]:
    from mrtui.backends.base import Message, Request, SamplingParams
    from mrtui.loop.prompts import load_template
    from mrtui.loop.stages import SCORE_CHOICES, SCORE_LEAD, final_line, unit_seed
    from mrtui.store.events import content_key

    tpl = load_template("judge")
    spec = (
        final_line(SCORE_LEAD, SCORE_CHOICES, settings.rationale_max_chars) if structured else None
    )
    out = []
    for (i, k), response in sorted(responses.items()):
        text = tpl.render(question=prompts[i], response=response)
        for j in range(settings.n):
            key = content_key("judg", i, k, j, response)
            params = SamplingParams(
                temperature=settings.judge_temperature,
                top_p=settings.judge_top_p,
                max_tokens=settings.judge_max_tokens,
                seed=unit_seed(settings.seed, key),
            )
            out.append(Request(key, (Message("user", text),), params, structure=spec))
    return out


# ---------------------------------------------------------------------------------------------
# running a stage


def warm_up(backend: Any) -> None:
    from mrtui.backends.base import Failure, Message, Request, SamplingParams

    req = Request(
        "warmup",
        (Message("user", "Say hello."),),
        SamplingParams(temperature=0.0, top_p=1.0, max_tokens=8, seed=0),
    )
    (result,) = list(backend.generate([req]))
    if isinstance(result, Failure):
        raise RuntimeError(result.error)


def run_stage(backend: Any, requests: Sequence[Any]) -> dict[str, Any]:
    """Send a stage's requests as one batch; time it and sum what came back."""
    from mrtui.backends.base import Completion

    gc.collect()
    t0 = time.perf_counter()
    results = list(backend.generate(requests))
    wall = time.perf_counter() - t0
    done = [r for r in results if isinstance(r, Completion)]
    known = [c.prompt_tokens_evaluated for c in done if c.prompt_tokens_evaluated is not None]
    return {
        "wall": wall,
        "completions": len(done),
        "failures": [r for r in results if not isinstance(r, Completion)],
        "gen": sum(c.completion_tokens for c in done),
        "prompt": sum(c.prompt_tokens for c in done),
        "evaluated": sum(known) if len(known) == len(done) else None,
        "texts": {(c.request_id, c.index): c.text for c in done},
    }


def responses_of(actor_reqs: Sequence[Any], actor: dict[str, Any]) -> dict[tuple[int, int], str]:
    """(prompt number, sample index) → response text, from an actor stage's results."""
    number = {r.id: i for i, r in enumerate(actor_reqs)}
    return {(number[rid], index): text for (rid, index), text in actor["texts"].items()}


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default=DEFAULT_MODEL, help="HF repo id or folder (both sides)")
    ap.add_argument(
        "--endpoint",
        required=True,
        help="the OpenAI-compatible URL of a `vllm serve MODEL` started beforehand",
    )
    ap.add_argument("--prompts", type=int, default=9, help="P: demo prompts (at most 9)")
    ap.add_argument("--k", type=int, default=None, help="responses per prompt (default: loop's)")
    ap.add_argument("--n", type=int, default=None, help="judgements per response (loop's)")
    ap.add_argument("--free-text", action="store_true", help="judge without structured output")
    ap.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.4,
        help="share of GPU memory the in-process engine takes (the server holds its own)",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="requests the OpenAI backend keeps in flight (enough for the server to batch)",
    )
    ap.add_argument("--tensor-parallel-size", type=int, default=1)
    ap.add_argument("--max-model-len", type=int, default=4096)
    args = ap.parse_args()
    require_vllm_and_gpu()

    from dataclasses import replace

    import vllm

    from mrtui.backends.registry import load_backend
    from mrtui.loop.settings import IterationSettings

    settings = IterationSettings()
    settings = replace(
        settings,
        k=args.k if args.k is not None else settings.k,
        n=args.n if args.n is not None else settings.n,
        seed=0,
    )
    structured = not args.free_text
    prompts = demo_prompts(args.prompts)
    load_start = load()

    # The server side first answers one structured request: it must be up, and able to
    # constrain (else both sides judge in free text).
    from mrtui.backends.base import UnsupportedFeature

    try:
        server = load_backend(
            "openai", args.model, endpoints=[args.endpoint], concurrency=args.concurrency
        )
        warm_up(server)
    except Exception as e:
        sys.exit(
            f"the OpenAI backend could not use {args.endpoint} ({type(e).__name__}: {e}); start "
            f"the server first: vllm serve {args.model} --gpu-memory-utilization 0.4 --seed 0"
        )
    note = ""
    if structured:
        probe = judge_requests(prompts[:1], {(0, 0): "Paris."}, replace(settings, n=1), True)
        try:
            list(server.generate(probe))
        except UnsupportedFeature as e:
            structured = False
            note = f"The OpenAI backend cannot constrain output ({e}): judged in free text. "

    # In-process vLLM: actor, then judges of its responses; then give the GPU memory back.
    local = load_backend(
        "vllm",
        args.model,
        gpu_memory_utilization=args.gpu_memory_utilization,
        tensor_parallel_size=args.tensor_parallel_size,
        max_model_len=args.max_model_len,
    )
    try:
        warm_up(local)
        actor_reqs = actor_requests(prompts, settings)
        runs: dict[str, dict[str, Any]] = {"vllm": {}, "openai": {}}
        runs["vllm"]["actor"] = run_stage(local, actor_reqs)
        judge_reqs = judge_requests(
            prompts, responses_of(actor_reqs, runs["vllm"]["actor"]), settings, structured
        )
        runs["vllm"]["judge"] = run_stage(local, judge_reqs)
        info = local.info()
    finally:
        local.close()
    try:
        runs["openai"]["actor"] = run_stage(server, actor_reqs)
        runs["openai"]["judge"] = run_stage(server, judge_reqs)
        server_info = server.info()
    finally:
        server.close()

    def rate(side: str, stage: str | None = None) -> float:
        stages = [stage] if stage else ["actor", "judge"]
        gen = sum(runs[side][s]["gen"] for s in stages)
        return gen / sum(runs[side][s]["wall"] for s in stages)

    rows = []
    for stage in ("actor", "judge"):
        v, o = runs["vllm"][stage], runs["openai"][stage]
        rows.append(
            [
                f"{stage} stage: s",
                f"{v['wall']:.2f}",
                f"{o['wall']:.2f}",
                "",
            ]
        )
        rows.append(
            [
                f"{stage} stage: tokens generated, tokens/s",
                f"{v['gen']}, {rate('vllm', stage):.0f}",
                f"{o['gen']}, {rate('openai', stage):.0f}",
                f"**{rate('vllm', stage) / rate('openai', stage):.2f}**",
            ]
        )
    ratio = rate("vllm") / rate("openai")
    rows.append(
        [
            "**both stages: tokens/s**",
            f"{rate('vllm'):.0f}",
            f"{rate('openai'):.0f}",
            f"**{ratio:.2f}**",
        ]
    )
    tbl = table(
        ["", "in-process vLLM", "OpenAI API → vllm serve", "tokens/s in-process / server"], rows
    )
    print(tbl)

    failures = {
        f"{side} {stage}": len(runs[side][stage]["failures"])
        for side in runs
        for stage in ("actor", "judge")
        if runs[side][stage]["failures"]
    }
    for side in runs:
        for stage in ("actor", "judge"):
            for f in runs[side][stage]["failures"][:3]:
                print(f"{side} {stage} failure: {f.request_id}: {f.error}", file=sys.stderr)
    same = sum(
        1
        for stage in ("actor", "judge")
        for unit, text in runs["vllm"][stage]["texts"].items()
        if runs["openai"][stage]["texts"].get(unit) == text
    )
    units = sum(len(runs["vllm"][s]["texts"]) for s in ("actor", "judge"))
    judge = runs["vllm"]["judge"]
    cache = (
        f"{judge['evaluated']} of {judge['prompt']} judge prompt tokens evaluated in-process "
        f"({judge['evaluated'] / judge['prompt']:.1%}; the rest came from the prefix cache)"
        if judge["evaluated"] is not None and judge["prompt"]
        else "vLLM did not report cached prompt tokens"
    )
    body = f"""## vLLM in-process vs OpenAI API → vllm serve — `bench/bench_vllm.py`

- Date: {today()}
- Machine: {machine()}; GPU: {_gpu()}; vLLM {vllm.__version__}
- Other work on the machine: {load_start} at start, {load()} at end
- Command: `{command()}`
- Model: {args.model}; in-process: gpu_memory_utilization {args.gpu_memory_utilization},
  tensor_parallel_size {args.tensor_parallel_size}, max_model_len {info.extra["max_model_len"]},
  prefix caching {info.extra["prefix_caching"]}; server: {args.endpoint}
  ({server_info.backend} backend {server_info.backend_version}, concurrency {args.concurrency})
- Work: {len(prompts)} prompts × K={settings.k} responses (one request with n=K per prompt),
  then N={settings.n} judgements per response ({len(judge_reqs)} requests,
  {"structured judging" if structured else "free-text judging"}), max_tokens
  {settings.actor_max_tokens} / {settings.judge_max_tokens}, temperature
  {settings.actor_temperature} / top_p {settings.actor_top_p}, per-unit seeds. Both sides got
  the same requests; one warm-up call each, not timed. One run.

{tbl}

{note}Ratio > 1: in-process vLLM generates faster than the same engine behind its HTTP
server. {same} of {units} unit texts are identical on both sides. Prefix caching: {cache}.
Failures: {failures or "none"}.
"""
    update_section("bench_vllm", body)
    print(f"in-process / server tokens/s: {ratio:.2f}; RESULTS.md updated")


def _gpu() -> str:
    import torch

    n = torch.cuda.device_count()
    return f"{n} × {torch.cuda.get_device_name(0)}" if n else "none"


if __name__ == "__main__":
    main()
