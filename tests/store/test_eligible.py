"""Judgements without enough rationale stay out of meta-judging and judge pairs (hand-built
logs, so the views are checked apart from the loop that normally keeps them out)."""

from __future__ import annotations

from pathlib import Path

from mrtui.store import connect

from .logbuilder import LogBuilder


def _log(tmp_path: Path, **settings: object) -> Path:
    b = LogBuilder(tmp_path / "log.duckdb", **settings).prompt("p1")
    # j1 has a bare score (0 words); j3 was logged before rationales were counted (NULL)
    b.response("p1", "r1", "an answer", [5, 1, 3, 2], words=[10, 0, 8, None])
    for m, n in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1), (2, 3), (3, 2), (0, 3), (3, 0)]:
        b.verdict("r1", m, n, "B" if 1 in (m, n) and m != 1 else "A")
    return b.write()


def _q(db: Path, sql: str) -> list[tuple[object, ...]]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


def test_a_judgement_below_the_minimum_rationale_is_not_eligible(tmp_path: Path) -> None:
    db = _log(tmp_path, min_rationale_words=3)
    eligible = _q(db, "SELECT judge_index, eligible FROM judgements ORDER BY judge_index")
    assert eligible == [(0, True), (1, False), (2, True), (3, True)]
    assert _q(db, "SELECT valid_count, eligible_count FROM response_scores") == [(4, 3)]
    ranked = {r[0] for r in _q(db, "SELECT judge_index FROM judgement_elo")}
    assert ranked == {0, 2, 3}  # the bare score won its battles, yet is not ranked
    sides = _q(db, "SELECT chosen_key, rejected_key FROM judge_pair_candidates")
    assert sides and all("r1.j1" not in pair for pair in sides)


def test_min_rationale_words_zero_keeps_every_valid_judgement(tmp_path: Path) -> None:
    db = _log(tmp_path, min_rationale_words=0)
    assert _q(db, "SELECT bool_and(eligible) FROM judgements") == [(True,)]
    assert {r[0] for r in _q(db, "SELECT judge_index FROM judgement_elo")} == {0, 1, 2, 3}


def test_a_log_without_the_setting_keeps_every_valid_judgement(tmp_path: Path) -> None:
    db = _log(tmp_path)  # iteration settings logged before min_rationale_words existed
    assert _q(db, "SELECT count(*) FILTER (WHERE eligible) FROM judgements") == [(4,)]
