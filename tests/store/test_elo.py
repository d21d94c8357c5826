"""The Bradley–Terry fit and its prior strength: against an independent maximum-likelihood
fit, under tiny priors, and through the SQL views with the iteration's setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mrtui.store import connect
from mrtui.store.elo import MIN_PRIOR_GAMES, fit_bt

from .logbuilder import LogBuilder


def mm_mle(w: np.ndarray, tol: float = 1e-14, max_iters: int = 200_000) -> np.ndarray:
    """Plain Bradley–Terry MLE of weighted wins by the MM (Zermelo) iteration of Hunter (2004):
    γ_i ← W_i / Σ_j N_ij / (γ_i + γ_j), W_i the weighted wins of i, N_ij the weight of the
    games between i and j. Log-strengths, centred (the MLE is defined up to a shift)."""
    wins = w.sum(axis=1)
    games = w + w.T
    log_g = np.zeros(len(w))
    for _ in range(max_iters):
        g = np.exp(log_g)
        new = np.log(wins) - np.log((games / (g[:, None] + g[None, :])).sum(axis=1))
        new -= new.mean()
        if np.abs(new - log_g).max() < tol:
            return new
        log_g = new
    raise AssertionError("the MM iteration did not converge")


def strongly_connected(w: np.ndarray) -> bool:
    reach = (w > 0) | np.eye(len(w), dtype=bool)
    for _ in range(len(w)):
        reach = (reach.astype(int) @ reach.astype(int)) > 0
    return bool(reach.all())


def random_connected(rng: np.random.Generator, n: int) -> np.ndarray:
    """Weighted wins whose comparison graph is strongly connected (so the MLE is finite):
    sparse random weights plus a random cycle through every judgement."""
    w = rng.uniform(0.05, 1.0, (n, n)) * (rng.random((n, n)) < 0.4)
    order = rng.permutation(n)
    w[order, np.roll(order, -1)] = rng.uniform(0.05, 1.0, n)
    np.fill_diagonal(w, 0.0)
    assert strongly_connected(w)
    return w


def differences(eps: np.ndarray) -> np.ndarray:
    return eps[:, None] - eps[None, :]


def penalised_gradient(w: np.ndarray, eps: np.ndarray, prior: float) -> np.ndarray:
    """∂/∂ε of Σ w_mn log σ(ε_m − ε_n) + (g/2)·Σ [log σ(ε_m) + log σ(−ε_m)], written out
    separately from store/elo.py."""
    d = differences(eps)
    lose, win = 1 / (1 + np.exp(d)), 1 / (1 + np.exp(-d))  # P(m would have lost / won to n)
    return (w * lose).sum(axis=1) - (w.T * win).sum(axis=1) - prior / 2 * np.tanh(eps / 2)


@pytest.mark.parametrize("prior, atol", [(1e-6, 1e-4), (MIN_PRIOR_GAMES, 1e-7)])
def test_a_near_zero_prior_gives_the_maximum_likelihood_fit(prior: float, atol: float) -> None:
    rng = np.random.default_rng(2024)
    for n in (2, 3, 5, 8, 11):
        mats = [random_connected(rng, n) for _ in range(8)]
        eps = fit_bt(np.stack(mats), prior)
        for w, e in zip(mats, eps, strict=True):
            mle = mm_mle(w)
            # the MLE is defined up to a shift, so compare every pairwise difference
            np.testing.assert_allclose(differences(e), differences(mle), atol=atol)


def test_each_response_can_have_its_own_prior() -> None:
    rng = np.random.default_rng(7)
    mats = np.stack([random_connected(rng, 6) for _ in range(4)])
    priors = np.array([1e-6, 0.5, 1.0, 30.0])
    together = fit_bt(mats, priors)
    for b in range(4):
        np.testing.assert_allclose(together[b], fit_bt(mats[b : b + 1], priors[b])[0], atol=1e-12)


def test_a_bigger_prior_shrinks_toward_zero() -> None:
    rng = np.random.default_rng(3)
    w = np.stack([rng.random((7, 7)) * (rng.random((7, 7)) < 0.5) for _ in range(20)])
    for b in range(len(w)):
        np.fill_diagonal(w[b], 0.0)
    priors = [1e-6, 1e-3, 0.1, 1.0, 5.0, 100.0]
    fits = [fit_bt(w, g) for g in priors]
    # penalty P(ε) = Σ log(2 + 2 cosh ε): it can only fall as the prior weighs more, and the
    # fit to the data (log-likelihood) can only get worse
    penalty = [np.log(2 + 2 * np.cosh(e)).sum(axis=1) for e in fits]
    loglik = [
        -(w * np.logaddexp(0, -(e[:, :, None] - e[:, None, :]))).sum(axis=(1, 2)) for e in fits
    ]
    for weaker, stronger in zip(range(len(priors) - 1), range(1, len(priors)), strict=True):
        assert (penalty[stronger] <= penalty[weaker] + 1e-9).all()
        assert (loglik[stronger] <= loglik[weaker] + 1e-9).all()
    spread = [np.ptp(e, axis=1) for e in fits]
    assert (spread[-1] < spread[0]).all()
    assert np.abs(fits[-1]).max() < 0.1  # 100 virtual games each pin every strength near 0


def test_a_positive_prior_can_change_the_mle_ranking() -> None:
    # A beat C 2:1 on little weight, B beat C 10:7 on much more: the MLE ranks A first
    # (ln 2 > ln 10/7); a prior of one game shrinks A's sparse evidence more, so B leads.
    w = np.zeros((1, 3, 3))
    w[0, 0, 2], w[0, 2, 0], w[0, 1, 2], w[0, 2, 1] = 0.1, 0.05, 1.0, 0.7
    near_mle = fit_bt(w, 1e-6)[0]
    assert near_mle[0] - near_mle[2] == pytest.approx(np.log(2), abs=1e-4)
    assert near_mle[1] - near_mle[2] == pytest.approx(np.log(1 / 0.7), abs=1e-4)
    one_game = fit_bt(w, 1.0)[0]
    assert one_game[1] > one_game[0] > one_game[2]


def test_a_judgement_that_won_everything_is_large_but_finite() -> None:
    w = np.zeros((3, 4, 4))
    w[:, 0, 1] = w[:, 0, 2] = w[:, 0, 3] = 1.0  # judgement 0 beat everyone
    w[:, 1, 2], w[:, 2, 1], w[:, 2, 3], w[:, 3, 2], w[:, 1, 3] = 0.6, 0.4, 0.7, 0.3, 0.5
    for prior in (1.0, 1e-6, MIN_PRIOR_GAMES):
        eps = fit_bt(w, prior)
        assert np.isfinite(eps).all()
        e = eps[0]
        assert e[0] > e[1:].max()
        if prior < 1e-3:
            # stationarity of ε_0: Σ_n w_0n σ(ε_n − ε_0) = (g/2)·tanh(ε_0 / 2); far ahead,
            # σ(ε_n − ε_0) ≈ exp(ε_n − ε_0) and tanh ≈ 1, so ε_0 ≈ ln(Σ_n w_0n e^ε_n / (g/2)):
            # it grows like ln(1 / g) and stays finite
            expected = np.log((w[0, 0, 1:] * np.exp(e[1:])).sum() / (prior / 2))
            assert e[0] == pytest.approx(expected, abs=1e-4)
            assert e[0] > 14
    # below the numerical floor the fit is the floor's
    np.testing.assert_array_equal(fit_bt(w, MIN_PRIOR_GAMES / 100), fit_bt(w, MIN_PRIOR_GAMES))


def test_unbeaten_judgements_rank_by_their_weighted_wins_and_tie_exactly() -> None:
    # 0 and 1 each beat 2 and 3 (equal weights), 4 beat only 3, 2 and 3 split their games
    w = np.zeros((1, 5, 5))
    w[0, 0, 2] = w[0, 0, 3] = w[0, 1, 2] = w[0, 1, 3] = 1.0
    w[0, 4, 3] = 0.5
    w[0, 2, 3], w[0, 3, 2] = 0.5, 0.5
    for prior in (1.0, 1e-6, MIN_PRIOR_GAMES):
        e = fit_bt(w, prior)[0]
        assert round(e[0], 6) == round(e[1], 6)  # symmetric roles: an exact tie
        assert min(e[0], e[1]) > e[4] > max(e[2], e[3])


@pytest.mark.parametrize("prior", [1e-6, MIN_PRIOR_GAMES])
def test_tiny_priors_converge_everywhere(prior: float) -> None:
    rng = np.random.default_rng(11)
    n = 9
    shapes = {
        "dense": rng.random((50, n, n)),
        "sparse": rng.random((50, n, n)) * (rng.random((50, n, n)) < 0.2),
        "total order": np.triu(rng.random((50, n, n)), 1),
        "mixed scales": 10.0 ** rng.uniform(-4, 0, (50, n, n)) * (rng.random((50, n, n)) < 0.4),
        "no games": np.zeros((50, n, n)),
    }
    perm = rng.permutation(n)
    for name, w in shapes.items():
        w[:, np.arange(n), np.arange(n)] = 0.0
        eps = fit_bt(w, prior)
        assert np.isfinite(eps).all(), name
        for b in range(len(w)):
            grad = penalised_gradient(w[b], eps[b], prior)
            # each judgement's gradient vanishes relative to the terms it sums
            d = differences(eps[b])
            lose, win = 1 / (1 + np.exp(d)), 1 / (1 + np.exp(-d))
            scale = (w[b] * lose).sum(axis=1) + (w[b].T * win).sum(axis=1) + prior
            assert (np.abs(grad) <= 1e-9 * scale).all(), name
        # relabelling the judgements relabels the fit, to far below the views' 6 decimals
        moved = fit_bt(w[:, perm][:, :, perm], prior)
        np.testing.assert_allclose(moved, eps[:, perm], atol=1e-7, err_msg=name)
    assert (fit_bt(shapes["no games"], prior) == 0).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_the_prior_must_be_a_positive_number(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_bt(np.zeros((1, 2, 2)), bad)


# -- through the views ---------------------------------------------------------------------


def q(db: Path, sql: str) -> list[dict[str, Any]]:
    with connect(db) as con:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _elo_log(path: Path, **settings: Any) -> Path:
    """One meta-judged response: j3 wins all its verdicts (an infinite MLE), the rest mixed."""
    b = LogBuilder(path, **settings).prompt("P")
    b.response("P", "x", "resp x", [1, 3, 5, 4], 0)
    b.verdict("x", 0, 1, "A").verdict("x", 1, 0, "A")
    b.verdict("x", 0, 2, "B").verdict("x", 2, 0, "A")
    b.verdict("x", 1, 2, "A").verdict("x", 2, 1, "A")
    b.verdict("x", 3, 0, "A").verdict("x", 0, 3, "B")
    b.verdict("x", 3, 2, "A").verdict("x", 2, 3, "B")
    return b.write()


def _epsilons(db: Path, source: str = "judgement_elo") -> dict[str, float]:
    return {r["judgement_key"]: r["epsilon"] for r in q(db, f"SELECT * FROM {source}")}


def _refit(db: Path, prior: float) -> dict[str, float]:
    """ε fitted in Python from the view's battles, for the same judgement order."""
    keys = [r["judgement_key"] for r in q(db, "SELECT judgement_key FROM judgement_elo "
                                               "ORDER BY judge_index")]  # fmt: skip
    w = np.zeros((1, len(keys), len(keys)))
    for r in q(db, "SELECT judgement_m, judgement_n, b_mn FROM judge_battles"):
        w[0, keys.index(r["judgement_m"]), keys.index(r["judgement_n"])] = r["b_mn"]
    return dict(zip(keys, fit_bt(w, prior)[0], strict=True))


def test_a_log_without_the_setting_fits_with_one_game(tmp_path: Path) -> None:
    db = _elo_log(tmp_path / "old.duckdb")  # LogBuilder's settings predate bt_prior_games
    assert q(db, "SELECT bt_prior_games FROM iteration_settings")[0]["bt_prior_games"] is None
    rows = q(db, "SELECT * FROM judgement_elo")
    assert {r["bt_prior_games"] for r in rows} == {1.0}
    got = _epsilons(db)
    assert got == _epsilons(db, "judgement_elo_with(bt_prior_games := 1.0)")
    assert got == pytest.approx(_refit(db, 1.0), abs=1e-12)
    pair = q(db, "SELECT * FROM judge_pair_candidates")[0]
    assert pair["bt_prior_games"] == 1.0 and pair["chosen_key"] == "x.j3"


def test_the_iteration_setting_changes_the_fit(tmp_path: Path) -> None:
    default = _elo_log(tmp_path / "default.duckdb")
    tiny = _elo_log(tmp_path / "tiny.duckdb", bt_prior_games=1e-6)
    strong = _elo_log(tmp_path / "strong.duckdb", bt_prior_games=20.0)
    e1, e_tiny, e_strong = _epsilons(default), _epsilons(tiny), _epsilons(strong)
    assert e_tiny == pytest.approx(_refit(tiny, 1e-6), abs=1e-12)
    assert e_strong == pytest.approx(_refit(strong, 20.0), abs=1e-12)
    # the unbeaten judgement runs away as the prior fades, and everything shrinks under a
    # strong one
    assert e_tiny["x.j3"] > 10 > e1["x.j3"] > e_strong["x.j3"] > 0
    assert all(abs(e_strong[k]) < abs(e1[k]) < abs(e_tiny[k]) for k in e1)
    # the argument overrides the setting, both ways
    assert _epsilons(default, "judgement_elo_with(bt_prior_games := 1e-6)") == e_tiny
    assert _epsilons(tiny, "judgement_elo_with(bt_prior_games := NULL)") == e_tiny
    assert _epsilons(tiny, "judgement_elo_with(bt_prior_games := 1.0)") == e1
    cands = q(tiny, "SELECT * FROM judge_pair_candidates")[0]
    assert cands["bt_prior_games"] == 1e-6
    assert cands["chosen_epsilon"] == pytest.approx(e_tiny["x.j3"])
    elo = {
        r["kind"]: r["chosen_elo"]
        for r in q(default, "SELECT * FROM preference_pairs_with(bt_prior_games := 1e-6)")
    }
    assert elo["judge"] == pytest.approx(1000 + 400 * e_tiny["x.j3"] / np.log(10))


def test_the_sql_function_takes_a_prior_per_row(tmp_path: Path) -> None:
    db = _elo_log(tmp_path / "l.duckdb")
    rows = q(
        db,
        "SELECT g, mrtui_bt(3, [1, 2, 3], [2, 3, 1], [1.0, 0.5, 0.25], g) AS eps "
        "FROM (VALUES (1.0), (1e-6), (42.0), (1.0)) t(g)",
    )
    w = np.zeros((1, 3, 3))
    w[0, 0, 1], w[0, 1, 2], w[0, 2, 0] = 1.0, 0.5, 0.25
    for r in rows:
        np.testing.assert_allclose(r["eps"], fit_bt(w, r["g"])[0], atol=1e-12)
    assert rows[0]["eps"] == rows[3]["eps"] != rows[1]["eps"]


def test_a_tied_row_names_the_first_tied_judgements(tmp_path: Path) -> None:
    b = LogBuilder(tmp_path / "t.duckdb").prompt("P")
    b.response("P", "x", "resp x", [2, 4, 4, 1], 0)
    for top in (2, 1):  # j1 and j2 each beat j0 and j3 in both orders, never meet
        for low in (0, 3):
            b.verdict("x", top, low, "A").verdict("x", low, top, "B")
    db = b.write()
    row = q(db, "SELECT * FROM judge_pair_candidates")[0]
    assert row["drop_reason"] == "elo_tie"
    assert (row["chosen_key"], row["rejected_key"]) == ("x.j1", "x.j0")
    scoped = q(db, "SELECT * FROM judge_pair_candidates WHERE response_key = 'x'")[0]
    assert scoped == row
