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
the same command. Runs llama.cpp: run it alone on the machine.
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
from _common import REPO, command, load, machine, table, today, update_section

SUITES = "ifeval,alpaca_eval,judge-ifeval"
JUDGE = "qwen2.5-coder-0.5b-instruct"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--demo-log", type=Path, default=REPO / "runs" / "demo.duckdb")
    ap.add_argument("--run", default="demo")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--evaluated", type=Path, help="read this already evaluated log")
    ap.add_argument("--wall", type=float, help="its measured wall time, seconds")
    args = ap.parse_args()

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
    update_section("eval", body)
    print(body)


if __name__ == "__main__":
    main()
