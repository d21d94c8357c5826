"""Pair, battle and Elo rules on hand-built logs, checked against hand computation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mrtui.store import connect
from mrtui.store.elo import fit_bt

from .logbuilder import LogBuilder


def q(db: Path, sql: str) -> list[dict[str, Any]]:
    with connect(db) as con:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def actor_log(tmp_path: Path) -> Path:
    b = LogBuilder(tmp_path / "a.duckdb").prompt("P")
    b.response("P", "a", "a" * 300, [5, 5, 5], 0)
    b.response("P", "b", "b" * 100, [4, 4, 5], 1)
    b.response("P", "c", "c" * 50, [3, 3, 3], 2)
    b.response("P", "d", "d" * 80, [1, 1, 1], 3)
    b.response("P", "e", "e" * 400, [2, 1, 1], 4)
    b.prompt("T", "all tie").response("T", "t1", "x", [3, 3], 0).response(
        "T", "t2", "yy", [3, 3], 1
    )
    b.prompt("U", "unparseable")
    b.response("U", "g", "g" * 10, [5, None], 0)
    b.response("U", "h", "h" * 99, [None, None], 1)
    b.response("U", "i", "i" * 20, [2], 2)
    return b.write()


def test_response_scores_exclude_unparseable_judgements(actor_log: Path) -> None:
    rows = {r["response_key"]: r for r in q(actor_log, "SELECT * FROM response_scores")}
    assert rows["g"]["mean_score"] == 5 and rows["g"]["valid_count"] == 1
    assert rows["g"]["judgement_count"] == 2
    assert rows["h"]["mean_score"] is None and rows["h"]["valid_count"] == 0
    assert rows["b"]["mean_score"] == pytest.approx(13 / 3)
    assert rows["e"]["score_variance"] == pytest.approx(np.var([2, 1, 1]))


def test_rho_zero_is_best_versus_worst(actor_log: Path) -> None:
    pairs = {r["prompt_key"]: r for r in q(actor_log, "SELECT * FROM actor_pairs")}
    assert (pairs["P"]["chosen_key"], pairs["P"]["rejected_key"]) == ("a", "d")
    assert (pairs["U"]["chosen_key"], pairs["U"]["rejected_key"]) == ("g", "i")
    assert "T" not in pairs  # every score ties: no pair


def test_rho_picks_the_shortest_good_and_the_longest_bad(actor_log: Path) -> None:
    # ρ = 0.25: chosen band [0.75·5 + 0.25·1, 5] = [4, 5] → a (300), b (100): shortest b.
    # rejected band [1, 0.75·1 + 0.25·5] = [1, 2] → d (80), e (400): longest e.
    rows = q(actor_log, "SELECT * FROM actor_pairs_with(rho := 0.25) WHERE prompt_key = 'P'")
    assert (rows[0]["chosen_key"], rows[0]["rejected_key"]) == ("b", "e")
    assert rows[0]["rho"] == 0.25


def test_chosen_length_cap_drops_the_pair(actor_log: Path) -> None:
    rows = q(
        actor_log,
        "SELECT * FROM actor_pairs_with(rho := 0.25, max_chosen_chars := 90) "
        "WHERE prompt_key = 'P'",
    )
    assert rows == []
    rows = q(
        actor_log, "SELECT * FROM actor_pairs_with(max_chosen_chars := 300) WHERE prompt_key = 'P'"
    )
    assert rows[0]["chosen_key"] == "a"


def test_rederiving_with_other_settings_generates_nothing(actor_log: Path) -> None:
    before = q(actor_log, "SELECT count(*) AS n FROM events")[0]["n"]
    q(actor_log, "SELECT * FROM preference_pairs_with(rho := 0.5)")
    assert q(actor_log, "SELECT count(*) AS n FROM events")[0]["n"] == before


def test_iteration_settings_drive_the_default_view(tmp_path: Path) -> None:
    b = LogBuilder(tmp_path / "s.duckdb", rho=0.25).prompt("P")
    b.response("P", "a", "a" * 300, [5, 5, 5], 0).response("P", "b", "b" * 100, [4, 4, 5], 1)
    b.response("P", "d", "d" * 80, [1, 1, 1], 2).response("P", "e", "e" * 400, [2, 1, 1], 3)
    rows = q(b.write(), "SELECT * FROM actor_pairs")
    assert (rows[0]["chosen_key"], rows[0]["rejected_key"]) == ("b", "e")


def _battle_log(path: Path, **settings: Any) -> Path:
    b = LogBuilder(path, **settings).prompt("P")
    b.response("P", "x", "resp x", [1, 3, 5], 0)
    b.response("P", "x2", "resp x2", [2, 2, 2], 1)  # variance 0: never a meta target
    b.verdict("x", 0, 1, "A").verdict("x", 1, 0, "A")
    b.verdict("x", 0, 2, "B").verdict("x", 2, 0, "A")
    b.verdict("x", 1, 2, "A").verdict("x", 2, 1, None)
    b.prompt("Q", "second prompt")
    b.response("Q", "y", "resp y", [2, 4], 0)
    b.verdict("y", 0, 1, "B").verdict("y", 1, 0, "B")
    return b.write()


def test_position_bias_weights_match_a_hand_computation(tmp_path: Path) -> None:
    db = _battle_log(tmp_path / "b.duckdb")
    rows = q(db, "SELECT * FROM judge_battles WHERE response_key = 'x'")
    b = {(r["judgement_m"][-1], r["judgement_n"][-1]): r for r in rows}
    # x: first-shown wins 4 times, second-shown once → ω1 = 1/5, ω2 = 4/5.
    assert b[("0", "1")]["win_1st"] == 4 and b[("0", "1")]["win_2nd"] == 1
    assert b[("0", "1")]["omega1"] == pytest.approx(0.2)
    assert b[("0", "1")]["omega2"] == pytest.approx(0.8)
    expected = {
        ("0", "1"): 0.2,
        ("1", "0"): 0.2,
        ("0", "2"): 0.0,
        ("2", "0"): 1.0,
        ("1", "2"): 0.2,
        ("2", "1"): 0.0,
    }
    assert {k: pytest.approx(v) for k, v in expected.items()} == {
        k: r["b_mn"] for k, r in b.items()
    }
    assert b[("2", "1")]["r_mn"] == 0  # the unparseable verdict counts for nobody


def test_weights_can_be_counted_over_the_whole_iteration(tmp_path: Path) -> None:
    db = _battle_log(tmp_path / "b.duckdb")
    rows = q(
        db,
        "SELECT DISTINCT win_1st, win_2nd, omega1 FROM "
        "judge_battles_with(weights_scope := 'iteration')",
    )
    assert len(rows) == 1  # x: 4 vs 1, y: 0 vs 2 → together 4 vs 3
    assert (rows[0]["win_1st"], rows[0]["win_2nd"]) == (4, 3)
    assert rows[0]["omega1"] == pytest.approx(3 / 7)
    db2 = _battle_log(tmp_path / "b2.duckdb", weights_scope="iteration")
    assert q(db2, "SELECT DISTINCT omega1 FROM judge_battles")[0]["omega1"] == pytest.approx(3 / 7)


def test_elo_ranks_judgements_and_picks_the_judge_pair(tmp_path: Path) -> None:
    db = _battle_log(tmp_path / "b.duckdb")
    elo = {
        r["judgement_key"]: r for r in q(db, "SELECT * FROM judgement_elo WHERE response_key = 'x'")
    }
    assert elo["x.j2"]["epsilon"] > elo["x.j1"]["epsilon"] > elo["x.j0"]["epsilon"]
    assert elo["x.j2"]["weighted_wins"] == pytest.approx(1.0)
    pairs = {r["response_key"]: r for r in q(db, "SELECT * FROM judge_pairs")}
    assert (pairs["x"]["chosen_key"], pairs["x"]["rejected_key"]) == ("x.j2", "x.j0")
    assert (pairs["x"]["chosen_score"], pairs["x"]["rejected_score"]) == (5, 1)
    assert "x2" not in {r["response_key"] for r in q(db, "SELECT * FROM judgement_elo")}


def test_elo_ties_are_dropped(tmp_path: Path) -> None:
    db = _battle_log(tmp_path / "b.duckdb")
    # y: the second-shown judgement always wins, so ω1 = 1 and ω2 = 0: j1 wins once with
    # weight 1 (shown second), j0 wins once with weight 1 → equal strength.
    cands = {r["response_key"]: r for r in q(db, "SELECT * FROM judge_pair_candidates")}
    assert cands["y"]["drop_reason"] == "elo_tie"
    assert "y" not in {r["response_key"] for r in q(db, "SELECT * FROM judge_pairs")}


def test_same_score_and_length_cap_rules(tmp_path: Path) -> None:
    b = LogBuilder(tmp_path / "c.duckdb").prompt("P")
    b.response("P", "z", "resp z", [3, 4, 3], 0)
    b.verdict("z", 0, 2, "A").verdict("z", 2, 0, "B")  # j0 beats j2 in both orders
    b.verdict("z", 0, 1, "A").verdict("z", 1, 0, "B").verdict("z", 1, 2, "A")
    b.verdict("z", 2, 1, "B")
    db = b.write()
    base = q(db, "SELECT * FROM judge_pair_candidates")[0]
    assert (base["chosen_key"], base["rejected_key"]) == ("z.j0", "z.j2")
    assert base["drop_reason"] is None
    same = q(db, "SELECT * FROM judge_pair_candidates_with(drop_same_score := true)")[0]
    assert same["drop_reason"] == "same_score"
    capped = q(db, "SELECT * FROM judge_pair_candidates_with(judge_max_chars := 5)")[0]
    assert capped["drop_reason"] == "chosen_too_long"


def test_preference_pairs_fill_templates_without_rescanning_user_text(tmp_path: Path) -> None:
    b = LogBuilder(tmp_path / "p.duckdb").prompt("P", "say {response} literally")
    b.response("P", "x", "resp x", [1, 3, 5], 0).response("P", "w", "resp w", [0, 0, 0], 1)
    b.verdict("x", 0, 2, "B").verdict("x", 2, 0, "A")
    rows = {r["kind"]: r for r in q(b.write(), "SELECT * FROM preference_pairs")}
    assert rows["actor"]["prompt"] == "Q: say {response} literally"
    assert rows["actor"]["chosen"] == "resp x" and rows["actor"]["rejected"] == "resp w"
    assert rows["judge"]["prompt"] == "say {response} literally | resp x"
    assert rows["judge"]["chosen"].startswith("judgement 2 of x")
    assert rows["judge"]["chosen_elo"] > rows["judge"]["rejected_elo"]


def test_bt_fit_is_the_penalised_maximum() -> None:
    rng = np.random.default_rng(0)
    w = rng.random((5, 6, 6)) * (rng.random((5, 6, 6)) < 0.6)
    for i in range(6):
        w[:, i, i] = 0
    eps = fit_bt(w)
    # Gradient of Σ w_mn log σ(ε_m − ε_n) + ½ log σ(ε_m) + ½ log σ(−ε_m) vanishes.
    for b in range(5):
        e = eps[b]
        p = 1 / (1 + np.exp(-(e[:, None] - e[None, :])))
        s = 1 / (1 + np.exp(-e))
        grad = (w[b] * (1 - p)).sum(1) - (w[b].T * p).sum(1) + 0.5 * (1 - s) - 0.5 * s
        assert np.abs(grad).max() < 1e-6
    # A judgement that wins everything gets a finite, highest strength.
    sweep = np.zeros((1, 3, 3))
    sweep[0, 0, 1] = sweep[0, 0, 2] = 1
    out = fit_bt(sweep)[0]
    assert np.isfinite(out).all() and out.argmax() == 0
