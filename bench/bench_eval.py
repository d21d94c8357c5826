"""`mrtui eval` on the demo's three models: wall time per sample and per verdict, and results.

Copies a finished demo log (``runs/demo.duckdb`` by default; its checkpoints stay where the
demo wrote them) into a scratch folder, runs the README's evaluation command on it and times
it, then reads the log:

- per iteration and stage: units, seconds per unit, completion tokens per unit and tokens/s,
  from the stages' own ``StageFinished`` events;
- the baseline in the same log: the demo's own actor stage (the same model and engine making
  loop responses), seconds per response and tokens/s, so the eval's cost reads as a ratio;
- the ``eval_results`` table (values with their 95% intervals).

With ``--evaluated LOG --wall SECONDS`` it only reads a log someone already evaluated with
the same command.

With ``--throughput`` it measures instead how fast IFEval answers come on the packaged 0.5B
model (issue 21): the same ``--limit`` prompts (default 32) at ``--max-tokens`` (default 512,
``mrtui eval``'s own) answered one sequence at a time (a run with ``parallel = 1``) and with
the evaluation's batched decoding (a run that set no ``parallel``), each in a scratch log of
its own; then the same model evaluated as another run in the second log, which the answer
cache serves without generating. It extrapolates both rates to all 541 prompts; ``--full``
then evaluates all 541 with the batched path.

Runs llama.cpp: run it alone on the machine (``flock /tmp/mrtui-model.lock``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, command, load, machine, table, today, update_section

SUITES = "ifeval,alpaca_eval,judge-ifeval"
JUDGE = "qwen2.5-coder-0.5b-instruct"
MODEL = "qwen2.5-coder-0.5b-instruct"  # the packaged 0.5B (Q4_K_M)
IFEVAL_PROMPTS = 541
TARGET_S = 15 * 60
THROUGHPUT_COLUMNS = [
    "decoding", "parallel", "answers", "stage s", "total s", "answers/s", "tokens/s",
    "tokens / answer", "hit the limit", "prompt strict", "541 prompts (est.)",
]  # fmt: skip


def eval_args(db: Path, run: str, limit: int, max_tokens: int) -> list[str]:
    return [
        "eval",
        "--db",
        str(db),
        "--run",
        run,
        "--suite",
        SUITES,
        "--limit",
        str(limit),
        "--max-tokens",
        str(max_tokens),
        "--judge-model",
        JUDGE,
        "--allow-self-judge",
    ]


def stage_rows(con: Any, run: str) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT iteration, payload->>'$.stage' AS stage, "
        "sum((payload->>'$.done')::INTEGER) AS done, sum((payload->>'$.wall_s')::DOUBLE) AS s, "
        "sum((payload->>'$.completion_tokens')::INTEGER) AS tokens "
        "FROM events WHERE event_type = 'StageFinished' AND run_id = ? GROUP BY ALL "
        "HAVING done > 0 ORDER BY iteration, min(seq)",
        [run],
    ).fetchall()


def write_part(body: str) -> None:
    """Replace the part of the ``eval`` section whose ``## `` title ``body`` starts with,
    keeping the other parts (the demo's evaluation, the throughput)."""
    section = RESULTS.read_text(encoding="utf-8")
    begin, end = "<!-- BEGIN eval -->", "<!-- END eval -->"
    old = section.split(begin, 1)[1].split(end, 1)[0] if begin in section else ""
    parts = ["## " + p.strip() for p in ("\n" + old).split("\n## ")[1:]]
    title = body.strip().splitlines()[0]
    kept = [p for p in parts if p.splitlines()[0] != title]
    ordered = [body.strip(), *kept] if "throughput" in title else [*kept, body.strip()]
    update_section("eval", "\n\n".join(ordered))


# -- throughput (issue 21) -----------------------------------------------------------------


def configure(db: Path, run_id: str, options: dict[str, Any]) -> None:
    """Log a run of the packaged 0.5B (its configuration only): what ``mrtui eval`` needs."""
    from mrtui.loop.runner import Runner
    from mrtui.loop.settings import load_config
    from mrtui.store import EventLog

    prompts = REPO / "assets" / "prompts" / "demo.jsonl"
    cli = {"prompts": str(prompts), "model": MODEL, "run_id": run_id, "backend_options": options}
    with EventLog(db) as log:
        Runner(log, load_config(None, cli)).configure()


def evaluate(db: Path, run_id: str, limit: int | None, max_tokens: int) -> tuple[float, int]:
    """Evaluate the run's M_1 on IFEval: wall seconds, and the parallel its backend had
    (0 when no backend started)."""
    from mrtui.evaluation.settings import EvalSettings
    from mrtui.loop.runner import default_backend
    from mrtui.loop.session import RunSession

    started: list[Any] = []

    def factory(settings: Any, model: str) -> Any:
        started.append(default_backend(settings, model))
        return started[-1]

    settings = EvalSettings(suites=("ifeval",), limit=limit, max_tokens=max_tokens)
    t0 = time.perf_counter()
    RunSession(db, run_id=run_id, backend_factory=factory).evaluate([1], settings)
    wall = time.perf_counter() - t0
    return wall, started[0].info().extra["parallel"] if started else 0


def answer_stats(db: Path, run_id: str) -> dict[str, Any]:
    """The IFEval answer stage of a run: units generated and copied, seconds, tokens, how
    many hit the token limit, and the strict prompt-level pass rate."""
    from mrtui.store import connect

    with connect(db) as con:
        wall, tokens = con.execute(
            "SELECT coalesce(sum((payload->>'$.wall_s')::DOUBLE), 0), "
            "coalesce(sum((payload->>'$.completion_tokens')::INTEGER), 0) FROM events "
            "WHERE event_type = 'StageFinished' AND run_id = ? "
            "AND payload->>'$.stage' = 'ifeval/answer'",
            [run_id],
        ).fetchone()
        generated, copied, cut = con.execute(
            "SELECT count(*) FILTER (cached_from IS NULL), count(*) FILTER (cached_from IS NOT "
            "NULL), count(*) FILTER (finish_reason = 'length') FROM eval_generations "
            "WHERE run_id = ? AND suite = 'ifeval'",
            [run_id],
        ).fetchone()
        strict = con.execute(
            "SELECT avg(passed_strict::INTEGER) FROM eval_samples WHERE run_id = ? "
            "AND suite = 'ifeval'",
            [run_id],
        ).fetchone()[0]
        texts = dict(
            con.execute(
                "SELECT item_id, response FROM eval_generations WHERE run_id = ?", [run_id]
            ).fetchall()
        )
    return {
        "wall": wall, "tokens": tokens, "generated": generated, "copied": copied, "cut": cut,
        "strict": strict, "texts": texts,
    }  # fmt: skip


def throughput(args: argparse.Namespace) -> None:
    load_before = load()
    scratch = Path(tempfile.mkdtemp(prefix="bench-eval-tp-"))
    one, batched = scratch / "one.duckdb", scratch / "batched.duckdb"
    configure(one, "main", {"parallel": 1})
    configure(batched, "main", {})  # no parallel: the evaluation's default
    runs = {}
    for name, db in (("one at a time", one), ("batched", batched)):
        total, parallel = evaluate(db, "main", args.limit, args.max_tokens)
        runs[name] = {**answer_stats(db, "main"), "total": total, "parallel": parallel}
        print(name, {k: v for k, v in runs[name].items() if k != "texts"}, flush=True)
    configure(batched, "again", {})  # another run of the same model in the same log
    cached_wall, cached_parallel = evaluate(batched, "again", args.limit, args.max_tokens)
    cached = answer_stats(batched, "again")
    full = None
    if args.full:
        configure(batched, "full", {"parallel": 16})  # a new run: its 541 answers are new
        # (the first --limit prompts are copied from run main)
        wall, _ = evaluate(batched, "full", None, args.max_tokens)
        full = {**answer_stats(batched, "full"), "total": wall}

    lines = []
    rates = {}
    for name, r in runs.items():
        per_answer = r["tokens"] / max(1, r["generated"])
        tps = r["tokens"] / r["wall"]
        aps = r["generated"] / r["wall"]
        rates[name] = (tps, per_answer)
        estimate = IFEVAL_PROMPTS * per_answer / tps
        lines.append(
            (
                name, r["parallel"], r["generated"], f"{r['wall']:.0f}", f"{r['total']:.0f}",
                f"{aps:.3f}", f"{tps:.1f}", f"{per_answer:.0f}", f"{r['cut']}",
                f"{100 * (r['strict'] or 0):.0f}%", f"{estimate / 60:.1f} min",
            )
        )  # fmt: skip
    seq, par = runs["one at a time"], runs["batched"]
    same = sum(par["texts"].get(k) == v for k, v in seq["texts"].items())
    speedup = rates["batched"][0] / rates["one at a time"][0]
    tps, per_answer = rates["batched"]
    ceiling = TARGET_S * tps / IFEVAL_PROMPTS
    body = [
        "## `mrtui eval` throughput: IFEval on the packaged 0.5B (issue 21)",
        "",
        f"{today()} · `{command()}` · {machine()} · at start {load_before}, at end {load()}",
        "",
        f"IFEval, the same {args.limit} prompts (the stratified subset `--limit {args.limit}`), "
        f"`--max-tokens {args.max_tokens}`, greedy, {MODEL} (Q4_K_M) on llama.cpp with 2 "
        "threads; each side in a scratch log of its own, one after the other in this process. "
        "Seconds: the answer stage (`StageFinished`), then the whole `evaluate` call (model "
        "load and rule checks included). 541 prompts: 541 × tokens per answer ÷ tokens/s.",
        "",
        table(THROUGHPUT_COLUMNS, lines),
        "",
        f"Batched over one at a time: **{speedup:.2f}×** tokens/s. Identical answers on the "
        f"two paths: {same} of {len(seq['texts'])} (batched greedy decoding rounds differently "
        "on llama.cpp's CPU kernels, so answers can part after a near-tie).",
        "",
        f"The answer cache: the same model evaluated as another run (`again`) in the batched "
        f"log generated **{cached['generated']}** answers and copied {cached['copied']} "
        f"(`cached_from`) in {cached_wall:.1f} s, "
        + ("without loading the model." if cached_parallel == 0 else "(the model was loaded)."),
        "",
        f"Where the limit is: at {tps:.1f} tokens/s and {per_answer:.0f} tokens per answer, "
        f"15 minutes hold {ceiling:.0f} answers; all 541 need "
        f"{IFEVAL_PROMPTS * per_answer / TARGET_S:.0f} tokens/s, or answers of "
        f"{TARGET_S * tps / IFEVAL_PROMPTS:.0f} tokens on average at this rate.",
    ]
    if full is not None:
        body += [
            "",
            f"All 541 prompts, batched: {full['generated']} generated and {full['copied']} "
            f"copied in **{full['total'] / 60:.1f} min** (answer stage {full['wall'] / 60:.1f} "
            f"min, {full['tokens'] / full['wall']:.1f} tokens/s), prompt strict "
            f"{100 * (full['strict'] or 0):.0f}%.",
        ]
    text = "\n".join(body)
    write_part(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--demo-log", type=Path, default=REPO / "runs" / "demo.duckdb")
    ap.add_argument("--run", default="demo")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--evaluated", type=Path, help="read this already evaluated log")
    ap.add_argument("--wall", type=float, help="its measured wall time, seconds")
    ap.add_argument("--throughput", action="store_true", help="IFEval rates (issue 21)")
    ap.add_argument("--full", action="store_true", help="with --throughput: all 541 prompts")
    args = ap.parse_args()
    if args.throughput:
        args.limit = args.limit or 32
        args.max_tokens = args.max_tokens or 512
        throughput(args)
        return
    args.limit = args.limit or 8
    args.max_tokens = args.max_tokens or 192

    if args.evaluated:
        db, wall = args.evaluated, args.wall
    else:
        scratch = Path(tempfile.mkdtemp(prefix="bench-eval-"))
        db = scratch / "demo.duckdb"
        shutil.copy(args.demo_log, db)
        t0 = time.perf_counter()
        cmd = [
            str(REPO / ".venv" / "bin" / "mrtui"),
            *eval_args(db, args.run, args.limit, args.max_tokens),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"mrtui eval failed:\n{done.stderr[-3000:]}")

    from mrtui.evaluation.report import results
    from mrtui.evaluation.report import table as results_table
    from mrtui.store import connect

    with connect(db) as con:
        stages = stage_rows(con, args.run)
        rows = results(con, args.run)
    loop = [r for r in stages if r[1] == "actor"]
    base_s = sum(r[3] for r in loop) / max(1, sum(r[2] for r in loop))
    base_tps = sum(r[4] for r in loop) / max(1e-9, sum(r[3] for r in loop))
    lines = []
    for it, stage, n, s, tokens in stages:
        if "/" not in stage:
            continue
        tps = tokens / s if s else 0.0
        lines.append(
            (
                it,
                stage,
                n,
                f"{s / n:.2f}",
                f"{tokens / n:.0f}",
                f"{tps:.1f}",
                f"{(s / n) / base_s:.2f}×",
            )
        )
    columns, result_lines = results_table(rows)
    shown = " ".join(eval_args(Path("runs/demo.duckdb"), args.run, args.limit, args.max_tokens))
    body = "\n".join(
        [
            "## `mrtui eval` on the demo's three models — `bench/bench_eval.py`",
            "",
            f"{today()} · `{command()}` · {machine()} · {load()}",
            "",
            f"Command: `mrtui {shown}` — **{wall / 60:.1f} min** wall for M_1, M_2, M_3 "
            f"(all three iterations, {SUITES}, {args.limit} items per suite, judge {JUDGE}).",
            "",
            f"Baseline in the same log: the demo's actor stage, {base_s:.2f} s per response "
            f"at {base_tps:.1f} tokens/s (the same model and engine).",
            "",
            table(
                [
                    "iteration",
                    "stage",
                    "units",
                    "s / unit",
                    "tokens / unit",
                    "tokens/s",
                    "s / unit ÷ demo actor",
                ],
                lines,
            ),
            "",
            table(columns, result_lines),
        ]
    )
    write_part(body)
    print(body)


if __name__ == "__main__":
    main()
