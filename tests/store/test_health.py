"""Run health on hand-built logs: the rationale and position-consistency counters, their rates
and alarms against hand counts, and the SQL macro adding up over any split of the log."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from mrtui.store import connect
from mrtui.store import health as store_health
from mrtui.store.events import SENTENCE_WORDS
from mrtui.store.health import ALARM_MIN_COUNT, ALARMS, COUNTERS, RATES, Health, orders_agree

from .logbuilder import RUN, LogBuilder


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """14 judgements (10 with a word count, 5 of them under 3 words; 8 of 13 valid scores are
    5) and 22 verdicts that complete 10 pairs of judgements, 5 of them position-consistent."""
    b = LogBuilder(tmp_path / "h.duckdb").prompt("P")
    b.response("P", "a", "aaa", [5, 5, 5, 4], 0, words=[0, 2, 12, 4])
    b.response("P", "b", "bbb", [5, 5, 3, None], 1, words=[1, 9, 9, 0])
    b.response("P", "c", "ccc", [5, 2, 1, 0], 2, words=[None, None, 3, 2])
    b.response("P", "d", "ddd", [5, 5], 3)  # v1 judgements: no word count
    # a: (0,1) j0 wins both ways; (0,2) the first shown wins both times; (1,2) j2 both ways;
    # (0,3) one order only; (1,3) a tie and a win; (2,3) unparsed both ways
    b.verdict("a", 0, 1, "A").verdict("a", 1, 0, "B")
    b.verdict("a", 0, 2, "A").verdict("a", 2, 0, "A")
    b.verdict("a", 1, 2, "B").verdict("a", 2, 1, "A")
    b.verdict("a", 0, 3, "A")
    b.verdict("a", 1, 3, None, "tie").verdict("a", 3, 1, "B")
    b.verdict("a", 2, 3, None, "no winner line").verdict("a", 3, 2, None)
    # b: (0,1) j1 both ways, then a later second verdict of one order (not counted again);
    # (0,2) the reverse order logged first, j2 both ways; (1,2) a tie both ways
    b.verdict("b", 0, 1, "B").verdict("b", 1, 0, "A")
    b.verdict("b", 2, 0, "A").verdict("b", 0, 2, "B")
    b.verdict("b", 1, 2, None, "tie").verdict("b", 2, 1, None, "tie")
    b.verdict("b", 0, 1, "A", key="b.m01-again")
    # c: (0,1) the first shown wins both times; (2,3) j3 both ways
    b.verdict("c", 0, 1, "A").verdict("c", 1, 0, "A")
    b.verdict("c", 2, 3, "B").verdict("c", 3, 2, "A")
    return b.write()


def _rows(db: Path, sql: str) -> list[dict[str, Any]]:
    with connect(db) as con:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _top(db: Path) -> int:
    with connect(db) as con:
        return con.execute("SELECT max(seq) FROM events").fetchall()[0][0]


def _read(db: Path, lo: int, hi: int | None = None) -> Health:
    with connect(db) as con:
        got = store_health.read(con, lo, hi)
    assert set(got) <= {(RUN, 1)}
    return got.get((RUN, 1), Health())


def test_counters_rates_and_alarms_match_hand_counts(log: Path) -> None:
    [row] = _rows(log, "SELECT * FROM iteration_health")
    assert row["judgements"] == 14 and row["valid_judgements"] == 13
    assert row["rationales_counted"] == 10 and row["judgements_without_rationale"] == 5
    assert row["no_rationale_share"] == pytest.approx(0.5)
    assert row["scores_5"] == 8 and row["share_of_fives"] == pytest.approx(8 / 13)
    assert row["verdicts"] == 22
    assert row["verdict_pairs"] == 10 and row["consistent_pairs"] == 5
    assert row["position_consistency"] == pytest.approx(0.5)
    assert row["truncated_share"] == 0
    h = Health.from_row(row)
    assert h.as_dict() == pytest.approx({k: row[k] for k in h.as_dict()})
    # 0.5 is not below 0.5: the consistency alarm stays off at its threshold
    assert h.alarms() == ["no_rationale", "always_five"]


def test_a_judgement_without_the_count_is_left_out_of_the_rationale_share(log: Path) -> None:
    rows = _rows(
        log,
        "SELECT rationale_words, count(*) AS n FROM events "
        "WHERE event_type = 'JudgementRecorded' GROUP BY ALL ORDER BY ALL",
    )
    counts = {r["rationale_words"]: r["n"] for r in rows}
    assert counts.pop(None) == 4  # c.j0, c.j1 and both of d: no count, not in the share
    assert sum(n for w, n in counts.items() if w < SENTENCE_WORDS) == 5
    assert sum(counts.values()) == 10


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_counters_add_up_over_every_split_of_the_log(log: Path, step: int) -> None:
    """What the TUI does: counters of (0, s1], then (s1, s2], ... add up to the whole log,
    wherever a cut falls (between the two orders of a pair included)."""
    top = _top(log)
    whole = _read(log, 0)
    total = Health()
    for lo in range(0, top, step):
        total.add(_read(log, lo, min(lo + step, top)))
    assert total.counts == whole.counts


def test_a_pair_is_counted_at_the_verdict_that_completes_it(log: Path) -> None:
    seqs = {
        r["key"]: r["seq"]
        for r in _rows(log, "SELECT key, seq FROM events WHERE event_type = 'MetaVerdictRecorded'")
    }
    # (a, 0-1): the second order completes it, and only that verdict's range counts the pair
    done = seqs["a.m10"]
    assert _read(log, 0, done - 1).verdict_pairs == 0
    assert _read(log, done - 1, done).verdict_pairs == 1
    assert _read(log, done - 1, done).consistent_pairs == 1
    assert _read(log, done, _top(log)).verdict_pairs == 9
    # a later verdict of an order already logged completes nothing
    again = seqs["b.m01-again"]
    assert _read(log, again - 1, again).verdict_pairs == 0


def test_consistency_is_the_same_winner_in_both_orders(tmp_path: Path) -> None:
    """Every combination of verdicts in the two orders, through SQL and ``orders_agree``."""
    outcomes: list[tuple[str | None, str | None]] = [
        ("A", None),
        ("B", None),
        (None, "tie"),
        (None, "no winner line"),
    ]
    b = LogBuilder(tmp_path / "c.duckdb").prompt("P")
    b.response("P", "z", "zzz", [1] * 8, 0)
    pairs = list(itertools.combinations(range(8), 2))
    combos = list(itertools.product(outcomes, repeat=2))
    for (m, n), ((w_mn, e_mn), (w_nm, e_nm)) in zip(pairs, combos, strict=False):
        b.verdict("z", m, n, w_mn, e_mn).verdict("z", n, m, w_nm, e_nm)
    db = b.write()
    expected = sum(orders_agree(mn[0], nm[0]) for mn, nm in combos)
    assert expected == 2  # A then B, B then A
    h = _read(db, 0)
    assert h.verdict_pairs == len(combos) == 16
    assert h.consistent_pairs == expected


def test_orders_agree_needs_a_winner_in_each_order() -> None:
    assert orders_agree("A", "B") and orders_agree("B", "A")
    for w in ("A", "B", None):
        assert not orders_agree(w, w)
        assert not orders_agree(w, None) and not orders_agree(None, w)


def test_alarms_name_rates_and_need_enough_items() -> None:
    for name, alarm in ALARMS.items():
        assert alarm.rate in RATES, name
        assert alarm.op in ("<", ">") and 0 < alarm.threshold < 1
        assert alarm.advice and alarm.label
    h = Health()
    h.counts.update(rationales_counted=9, judgements_without_rationale=9)
    assert h.no_rationale_share == 1.0 and h.alarms() == []  # 9 < ALARM_MIN_COUNT items
    h.counts.update(rationales_counted=ALARM_MIN_COUNT, judgements_without_rationale=3)
    assert h.alarms() == ["no_rationale"]
    h.counts.update(verdict_pairs=20, consistent_pairs=9)
    assert h.alarms() == ["no_rationale", "position_bias"]
    assert ALARMS["position_bias"].describe(h.position_consistency) == (
        "meta-judge position consistency 45% < 50%"
    )
    assert not ALARMS["position_bias"].on(None) and not ALARMS["truncated"].on(0.2)
    assert ALARMS["truncated"].on(0.21) and ALARMS["position_bias"].on(0.49)


def test_every_counter_has_a_help_and_a_known_source() -> None:
    for name, c in COUNTERS.items():
        assert c.help and c.source in ("events", "pairs"), name
    sql = store_health.view_sql()
    for name in COUNTERS:
        assert f"AS {name}" in sql or f"c.{name}" in sql, name
