"""Batched llama.cpp decoding against the sequential path, on the requests the demo sends.

    .venv/bin/python bench/bench_batch.py                 # parallel 16, 2 repeats per side
    .venv/bin/python bench/bench_batch.py --parallel 8 16 --repeats 3
    .venv/bin/python bench/bench_batch.py --prompts 4 --k 2 --n 2 --repeats 1   # a quick look

The requests are the ones ``mrtui demo`` sends in its first iteration, built by mrtui itself:
the demo preset (assets/presets/demo.toml) is loaded as ``mrtui demo`` loads it (with the
packaged prompts, ``--prompts`` of them per iteration, training off), and
``Runner.run_iteration`` runs iteration 1 once into a scratch log on the preset's backend,
wrapped in a recorder: an ``InferenceBackend`` that forwards every ``generate`` call and keeps
its requests under the stage the loop announced. ``--k`` and ``--n`` override the preset's.

So the stages measured are the ones the demo runs, in its order. Under the preset as shipped
(``actor_judging = "pairwise"`` without rationale, structured judging, expected judge and
meta scoring) they are: the actor's K samples per prompt; the judge's comparison of every
ordered pair of a prompt's responses (the choice right after the prompt, read from its
probabilities: one token each, mostly prompt evaluation); N structured judgements of every
response; and the meta-judge on every ordered pair of a response's eligible judgements (only
when the demo's first iteration meta-judges, ``Runner.meta_needed``). A stage that needs
follow-up requests (a fallback, or choice probabilities read after an answer) sent them as a
second batch; they are replayed as such.

Every side replays the recorded requests, so later stages read the recording run's texts and
every side gets the same requests: a fresh backend made as the CLI makes it (the preset's
backend options with ``parallel`` 1 or P; load not timed) is given each stage's batches in
turn, whole, as the stage gave them. Sides alternate (sequential, batched, batched,
sequential, ...). Throughput is generated tokens per second of wall time; the ratio batched ÷
sequential is the figure that counts (the machine is shared and absolute rates move). Runs
llama.cpp: run it alone on the machine.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, command, load, machine, median, table, today, update_section

from mrtui.backends.base import BackendInfo, EndpointEvent, InferenceBackend, Request, Result

PRESET = REPO / "assets" / "presets" / "demo.toml"
DEMO_PROMPTS = REPO / "assets" / "prompts" / "demo.jsonl"

# stage name -> the batches (one per generate call) its units were sent in
Recorded = dict[str, list[list[Request]]]


class RecordingBackend(InferenceBackend):
    """Forwards to ``inner`` and keeps every batch of requests under the stage that
    ``stage()`` names when it is sent."""

    def __init__(self, inner: InferenceBackend, stage: Callable[[], str | None]) -> None:
        self.inner = inner
        self.stage = stage
        self.batches: Recorded = {}

    def info(self) -> BackendInfo:
        return self.inner.info()

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        stage = self.stage()
        if stage is None:
            raise RuntimeError("a request was sent before any stage began")
        batch = list(requests)
        self.batches.setdefault(stage, []).append(batch)
        return self.inner.generate(batch)

    def require(self, features: Iterable[str]) -> None:
        self.inner.require(features)

    def endpoint_events(self) -> list[EndpointEvent]:
        return self.inner.endpoint_events()

    def close(self) -> None:
        self.inner.close()


def demo_settings(prompts: int, k: int | None, n: int | None, keep_training: bool = False) -> Any:
    """The demo preset as ``mrtui demo --prompts PROMPTS`` loads it, with ``k``/``n`` where
    given, and training off unless ``keep_training`` (the bench measures the data stages)."""
    from mrtui.loop.settings import load_config

    cli: dict[str, Any] = {"prompts": str(DEMO_PROMPTS), "prompts_per_iteration": prompts}
    if not keep_training:
        cli["train"] = False
    if k is not None:
        cli["k"] = k
    if n is not None:
        cli["n"] = n
    return load_config(PRESET, cli)


def record(run: Any) -> Recorded:
    """Run the demo's first iteration once and return the requests each stage sent."""
    from mrtui.loop.progress import StageBegan
    from mrtui.loop.runner import Runner, default_backend
    from mrtui.store import EventLog

    recorders: list[RecordingBackend] = []
    began: list[str] = []  # the stages the loop announced, in order

    def current() -> str | None:
        return began[-1] if began else None

    def factory(settings: Any, model: str) -> InferenceBackend:
        recorders.append(RecordingBackend(default_backend(settings, model), current))
        return recorders[-1]

    def follow(message: Any) -> None:
        if isinstance(message, StageBegan):
            began.append(message.stage)

    with tempfile.TemporaryDirectory(prefix="mrtui-bench-batch-") as d:
        log = EventLog(Path(d) / "record.duckdb")
        runner = Runner(log, run, backend_factory=factory, progress=follow)
        try:
            reports = runner.run_iteration(1, runner.configure())
        finally:
            runner.close()
            log.close()
    failed = [f"{r.stage}: {r.failures}" for r in reports if r.failed]
    if failed:
        raise RuntimeError("the recording run failed some units: " + "; ".join(failed))
    batches: Recorded = {}
    for r in recorders:
        for stage, sent in r.batches.items():
            batches.setdefault(stage, []).extend(sent)
    return batches


def one_run(run: Any, parallel: int, batches: Recorded) -> dict[str, Any]:
    from mrtui.backends.base import Completion
    from mrtui.loop.runner import default_backend

    options = {**run.backend_options, "parallel": parallel}
    backend = default_backend(replace(run, backend_options=options), run.model)
    res: dict[str, Any] = {"failures": 0}
    try:
        for stage, sent in batches.items():
            res[f"{stage}_s"] = 0.0
            res[f"{stage}_tokens"] = 0
            for batch in sent:
                t0 = time.perf_counter()
                done = list(backend.generate(batch))
                res[f"{stage}_s"] += time.perf_counter() - t0
                comps = [r for r in done if isinstance(r, Completion)]
                res[f"{stage}_tokens"] += sum(c.completion_tokens for c in comps)
                res["failures"] += len(done) - len(comps)
    finally:
        backend.close()
        gc.collect()
    return res


def describe(run: Any, batches: Recorded) -> str:
    """What each recorded stage sent, with the sampling settings its requests carry."""
    from mrtui.loop.stage_table import stage_spec

    s = run.for_iteration(1)
    parts = []
    for stage, sent in batches.items():
        temperature, top_p, max_tokens = stage_spec(stage).sampling_settings(s)
        extra = sum(len(b) for b in sent[1:])
        follow = f" + {extra} follow-ups" if extra else ""
        parts.append(
            f"{stage} {len(sent[0])} requests{follow} (T = {temperature:g}, top_p = {top_p:g}, "
            f"≤ {max_tokens} tokens)"
        )
    return "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parallel", type=int, nargs="+", default=[16])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=4, help="prompts drawn (mrtui demo --prompts)")
    ap.add_argument("--k", type=int, default=None, help="responses per prompt (the preset's)")
    ap.add_argument("--n", type=int, default=None, help="judgements per response (the preset's)")
    args = ap.parse_args()

    from mrtui.loop.runner import Runner

    run = demo_settings(args.prompts, args.k, args.n)
    s = run.for_iteration(1)
    batches = record(run)
    shipped = demo_settings(args.prompts, args.k, args.n, keep_training=True)
    if "meta" in batches and not Runner.meta_needed(1, shipped.for_iteration(1)):
        del batches["meta"]  # the demo, which trains, would not meta-judge
    stages = tuple(batches)
    print(describe(run, batches), flush=True)

    runs: dict[int, list[dict[str, Any]]] = {1: []}
    for p in args.parallel:
        runs[p] = []
    order = []
    for r in range(args.repeats):
        sides = [1, *args.parallel]
        order += sides if r % 2 == 0 else sides[::-1]
    for p in order:
        res = one_run(run, p, batches)
        runs[p].append(res)
        print(p, res, flush=True)

    def rate(rs: list[dict[str, Any]], cols: tuple[str, ...]) -> float:
        return median(
            [sum(x[f"{st}_tokens"] for st in cols) / sum(x[f"{st}_s"] for st in cols) for x in rs]
        )

    columns = [(st,) for st in stages] + [stages]
    base = [rate(runs[1], c) for c in columns]
    rows = []
    for p, rs in runs.items():
        row: list[Any] = ["sequential" if p == 1 else f"batched, parallel {p}"]
        for c, b in zip(columns, base, strict=True):
            row += [f"{rate(rs, c):.1f}", f"{rate(rs, c) / b:.2f}×" if b else "-"]
        row += [f"{median([sum(x[f'{st}_s'] for st in stages) for x in rs]):.1f}"]
        row += [sum(x["failures"] for x in rs)]
        rows.append(row)
    headers = ["decoding"]
    for st in stages:
        headers += [f"{st} tok/s", "× seq"]
    headers += ["all tok/s", "× seq", "wall s", "failures"]
    body = "\n".join(
        [
            "## Batched llama.cpp decoding — `bench/bench_batch.py`",
            "",
            f"{today()} · `{command()}` · {machine()} · {load()}",
            "",
            f"Model {run.model} ({run.backend}, the demo preset's options). Requests: what "
            f"`mrtui demo --prompts {args.prompts}` sends in iteration 1 (K = {s.k}, N = {s.n}, "
            f"actor_judging = {s.actor_judging}, judge scoring {s.judge_scoring}, meta scoring "
            f"{s.meta_scoring}), built by mrtui's own stages in a recording run and replayed on "
            f"every side: {describe(run, batches)}. Medians of {args.repeats} runs per side, "
            "sides alternating; tokens/s = generated tokens ÷ wall time.",
            "",
            table(headers, rows),
        ]
    )
    update_section("batch", body)
    print(body)


if __name__ == "__main__":
    main()
