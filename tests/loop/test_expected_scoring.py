"""Expected scoring (judge_scoring / meta_scoring = "expected"): values from the model's choice
probabilities, both orders of a meta-judged pair averaged, on the fake backend's known
probabilities; the real backends' probabilities are tested in tests/backends."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends.base import UnsupportedFeature
from mrtui.loop.runner import Runner
from mrtui.loop.settings import ConfigError, load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import EventLog, connect

sys.path.insert(0, str(Path(__file__).parents[1]))

EXPECTED = {"judge_scoring": "expected", "meta_scoring": "expected"}


def _prompts(tmp_path: Path, n: int = 4) -> str:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": f"Question {i}?", "id": i}) for i in range(n)))
    return str(p)


def _run(db: Path, backend: FakeBackend, **cli: Any) -> list[Any]:
    settings = load_config(None, {"train": False, "skip_unused_meta": False} | cli)
    with EventLog(db) as log:
        runner = Runner(
            log, settings, backend_factory=lambda s, m: backend,
            resolver=lambda m: ModelIdentity(m, "f" * 64),
        )  # fmt: skip
        try:
            return runner.run()
        finally:
            runner.close()


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("rationale", [True, False])
@pytest.mark.parametrize("structured", [True, False])
def test_a_score_is_the_probability_weighted_mean(
    tmp_path: Path, rationale: bool, structured: bool
) -> None:
    db, backend = tmp_path / "log.duckdb", FakeBackend()
    _run(db, backend, prompts=_prompts(tmp_path), k=3, n=2, judge_rationale=rationale,
         structured_judging=structured, **EXPECTED)  # fmt: skip
    rows = _rows(db, "SELECT score, choice_probs, scoring, parse_error, judgement, sampled_score,"
                     " rationale_words FROM judgements")  # fmt: skip
    assert len(rows) == 24
    for score, probs, scoring, error, text, sampled, words in rows:
        assert scoring == "expected" and error is None
        assert sorted(probs) == [str(i) for i in range(6)]
        assert sum(probs.values()) == pytest.approx(1.0)
        assert score == pytest.approx(sum(int(c) * p for c, p in probs.items()))
        assert text.splitlines()[-1].startswith("Score: ")
        if rationale:
            assert words is not None and words > 0
            assert sampled is None or sampled in range(6)
        else:
            assert text.startswith("Score: ") and words is None
    # the backend's probabilities, asked at the final line after the answer's own reasoning
    asked = [
        c for c in backend.calls
        if c.choices is not None and c.choice_probs and "[Judgment A]" not in c.messages[0].content
    ]  # fmt: skip
    assert len(asked) == 24 and all(c.assistant_prefix.endswith("Score: ") for c in asked)
    # continuous scores: no two responses of a prompt tie, so every prompt gives an actor pair
    assert _rows(db, "SELECT count(*) FROM actor_pairs")[0][0] == 4


def test_meta_verdicts_carry_p_first_and_battles_average_both_orders(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    _run(
        db,
        FakeBackend(position_bias=4.0),
        prompts=_prompts(tmp_path),
        k=2,
        n=3,
        structured_judging=True,
        **EXPECTED,
    )  # fmt: skip  (reasonings differ in length)
    verdicts = _rows(db, "SELECT winner, p_first, scoring FROM meta_verdicts")
    assert verdicts and all(s == "expected" for *_, s in verdicts)
    assert all(w == ("A" if p >= 0.5 else "B") for w, p, _ in verdicts)
    assert sum(p for _, p, _ in verdicts) / len(verdicts) > 0.65  # the fake leans to first shown
    battles = _rows(db, "SELECT b_mn, p_mn, p_nm, judgement_m, judgement_n FROM judge_battles")
    assert battles
    soft = {(m, n): b for b, _, _, m, n in battles}
    for b, p_mn, p_nm, m, n in battles:
        assert b == pytest.approx((p_mn + 1 - p_nm) / 2)
        assert b + soft[(n, m)] == pytest.approx(1.0)  # the position preference cancels
    elo = _rows(db, "SELECT count(*), count(DISTINCT elo) FROM judgement_elo")[0]
    assert elo[0] > 0 and elo[1] > 1


def test_a_backend_without_choice_probabilities_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    backend = FakeBackend(unsupported={"choice_probs"})
    with pytest.raises(UnsupportedFeature, match="choice_probs"):
        _run(tmp_path / "log.duckdb", backend, prompts=_prompts(tmp_path), judge_scoring="expected")
    assert backend.calls == []
    sampled = FakeBackend(unsupported={"choice_probs"})  # sampled scoring does not need them
    _run(tmp_path / "sampled.duckdb", sampled, prompts=_prompts(tmp_path), k=2, n=2)


def test_a_crash_mid_judging_resumes_to_the_same_log(tmp_path: Path) -> None:
    prompts, db, clean = _prompts(tmp_path), tmp_path / "log.duckdb", tmp_path / "clean.duckdb"
    with pytest.raises(KeyboardInterrupt):
        _run(db, FakeBackend(crash_after=45), prompts=prompts, k=3, n=2, **EXPECTED)
    assert 0 < _rows(db, "SELECT count(*) FROM judgements")[0][0] < 24
    _run(db, FakeBackend(), prompts=prompts, k=3, n=2, **EXPECTED)
    _run(clean, FakeBackend(), prompts=prompts, k=3, n=2, **EXPECTED)
    sql = "SELECT key, text, payload->>'$.score' FROM events WHERE key IS NOT NULL ORDER BY key"
    assert _rows(db, sql) == _rows(clean, sql)


def test_a_failed_probability_request_fails_its_unit_for_a_retry(tmp_path: Path) -> None:
    prompts, db = _prompts(tmp_path, 1), tmp_path / "log.duckdb"
    probe = FakeBackend()
    _run(tmp_path / "probe.duckdb", probe, prompts=prompts, k=2, n=2, **EXPECTED)
    victim = next(c.id for c in probe.calls if c.id.endswith("#probs"))
    _run(db, FakeBackend(fail_ids={victim}), prompts=prompts, k=2, n=2, **EXPECTED)
    unit = victim.split("#")[0]
    assert _rows(db, f"SELECT count(*) FROM failures WHERE unit_key = '{unit}'")[0][0] == 1
    assert _rows(db, f"SELECT count(*) FROM events WHERE key = '{unit}'")[0][0] == 0
    _run(db, FakeBackend(), prompts=prompts, k=2, n=2, **EXPECTED)
    assert _rows(db, f"SELECT count(*) FROM events WHERE key = '{unit}'")[0][0] == 1


def test_scoring_modes_are_validated_and_keep_units_apart(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="judge_scoring must be 'sampled' or 'expected'"):
        load_config(None, {"judge_scoring": "greedy"})
    prompts, db = _prompts(tmp_path, 2), tmp_path / "log.duckdb"
    _run(db, FakeBackend(), prompts=prompts, k=2, n=2, run_id="a")
    _run(db, FakeBackend(), prompts=prompts, k=2, n=2, run_id="b", **EXPECTED)
    keys = _rows(db, "SELECT run_id, list(judgement_key) FROM judgements GROUP BY run_id")
    assert not set(keys[0][1]) & set(keys[1][1])


def test_health_and_status_report_ties_length_bias_and_the_first_shown_preference(
    tmp_path: Path,
) -> None:
    from mrtui.loop.report import status

    prompts = _prompts(tmp_path, 6)
    sampled, expected = tmp_path / "sampled.duckdb", tmp_path / "expected.duckdb"
    _run(sampled, FakeBackend(), prompts=prompts, k=3, n=2, structured_judging=True)
    _run(expected, FakeBackend(position_bias=4.0), prompts=prompts, k=3, n=2,
         structured_judging=True, **EXPECTED)  # fmt: skip
    with connect(sampled) as con:
        (s,) = status(con, pairs=True)["runs"][0]["iterations"]
    with connect(expected) as con:
        (e,) = status(con, pairs=True)["runs"][0]["iterations"]
        want = con.execute(
            "SELECT corr(mean_score, response_chars) FROM response_scores WHERE valid_count > 0"
        ).fetchall()[0][0]
    assert s["scored_prompts"] == e["scored_prompts"] == 6
    assert e["tied_prompts"] == 0 and e["score_length_corr"] == pytest.approx(want)
    assert s["mean_p_first"] is None and s["prob_verdicts"] == 0
    assert e["prob_verdicts"] == e["verdicts"] > 0 and e["mean_p_first"] > 0.6
    # the argmax winners follow the fake's position preference: consistency is low, as
    # sampled verdicts would be, while the soft outcomes cancel it (see the battles test)
    assert e["first_position_win_rate"] > 0.6


def test_calibrated_consistency_takes_the_mean_position_preference_out(tmp_path: Path) -> None:
    import math

    db = tmp_path / "log.duckdb"
    _run(db, FakeBackend(position_bias=4.0), prompts=_prompts(tmp_path, 6), k=2, n=3,
         structured_judging=True, **EXPECTED)  # fmt: skip
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    ps = [p for (p,) in _rows(db, "SELECT p_first FROM meta_verdicts")]
    bias = sum(map(logit, ps)) / len(ps)
    pairs = _rows(db, "SELECT p_mn, p_nm FROM judge_battles WHERE judgement_m < judgement_n")
    agree = [(logit(a) > bias) != (logit(b) > bias) for a, b in pairs]
    ((got_bias, n, got),) = _rows(
        db, "SELECT position_logit, prob_pairs, calibrated_consistency FROM judge_signal"
    )
    assert got_bias == pytest.approx(bias) and bias > 0.5  # the fake leans to the first shown
    assert n == len(pairs) > 0 and got == pytest.approx(sum(agree) / len(agree))
    raw = _rows(db, "SELECT position_consistency FROM iteration_health")[0][0]
    assert got > raw  # the raw verdicts follow the position far more often


class LongerIsBetter(FakeBackend):
    """A fake judge that, comparing two responses, prefers the longer one."""

    def choice_probs(self, req: Any) -> dict[str, float]:
        content = req.messages[-1].content
        if "[Response A]" not in content:
            return super().choice_probs(req)
        a = content.split("[Response A]", 1)[1].split("[Response B]", 1)[0]
        b = content.split("[Response B]", 1)[1].strip().split("\n\n", 1)[0]
        la, lb = len(a.split()), len(b.split())
        p = 0.5 if la == lb else (0.9 if la > lb else 0.1)
        return {"A": p, "B": 1 - p}


@pytest.mark.parametrize("scoring", ["sampled", "expected"])
def test_pairwise_actor_judging_ranks_responses_by_their_comparisons(
    tmp_path: Path, scoring: str
) -> None:
    db, backend = tmp_path / "log.duckdb", LongerIsBetter()
    reports = _run(db, backend, prompts=_prompts(tmp_path), k=3, n=2, actor_judging="pairwise",
                   judge_scoring=scoring, meta_scoring=scoring)  # fmt: skip
    assert [r.stage for r in reports] == ["actor", "pairwise", "judge", "meta"]
    assert reports[1].planned == reports[1].done == 4 * 3 * 2  # every ordered pair
    rows = _rows(db, "SELECT first_key, second_key, winner, p_first, scoring "
                     "FROM response_comparisons")  # fmt: skip
    assert len(rows) == 24 and all(s == scoring for *_, s in rows)
    assert all((p is not None) == (scoring == "expected") for _, _, _, p, _ in rows)
    strengths = _rows(db, "SELECT prompt_key, response_key, response_chars, comparisons, "
                          "epsilon FROM response_strengths")  # fmt: skip
    assert len(strengths) == 12 and all(c == 2 for _, _, _, c, _ in strengths)
    pairs = {p: (c, r) for p, c, r in _rows(db, "SELECT prompt_key, chosen_key, rejected_key "
                                                "FROM actor_pairs")}  # fmt: skip
    if scoring == "expected":  # the judge prefers the longer: chosen is the strongest, longest
        by_prompt: dict[str, list[tuple[Any, ...]]] = {}
        for row in strengths:
            by_prompt.setdefault(row[0], []).append(row)
        for pk, rs in by_prompt.items():
            if len({r[2] for r in rs}) == len(rs):  # no two of the same length
                best = max(rs, key=lambda r: r[4])
                worst = min(rs, key=lambda r: r[4])
                assert best[2] == max(r[2] for r in rs) and pairs[pk] == (best[1], worst[1])
    assert (
        _rows(db, "SELECT count(*) FROM actor_scores WHERE actor_judging = 'pairwise'")[0][0] == 12
    )
    # resuming redoes nothing
    again = LongerIsBetter()
    _run(db, again, prompts=_prompts(tmp_path), k=3, n=2, actor_judging="pairwise",
         judge_scoring=scoring, meta_scoring=scoring)  # fmt: skip
    assert again.calls == []
