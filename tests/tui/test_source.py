"""The TUI's read layer (mrtui.tui.source / model) against the store's own views.

Every expected value comes from the real views over the whole log (``mrtui.store.connect``);
``LogSource`` must agree with them exactly, in particular ``focus()``, which runs the same
views over a scoped copy of one prompt's events.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mrtui.store import EventLog, NewEvent, connect
from mrtui.store.health import COUNTERS, Health
from mrtui.tui.model import PromptFocus, WriterInfo
from mrtui.tui.source import LogSource, writer_info

from .conftest import (
    HOSTILE,
    PROMPTS,
    RUN_ID,
    TRAIN_STEPS,
    K,
    N,
    build_log,
    hostile_prompt_index,
    write_prompts,
)

TESTS_DIR = Path(__file__).resolve().parents[1]


def q(db: Path, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql, params or []).fetchall()


def prompt_keys(db: Path, run_id: str = RUN_ID) -> list[str]:
    return [
        r[0]
        for r in q(
            db,
            "SELECT prompt_key FROM prompts WHERE run_id = ? ORDER BY prompt_index, seq",
            [run_id],
        )
    ]


# -- overview -----------------------------------------------------------------------------
def test_overview_counts_match_the_views(tui_log: Path) -> None:
    ov = LogSource(tui_log).overview()
    assert ov.runs == [RUN_ID] and ov.run_id == RUN_ID
    assert ov.prompts == len(PROMPTS)
    assert ov.max_seq == q(tui_log, "SELECT max(seq) FROM events")[0][0]
    assert ov.writer is None
    assert [r.iteration for r in ov.iterations] == [1, 2]
    counts = {
        view: dict(q(tui_log, f"SELECT iteration, count(*) FROM {view} GROUP BY 1"))
        for view in ("responses", "judgements", "meta_verdicts", "failures", "training_steps")
    }
    for row in ov.iterations:
        assert row.run_id == RUN_ID
        assert (row.k, row.n, row.weights_scope) == (K, N, "response")
        assert row.responses == counts["responses"][row.iteration] == len(PROMPTS) * K
        assert row.judgements == counts["judgements"][row.iteration] == len(PROMPTS) * K * N
        assert row.verdicts == counts["meta_verdicts"][row.iteration] > 0
        assert row.failures == counts["failures"].get(row.iteration, 0) == 0
        assert row.steps == counts["training_steps"].get(row.iteration, 0)
    it1, it2 = ov.iterations
    # the fake run trained from its GGUF, and the overview says what that costs
    assert it1.training == "done" and it1.steps == TRAIN_STEPS
    assert it1.trained_from == "GGUF dequantisation"
    assert it2.training == "-" and it2.steps == 0  # iteration 2 does not train
    models = dict(q(tui_log, "SELECT iteration, model_id FROM iteration_settings"))
    assert (it1.model_id, it2.model_id) == (models[1], models[2])
    assert it1.model_id != it2.model_id  # iteration 2 runs on the trained checkpoint


def test_overview_picks_the_latest_run_or_the_named_one(tui_log_iteration: Path) -> None:
    ov = LogSource(tui_log_iteration).overview()
    assert ov.runs == ["wide", "other"] and ov.run_id == "wide"
    assert [r.weights_scope for r in ov.iterations] == ["iteration"]
    other = LogSource(tui_log_iteration, "other").overview()
    assert other.run_id == "other" and [r.weights_scope for r in other.iterations] == ["response"]
    assert other.iterations[0].responses == len(PROMPTS) * K
    missing = LogSource(tui_log_iteration, "nope")
    assert missing.overview().run_id == "wide"  # an unknown run shows the latest one


# -- health -------------------------------------------------------------------------------
def _expected_health(db: Path, run_id: str = RUN_ID) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for it, n, unparsed, fallback in q(
        db,
        "SELECT iteration, count(*), count(*) FILTER (WHERE score IS NULL), "
        "count(*) FILTER (WHERE fallback_used) FROM judgements WHERE run_id = ? GROUP BY 1",
        [run_id],
    ):
        scores = [0] * 6
        for s, c in q(
            db,
            "SELECT round(score)::INTEGER, count(*) FROM judgements WHERE run_id = ? "
            "AND iteration = ? AND score IS NOT NULL GROUP BY 1",
            [run_id, it],
        ):
            scores[s] = c
        out[it] = {"judgements": n, "unparsed": unparsed, "fallback": fallback, "scores": scores}
    for it, a, b, tie, bad in q(
        db,
        "SELECT iteration, count(*) FILTER (WHERE winner = 'A'), "
        "count(*) FILTER (WHERE winner = 'B'), count(*) FILTER (WHERE parse_error = 'tie'), "
        "count(*) FILTER (WHERE winner IS NULL AND parse_error IS DISTINCT FROM 'tie') "
        "FROM meta_verdicts WHERE run_id = ? GROUP BY 1",
        [run_id],
    ):
        out[it] |= {"meta_a": a, "meta_b": b, "meta_tie": tie, "meta_unparsed": bad}
    for it, n, chars in q(
        db,
        "SELECT iteration, count(*), sum(response_chars) FROM responses WHERE run_id = ? "
        "GROUP BY 1",
        [run_id],
    ):
        out[it] |= {"responses": n, "response_chars": chars}
    return out


def _as_dict(h: Health) -> dict[str, Any]:
    return {
        "judgements": h.judgements,
        "unparsed": h.judgements - h.valid_judgements,
        "fallback": h.fallback_judgements,
        "scores": list(h.scores),
        "meta_a": h.first_wins,
        "meta_b": h.second_wins,
        "meta_tie": h.verdict_ties,
        "meta_unparsed": h.verdicts - h.first_wins - h.second_wins - h.verdict_ties,
        "responses": h.responses,
        "response_chars": h.response_chars,
    }


def test_health_matches_sql_and_is_stable_on_refresh(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    expected = _expected_health(tui_log)
    first = {it: _as_dict(h) for it, h in src.health().items()}
    assert first == expected
    # the log is realistic: parse failures, ties and unparseable verdicts all occur
    for e in expected.values():
        assert e["unparsed"] > 0 and e["meta_tie"] > 0 and e["meta_unparsed"] > 0
        assert sum(e["scores"]) + e["unparsed"] == e["judgements"]
    again = {it: _as_dict(h) for it, h in src.health().items()}
    assert again == expected  # the incremental path adds nothing when nothing is new


def test_health_adds_only_new_events(tui_log_copy: Path) -> None:
    src = LogSource(tui_log_copy, RUN_ID)
    before = {it: _as_dict(h) for it, h in src.health().items()}
    rkey = q(tui_log_copy, "SELECT response_key FROM responses WHERE iteration = 2 LIMIT 1")[0][0]
    with EventLog(tui_log_copy) as log:
        log.append(
            [
                NewEvent(
                    "JudgementRecorded",
                    RUN_ID,
                    {"score": 5, "parse_error": None, "fallback_used": True, "judge_index": 9},
                    iteration=2,
                    key="judgement:extra-1",
                    parent_key=rkey,
                    text="Score: 5",
                ),
                NewEvent(
                    "JudgementRecorded",
                    RUN_ID,
                    {"score": None, "parse_error": "no line", "fallback_used": False},
                    iteration=2,
                    key="judgement:extra-2",
                    parent_key=rkey,
                    text="hmm",
                ),
                NewEvent(
                    "MetaVerdictRecorded",
                    RUN_ID,
                    {"winner": "B", "parse_error": None, "first_key": "a", "second_key": "b"},
                    iteration=2,
                    key="verdict:extra",
                    parent_key=rkey,
                    text="Winner: Judgment B",
                ),
            ]
        )
    after = {it: _as_dict(h) for it, h in src.health().items()}
    assert after == _expected_health(tui_log_copy)
    assert after[1] == before[1]
    b2, a2 = before[2], after[2]
    assert a2["judgements"] == b2["judgements"] + 2 and a2["unparsed"] == b2["unparsed"] + 1
    assert a2["scores"][5] == b2["scores"][5] + 1 and a2["fallback"] == b2["fallback"] + 1
    assert a2["meta_b"] == b2["meta_b"] + 1
    assert after == {it: _as_dict(h) for it, h in LogSource(tui_log_copy, RUN_ID).health().items()}


def test_health_starts_over_when_a_smaller_log_replaces_the_file(
    tui_log_copy: Path, tmp_path: Path
) -> None:
    src = LogSource(tui_log_copy, RUN_ID)
    assert set(src.health()) == {1, 2}
    small = tmp_path / "small" / "log.duckdb"
    small.parent.mkdir()
    build_log(
        small,
        write_prompts(tmp_path / "one.jsonl", PROMPTS[:1]),
        iterations=1,
        defaults={"train": False},
    )
    os.replace(small, tui_log_copy)
    fresh = {it: _as_dict(h) for it, h in src.health().items()}
    assert fresh == _expected_health(tui_log_copy) and set(fresh) == {1}
    assert fresh[1]["responses"] == K


def _health(**counts: int) -> Health:
    h = Health()
    h.counts.update(counts)
    return h


def test_health_rates() -> None:
    h = _health(
        scores_0=1,
        scores_2=2,
        scores_4=3,
        scores_5=4,
        valid_judgements=10,
        unparsed_judgements=2,
        judgements=12,
        responses=4,
        response_chars=100,
        first_wins=6,
        second_wins=2,
        verdict_ties=1,
        unparsed_verdicts=1,
        verdicts=10,
    )
    assert h.first_position_win_rate == pytest.approx(6 / 8)
    assert h.share_of_fives == pytest.approx(4 / 10)
    assert h.judge_parse_failure_rate == pytest.approx(2 / 12)
    assert h.meta_parse_failure_rate == pytest.approx(1 / 10)
    assert h.meta_tie_rate == pytest.approx(1 / 10)
    assert h.mean_response_chars == pytest.approx(25.0)
    assert h.scores == [1, 0, 2, 0, 3, 4]
    empty = Health()
    assert empty.first_position_win_rate is None and empty.share_of_fives is None
    assert empty.judge_parse_failure_rate is None and empty.meta_parse_failure_rate is None
    assert empty.mean_response_chars is None
    total = Health()
    total.add(h)
    total.add(h)
    assert total.scores == [2, 0, 4, 0, 6, 8] and total.judgements == 24
    assert total.first_position_win_rate == h.first_position_win_rate
    assert total.verdict_ties == 2
    assert set(total.as_dict()) >= set(COUNTERS)


# -- training -----------------------------------------------------------------------------
def test_losses_are_the_training_steps(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    expected = q(tui_log, "SELECT step, loss FROM training_steps WHERE iteration = 1 ORDER BY seq")
    losses = src.losses()
    assert set(losses) == {1}
    assert losses[1] == expected and len(expected) == TRAIN_STEPS
    assert [s for s, _ in losses[1]] == list(range(1, TRAIN_STEPS + 1))
    assert losses[1][0][1] == pytest.approx(0.59) and losses[1][-1][1] < losses[1][0][1]


def test_losses_show_only_the_latest_attempt(tui_log_copy: Path) -> None:
    with EventLog(tui_log_copy) as log:
        log.append(
            [
                NewEvent(
                    "TrainingStepLogged",
                    RUN_ID,
                    {"attempt": "retry", "step": s, "epoch": s / 2, "loss": loss},
                    iteration=1,
                )
                for s, loss in ((1, 0.3), (2, 0.2))
            ]
        )
    assert LogSource(tui_log_copy, RUN_ID).losses() == {1: [(1, 0.3), (2, 0.2)]}


# -- prompt list --------------------------------------------------------------------------
def test_prompt_pages_concatenate_to_the_whole_list(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    full = src.prompts()
    assert [p.index for p in full] == list(range(len(PROMPTS)))
    assert [p.prompt_key for p in full] == prompt_keys(tui_log)
    assert src.prompt_count() == len(full) == len(PROMPTS)
    for size in (1, 2, 4, 5):
        pages = [src.prompts(offset=o, limit=size) for o in range(0, len(PROMPTS) + size, size)]
        assert all(len(p) <= size for p in pages)
        assert [p for page in pages for p in page] == full
    assert src.prompts(offset=len(PROMPTS)) == []
    for p, spec in zip(full, PROMPTS, strict=True):
        assert p.preview == spec["prompt"]
        assert p.source_id == spec.get("id", "")
        assert p.responses == 2 * K  # both iterations
    assert [p.responses for p in src.prompts(iteration=1)] == [K] * len(PROMPTS)
    assert [p.responses for p in src.prompts(iteration=3)] == [0] * len(PROMPTS)


def _search(src: LogSource, text: str) -> list[int]:
    found = [p.index for p in src.prompts(search=text)]
    assert src.prompt_count(search=text) == len(found)
    return found


def test_search_finds_text_and_source_ids(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    hostile = hostile_prompt_index()
    assert _search(src, "BOOM") == [hostile]
    assert _search(src, "boom") == [hostile]  # case-insensitive
    assert _search(src, "\x1b[31mRED") == [hostile]
    assert _search(src, "[@click=app.quit]") == [hostile]
    assert _search(src, "src-5") == [5]
    assert _search(src, "Question") == [0, 4]
    assert _search(src, "ünïcödé") == [5]
    assert _search(src, "no such text anywhere") == []


def test_search_treats_percent_and_backslash_literally(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    assert _search(src, "50%") == [1]
    assert _search(src, "%") == [1]
    assert _search(src, "100%") == []
    assert _search(src, "%%") == []
    assert _search(src, "5%0") == []
    assert _search(src, "\\") == []
    assert _search(src, "\\%") == []


def test_search_treats_underscore_literally(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    assert _search(src, "snake_case") == [3]
    assert _search(src, "_") == [3]  # only prompt 3 contains an underscore
    assert _search(src, "Question_0") == []  # "Question 0" has a space, not an underscore


def test_prompt_filter_by_keys(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    keys = prompt_keys(tui_log)
    some = [keys[4], keys[1]]
    assert [p.index for p in src.prompts(keys=some)] == [1, 4]
    assert src.prompt_count(keys=some) == 2
    assert [p.index for p in src.prompts(keys=some, exclude=True)] == [0, 2, 3, 5]
    assert src.prompt_count(keys=some, exclude=True) == 4
    assert src.prompts(keys=[]) == [] and src.prompt_count(keys=[]) == 0
    assert len(src.prompts(keys=[], exclude=True)) == len(PROMPTS)
    assert [p.index for p in src.prompts(keys=some, search="Question")] == [4]
    assert [p.index for p in src.prompts(keys=some, search="Question", exclude=True)] == [0]


def test_prompt_index_agrees_with_the_pair_views(tui_log: Path) -> None:
    idx = LogSource(tui_log, RUN_ID).prompt_index()
    scores = {
        (k, it): (best, worst)
        for k, it, best, worst in q(
            tui_log,
            "SELECT prompt_key, iteration, max(mean_score), min(mean_score) "
            "FROM response_scores GROUP BY ALL",
        )
    }
    actor = set(q(tui_log, "SELECT prompt_key, iteration FROM actor_pairs"))
    judge = set(q(tui_log, "SELECT prompt_key, iteration FROM judge_pairs"))
    assert set(idx) == set(scores) and len(idx) == 2 * len(PROMPTS)
    assert {k: (s.best, s.worst) for k, s in idx.items()} == scores
    assert {k for k, s in idx.items() if s.actor_pair} == actor
    assert {k for k, s in idx.items() if s.judge_pair} == judge
    assert judge and actor  # the log has both kinds of pairs
    no_judge = LogSource(tui_log, RUN_ID).prompt_index(judge_pairs=False)
    assert not any(s.judge_pair for s in no_judge.values())


# -- one prompt ---------------------------------------------------------------------------
def check_focus(db: Path, run_id: str, key: str, focus: PromptFocus) -> dict[str, int]:
    """Assert that ``focus`` shows exactly what the full views say about prompt ``key``;
    returns how much it checked, so callers can make sure the log exercised every part."""
    seen = {"battles": 0, "verdicts": 0, "elo": 0, "roles": 0, "dropped": 0, "pairs": 0}
    with connect(db) as con:

        def rows(sql: str, *params: Any) -> list[tuple[Any, ...]]:
            return con.execute(sql, list(params)).fetchall()

        text, source_id, index = rows(
            "SELECT prompt, source_id, prompt_index FROM prompts WHERE prompt_key = ?", key
        )[0]
        assert (focus.prompt_key, focus.text, focus.index) == (key, text, index)
        assert focus.source_id == (source_id or "")
        iterations = [
            r[0]
            for r in rows(
                "SELECT DISTINCT iteration FROM responses WHERE prompt_key = ? AND run_id = ? "
                "ORDER BY 1",
                key,
                run_id,
            )
        ]
        assert sorted(focus.iterations) == iterations
        for it in iterations:
            itf = focus.iterations[it]
            assert itf.iteration == it
            expected_responses = rows(
                "SELECT r.response_key, r.sample_index, r.response, r.response_chars, "
                "r.finish_reason, r.completion_tokens, s.mean_score, s.score_variance, "
                "s.valid_count, s.judgement_count FROM responses r "
                "JOIN response_scores s USING (response_key) "
                "WHERE r.prompt_key = ? AND r.run_id = ? AND r.iteration = ? "
                "ORDER BY r.sample_index, r.response_key",
                key,
                run_id,
                it,
            )
            assert [
                (
                    r.key,
                    r.sample_index,
                    r.text,
                    r.chars,
                    r.finish_reason,
                    r.completion_tokens,
                    r.mean,
                    r.variance,
                    r.valid,
                    r.judged,
                )
                for r in itf.responses
            ] == expected_responses
            by_key = {r.key: r for r in itf.responses}
            for r in itf.responses:
                assert r.iteration == it
                assert [
                    (
                        j.key,
                        j.response_key,
                        j.judge_index,
                        j.score,
                        j.text,
                        j.parse_error,
                        j.fallback_used,
                        j.chars,
                    )
                    for j in r.judgements
                ] == rows(
                    "SELECT judgement_key, response_key, judge_index, score, judgement, "
                    "parse_error, coalesce(fallback_used, false), judgement_chars "
                    "FROM judgements WHERE response_key = ? ORDER BY judge_index, judgement_key",
                    r.key,
                )
            # actor pair and roles
            pair = rows(
                "SELECT chosen_key, rejected_key FROM actor_pairs "
                "WHERE prompt_key = ? AND run_id = ? AND iteration = ?",
                key,
                run_id,
                it,
            )
            assert itf.actor_pair == (pair[0] if pair else None)
            roles = {pair[0][0]: "chosen", pair[0][1]: "rejected"} if pair else {}
            assert {k: r.role for k, r in by_key.items()} == {k: roles.get(k) for k in by_key}
            seen["roles"] += len(roles)
            # the battle
            target = rows(
                "SELECT response_key FROM meta_targets "
                "WHERE prompt_key = ? AND run_id = ? AND iteration = ?",
                key,
                run_id,
                it,
            )
            assert {k for k, r in by_key.items() if r.meta_target} == {t[0] for t in target}
            b = itf.battle
            if not target:
                assert b is None
                continue
            seen["battles"] += 1
            assert b is not None and b.response_key == target[0][0]
            rkey = b.response_key
            scope = rows(
                "SELECT weights_scope FROM iteration_settings WHERE run_id = ? AND iteration = ?",
                run_id,
                it,
            )[0][0]
            assert b.scope == scope
            assert [j.key for j in b.judgements] == [j.key for j in by_key[rkey].judgements]
            verdicts = {
                (first, second): (vkey, winner, body, perr)
                for first, second, vkey, winner, body, perr in rows(
                    "SELECT first_key, second_key, verdict_key, winner, verdict, parse_error "
                    "FROM meta_verdicts WHERE response_key = ? ORDER BY seq",
                    rkey,
                )
            }
            assert {
                pair: (v.key, v.winner, v.text, v.parse_error) for pair, v in b.verdicts.items()
            } == verdicts
            assert all(v.first_key == f and v.second_key == s for (f, s), v in b.verdicts.items())
            seen["verdicts"] += len(verdicts)
            battle = rows(
                "SELECT DISTINCT win_1st, win_2nd, omega1, omega2 FROM judge_battles "
                "WHERE response_key = ? AND run_id = ?",
                rkey,
                run_id,
            )
            assert len(battle) <= 1
            w1, w2, o1, o2 = battle[0] if battle else (0, 0, None, None)
            assert (b.win_1st, b.win_2nd, b.omega1, b.omega2) == (w1, w2, o1, o2)
            elo = {
                k: (e, w)
                for k, e, w in rows(
                    "SELECT judgement_key, elo, wins FROM judgement_elo WHERE response_key = ?",
                    rkey,
                )
            }
            assert {j.key: (j.elo, j.wins) for j in b.judgements} == {
                j.key: elo.get(j.key, (None, None)) for j in b.judgements
            }
            seen["elo"] += len(elo)
            cand = rows(
                "SELECT chosen_key, rejected_key, drop_reason FROM judge_pair_candidates "
                "WHERE response_key = ?",
                rkey,
            )
            assert (b.chosen_key, b.rejected_key, b.drop_reason) == (
                cand[0] if cand else (None, None, None)
            )
            if cand and cand[0][2] is not None:
                seen["dropped"] += 1
            elif cand:
                seen["pairs"] += 1
    return seen


def _check_all(db: Path, run_id: str) -> dict[str, int]:
    src = LogSource(db, run_id)
    total: dict[str, int] = {}
    for key in prompt_keys(db, run_id):
        focus = src.focus(key)
        assert focus.read_s > 0
        for name, n in check_focus(db, run_id, key, focus).items():
            total[name] = total.get(name, 0) + n
    return total


def test_focus_agrees_with_the_full_views(tui_log: Path) -> None:
    seen = _check_all(tui_log, RUN_ID)
    # every part of the comparison was exercised by the log
    assert seen["battles"] >= 8 and seen["verdicts"] > 20 and seen["elo"] > 20
    assert seen["roles"] > 0 and seen["dropped"] > 0 and seen["pairs"] > 0


def test_focus_with_iteration_wide_position_weights(tui_log_iteration: Path) -> None:
    seen = _check_all(tui_log_iteration, "wide")
    assert seen["battles"] >= 3 and seen["elo"] > 0
    # the weights really are iteration-wide: every battle has the iteration's win counts,
    # which are not the counts of its own verdicts
    src = LogSource(tui_log_iteration, "wide")
    totals = q(
        tui_log_iteration,
        "SELECT count(*) FILTER (WHERE v.r = 1), count(*) FILTER (WHERE v.r = -1) "
        "FROM meta_verdicts v JOIN meta_targets t USING (run_id, iteration, response_key) "
        "WHERE v.run_id = 'wide'",
    )[0]
    own_differs = False
    for key in prompt_keys(tui_log_iteration, "wide"):
        b = src.focus(key).iterations[1].battle
        if b is None:
            continue
        assert b.scope == "iteration" and (b.win_1st, b.win_2nd) == totals
        own = (
            sum(v.winner == "A" for v in b.verdicts.values()),
            sum(v.winner == "B" for v in b.verdicts.values()),
        )
        own_differs |= own != totals
    assert own_differs


def test_focus_keeps_runs_apart(tui_log_iteration: Path) -> None:
    seen = _check_all(tui_log_iteration, "other")
    assert seen["battles"] >= 3
    src = LogSource(tui_log_iteration, "other")
    for key in prompt_keys(tui_log_iteration, "other"):
        focus = src.focus(key)
        assert all(b.scope == "response" for it in focus.iterations.values() if (b := it.battle))


def test_text_is_verbatim(tui_log: Path) -> None:
    src = LogSource(tui_log, RUN_ID)
    pkey = prompt_keys(tui_log)[hostile_prompt_index()]
    text = src.text(pkey)
    assert HOSTILE in text and "\x1b[31mRED\x1b[0m" in text and "\x07" in text
    assert text == q(tui_log, "SELECT prompt FROM prompts WHERE prompt_key = ?", [pkey])[0][0]
    focus = src.focus(pkey)
    assert focus.text == text
    hostile_units = 0
    for itf in focus.iterations.values():
        for r in itf.responses:
            assert src.text(r.key) == r.text
            hostile_units += HOSTILE in r.text
            for j in r.judgements:
                assert src.text(j.key) == j.text and HOSTILE in j.text
                hostile_units += 1
        if itf.battle:
            for v in itf.battle.verdicts.values():
                assert src.text(v.key) == v.text and HOSTILE in v.text
    assert hostile_units >= 2 * K  # the model echoed the hostile text back
    assert src.text("no-such-key") == ""


# -- writers ------------------------------------------------------------------------------
def _python(tmp_path: Path, name: str, code: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the scripts print "ready" and flush
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=timeout)
        pytest.fail(f"subprocess did not start: {line!r} {err}")


def test_writer_info_of_another_process(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    with EventLog(db):
        pass
    assert writer_info(db) is None
    proc = _python(
        tmp_path,
        "hold.py",
        """
        import sys, time
        from mrtui.store import EventLog
        log = EventLog(sys.argv[1])
        print("ready", flush=True)
        time.sleep(120)
        """,
        str(db),
    )
    try:
        _wait_ready(proc)
        info = writer_info(db)
        assert isinstance(info, WriterInfo)
        assert info.pid == proc.pid and not info.in_process
        assert info.host == socket.gethostname()
        assert "hold.py" in info.command and info.started not in ("", "?")
        assert str(proc.pid) in info.describe()
        assert LogSource(db).overview().writer == info
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert writer_info(db) is None  # the kernel dropped the lock with the process
    assert LogSource(db).overview().writer is None


def test_writer_info_in_process(tui_log_copy: Path) -> None:
    assert writer_info(tui_log_copy) is None
    with EventLog(tui_log_copy):
        info = writer_info(tui_log_copy)
        assert info is not None and info.in_process and info.pid == os.getpid()
        assert info.describe() == "this TUI is writing"
        # reading in the writer's own process goes through the writer's connection lock
        ov = LogSource(tui_log_copy).overview()
        assert ov.writer is not None and ov.writer.in_process
        assert ov.iterations[0].responses == len(PROMPTS) * K
    assert writer_info(tui_log_copy) is None


def test_reading_while_another_process_writes(tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    prompts = write_prompts(tmp_path / "p.jsonl")
    proc = _python(
        tmp_path,
        "write.py",
        """
        import sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[1])
        from mrtui.store import EventLog
        from tui.conftest import build_log
        db = Path(sys.argv[2])
        EventLog(db).close()  # migrated, with views, before the reader looks
        print("ready", flush=True)
        build_log(db, Path(sys.argv[3]), flush_interval=0.02, delay=0.005,
                  overrides={2: {"train": False}})
        print("done", flush=True)
        """,
        str(TESTS_DIR),
        str(db),
        str(prompts),
    )
    seqs: list[int] = []
    try:
        _wait_ready(proc)
        src = LogSource(db)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            ov = src.overview()
            src.health()
            assert not seqs or ov.max_seq >= seqs[-1]
            seqs.append(ov.max_seq)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "done"
    final = src.overview()
    assert final.max_seq >= seqs[-1] and final.writer is None
    assert len(seqs) >= 3 and any(0 < s < final.max_seq for s in seqs)
    assert [r.training for r in final.iterations] in (["done", "-"], ["checkpoint", "-"])
    assert [r.responses for r in final.iterations] == [len(PROMPTS) * K] * 2
    # the incremental health saw every event exactly once
    assert {it: _as_dict(h) for it, h in src.health().items()} == _expected_health(db)


def test_an_iteration_that_drew_from_the_pool_lists_only_its_prompts(tmp_path: Path) -> None:
    """With prompts_per_iteration, the prompt list and the overview's plan are the draw."""
    import json as _json

    from fakes import FakeBackend

    from mrtui.loop.runner import Runner
    from mrtui.loop.settings import load_config
    from mrtui.loop.stages import ModelIdentity

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(_json.dumps({"prompt": f"Question {i}?"}) for i in range(7)))
    db = tmp_path / "pool.duckdb"
    settings = load_config(
        None, {"prompts": str(prompts), "prompts_per_iteration": 3, "k": 2, "n": 2, "train": False}
    )
    with EventLog(db) as log:
        Runner(
            log,
            settings,
            backend_factory=lambda s, m: FakeBackend(),
            resolver=lambda m: ModelIdentity(m, "f" * 64),
        ).run()
    src = LogSource(db, run_id="main")
    drawn = {r[0] for r in q(db, "SELECT prompt_key FROM iteration_prompts")}
    assert len(drawn) == 3
    assert {p.prompt_key for p in src.prompts(iteration=1)} == drawn
    assert src.prompt_count(iteration=1) == 3 and src.prompt_count() == 7
    (row,) = src.overview().iterations
    assert row.drawn == 3
