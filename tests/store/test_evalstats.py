"""Evaluation results with bootstrap intervals: means, clustered ratios and AlpacaEval's
length-controlled win rate, against hand-derived values, and through ``mrtui_eval_ci`` in SQL."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from mrtui.store import connect, evalstats
from mrtui.store.evalstats import RIDGE, bootstrap, fit_lc, length_feature

from .logbuilder import LogBuilder


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# --- mean and ratio ---------------------------------------------------------------------


def test_mean_value_interval_and_determinism() -> None:
    y = np.random.default_rng(0).integers(0, 2, 200).astype(float)
    value, lo, hi = bootstrap("mean", y)
    assert value == pytest.approx(y.mean(), abs=1e-15)
    assert lo < value < hi
    assert bootstrap("mean", y) == (value, lo, hi)
    assert bootstrap("mean", list(y)) == (value, lo, hi)  # plain lists work the same
    assert all(type(v) is float for v in (value, lo, hi))


def test_the_order_of_the_items_does_not_change_the_interval() -> None:
    """SQL's list() hands items over in any order (it did: one CI run's TUI and its test read
    the same rows and got [0.0, 66.7] and [0.0, 62.6]); the interval depends on the items only."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 5).astype(float)
    x = rng.integers(1, 4, 5).astype(float)
    w, dl = rng.random(9), rng.normal(0, 50, 9)
    for kind, a, b in (("mean", y, None), ("ratio", y, x), ("lc", w, dl)):
        want = bootstrap(kind, a, b)
        for _ in range(5):
            p = rng.permutation(len(a))
            assert bootstrap(kind, a[p], None if b is None else b[p]) == want, kind


def test_constant_data_has_no_width() -> None:
    assert bootstrap("mean", [1.0] * 50) == (1.0, 1.0, 1.0)
    value, lo, hi = bootstrap("mean", [0.3] * 37)
    assert value == lo == hi == pytest.approx(0.3)
    assert bootstrap("ratio", [2.0] * 10, [4.0] * 10) == (0.5, 0.5, 0.5)


def test_width_shrinks_like_one_over_sqrt_n() -> None:
    """Bernoulli(½) data: the interval is about ±1.96·0.5/√n, so 4× the items halve it."""
    widths = {}
    for n in (100, 400, 1600):
        y = np.tile([1.0, 0.0], n // 2)
        _, lo, hi = bootstrap("mean", y)
        widths[n] = hi - lo
        assert widths[n] == pytest.approx(2 * 1.96 * 0.5 / math.sqrt(n), rel=0.2)
    assert 1.6 < widths[100] / widths[400] < 2.5
    assert 1.6 < widths[400] / widths[1600] < 2.5


def test_ratio_value_and_interval() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(1, 5, 300).astype(float)  # instructions checked per prompt
    y = rng.binomial(x.astype(int), 0.7).astype(float)  # instructions followed
    value, lo, hi = bootstrap("ratio", y, x)
    assert value == pytest.approx(y.sum() / x.sum(), abs=1e-15)
    assert lo < value < hi
    assert bootstrap("ratio", y, x) == (value, lo, hi)


def test_ratio_resamples_prompts_as_clusters() -> None:
    """Prompt A followed 2 of its 2 instructions, prompt B 1 of its 4: the value is 3/6 = ½.

    Resampling prompts, a replicate holds AA (ratio 4/4 = 1, chance ¼), AB (3/6 = ½, chance ½)
    or BB (2/8 = ¼, chance ¼). With ~250 of 1000 replicates at each extreme, the 2.5th and
    97.5th percentiles are exactly ¼ and 1, where resampling the six instructions one by one
    would allow any ratio k/6."""
    value, lo, hi = bootstrap("ratio", [2.0, 1.0], [2.0, 4.0])
    assert (value, lo, hi) == (0.5, 0.25, 1.0)


def test_ratio_skips_replicates_without_denominator() -> None:
    """Prompt A checked nothing; replicates of A alone (chance ¼) have no ratio and are left
    out, so every replicate that counts holds B and has ratio 1/2."""
    assert bootstrap("ratio", [0.0, 1.0], [0.0, 2.0]) == (0.5, 0.5, 0.5)
    assert bootstrap("ratio", [0.0, 0.0], [0.0, 0.0]) == (None, None, None)


def test_empty_and_single_items() -> None:
    for kind in ("mean", "ratio", "lc"):
        assert bootstrap(kind, [], []) == (None, None, None)
    assert bootstrap("mean", [0.25]) == (0.25, 0.25, 0.25)
    assert bootstrap("lc", [1.0], [300.0]) == (1.0, 1.0, 1.0)  # n < 2: the plain mean


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        bootstrap("median", [1.0])
    with pytest.raises(ValueError, match="needs x"):
        bootstrap("ratio", [1.0])
    with pytest.raises(ValueError, match="items"):
        bootstrap("lc", [1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bootstrap("lc", [2.0, 0.0], [1.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        bootstrap("mean", [1.0, float("nan")])


# --- length-controlled win rate ---------------------------------------------------------


def two_groups(longer: list[float], shorter: list[float], d: float = 120.0):
    """Items where the model was d characters longer, then items where it was d shorter.
    Δ is symmetric, so tanh(Δ / sd(Δ)) = ±a for one a > 0."""
    y = np.array(longer + shorter)
    x = np.array([d] * len(longer) + [-d] * len(shorter))
    return y, x


def test_lc_hand_example() -> None:
    """Ten items where the model was longer, 8 won (y = 1) and 2 lost; two where it was
    shorter, 1 won and 1 lost. The raw win rate is 9/12 = 0.75.

    The feature takes two values, t = ±a (a = tanh(d/sd) > 0), so the model
    logit P = θ + φ·t has one free fitted probability per group and is saturated: at the
    maximum of Σ_i y_i·log P_i + (1 − y_i)·log(1 − P_i), the score equations
    Σ_i (y_i − P_i) = 0 and Σ_i (y_i − P_i)·t_i = 0 give, adding and subtracting them,
    Σ_{longer} (y_i − P₊) = 0 and Σ_{shorter} (y_i − P₋) = 0: each group's fitted
    probability is its mean, σ(θ + φa) = 8/10 = 0.8 and σ(θ − φa) = 1/2 = 0.5. Adding the
    two logits, 2θ = logit 0.8 + logit 0.5 = ln 4 + 0, so θ = ln 2 (and φ = ln 2 / a > 0:
    longer answers win more). The LC win rate is σ(θ) = 1 / (1 + ½) = 2/3: the longer
    group's wins are discounted as length bias. The tiny ridge λ moves this by ~3e-8."""
    y, x = two_groups([1.0] * 8 + [0.0] * 2, [1.0, 0.0])
    assert y.mean() == 0.75
    value, lo, hi = bootstrap("lc", y, x)
    assert value == pytest.approx(2 / 3, abs=1e-6)
    assert lo < value < hi
    assert bootstrap("lc", y, x) == (value, lo, hi)
    theta, phi = fit_lc(y, length_feature(x)[0])
    a = math.tanh(120.0 / np.std(x, ddof=1))
    assert theta == pytest.approx(math.log(2), abs=1e-6)
    assert phi * a == pytest.approx(math.log(2), abs=1e-6)


def test_lc_sign_convention_only_flips_phi() -> None:
    """x = len(model) − len(baseline), alpaca_eval's Δ = −x: the same data with the length
    difference negated fits −φ and the same θ, so the same LC win rate."""
    y, x = two_groups([1.0] * 8 + [0.0] * 2, [1.0, 0.0])
    beta = fit_lc(y, length_feature(x)[0])
    flipped = fit_lc(y, length_feature(-x)[0])
    assert flipped == pytest.approx([beta[0], -beta[1]], abs=1e-9)
    assert bootstrap("lc", y, -x)[0] == pytest.approx(bootstrap("lc", y, x)[0], abs=1e-12)


def test_lc_soft_labels() -> None:
    """Ties count ½. Longer group: 3 wins and 3 ties, mean 4.5/6 = 0.75; shorter group: two
    ties, mean 0.5. As in the hand example the fit passes through the group means, so
    θ = (logit 0.75 + logit 0.5)/2 = ln 3 / 2 and LC = σ(ln √3) = √3 / (1 + √3) ≈ 0.634,
    below the raw 5.5/8 = 0.6875."""
    y, x = two_groups([1.0, 1.0, 1.0, 0.5, 0.5, 0.5], [0.5, 0.5])
    value, lo, hi = bootstrap("lc", y, x)
    assert value == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-6)
    assert lo <= value <= hi
    # all ties: nothing to prefer, whatever the lengths
    ties = bootstrap("lc", [0.5] * 20, np.linspace(-500, 900, 20))
    assert ties == pytest.approx((0.5, 0.5, 0.5), abs=1e-9)


def test_lc_without_length_variation_is_the_mean() -> None:
    y = [1.0, 0.0, 1.0, 0.5, 1.0]
    assert bootstrap("lc", y, [40.0] * 5) == bootstrap("mean", y)
    assert bootstrap("lc", y, [0.0] * 5)[0] == pytest.approx(0.7, abs=1e-15)


def test_lc_separation_stays_finite() -> None:
    """Every item won: the likelihood alone keeps rising as θ → ∞; the ridge stops it at
    a finite θ whose LC is just under 1. Likewise when only the longer answers won."""
    x = np.random.default_rng(2).normal(0, 300, 805)
    value, lo, hi = bootstrap("lc", np.ones(805), x)
    assert all(math.isfinite(v) for v in (value, lo, hi))
    assert 0.9999 < lo <= value <= hi < 1.0
    value, lo, hi = bootstrap("lc", np.zeros(805), x)
    assert 0.0 < lo <= value <= hi < 1e-4
    y = (x > 0).astype(float)  # complete separation by length
    value, lo, hi = bootstrap("lc", y, x)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (value, lo, hi))
    theta, phi = fit_lc(y, length_feature(x)[0])
    assert math.isfinite(theta) and phi > 10  # runs far, but not forever


def test_fit_lc_is_stationary_and_batched() -> None:
    """At the fit, the gradient of the ridge-penalised soft-label log-likelihood, written out
    here on its own, vanishes; a batch fits every row as if alone."""
    rng = np.random.default_rng(3)
    x = rng.normal(200, 400, (5, 300))
    y = np.clip(rng.random((5, 300)) * 0.8 + 0.1 + 0.0004 * (x - 200), 0.0, 1.0)
    y[:, ::7] = 0.5
    t = length_feature(x)
    beta = fit_lc(y, t)
    for row in range(5):
        p = 1.0 / (1.0 + np.exp(-(beta[row, 0] + beta[row, 1] * t[row])))
        grad = np.array([(y[row] - p).sum(), ((y[row] - p) * t[row]).sum()]) - RIDGE * beta[row]
        assert np.abs(grad).max() < 1e-8
        assert fit_lc(y[row], t[row]) == pytest.approx(beta[row], abs=1e-9)
    assert (beta[:, 1] > 0).all()  # here longer answers were preferred


def test_length_feature_standardises_with_ddof_1() -> None:
    x = np.array([[10.0, -30.0, 50.0, 0.0], [7.0, 7.0, 7.0, 7.0]])
    t = length_feature(x)
    sd = math.sqrt(((x[0] - x[0].mean()) ** 2).sum() / 3)
    assert t[0] == pytest.approx(np.tanh(x[0] / sd))
    assert (t[1] == 0).all()


def test_lc_replicates_are_vectorised() -> None:
    """AlpacaEval's 805 prompts, 1000 replicates: one batched fit (well under a second), and
    the interval sits around a value that discounts the length bias built into the data."""
    rng = np.random.default_rng(4)
    x = rng.normal(300, 600, 805)
    y = np.clip(rng.normal(0.45 + 0.2 * np.tanh(x / 600), 0.3), 0.0, 1.0)
    value, lo, hi = bootstrap("lc", y, x)
    assert lo < value < hi
    assert value < y.mean()  # the model was usually longer, and longer won more
    assert hi - lo < 0.1


# --- SQL ---------------------------------------------------------------------------------


def test_sql_mean_and_reregistering() -> None:
    con = duckdb.connect()
    evalstats.register(con)
    evalstats.register(con)  # already there: no error
    (row,) = con.execute("SELECT mrtui_eval_ci('mean', [1,0,1,1]::DOUBLE[], NULL)").fetchall()
    value, lo, hi = bootstrap("mean", [1.0, 0.0, 1.0, 1.0])
    assert row[0] == {"value": 0.75, "lo": lo, "hi": hi}
    assert value == 0.75
    (row,) = con.execute(
        "SELECT (mrtui_eval_ci('mean', [1,0,1,1]::DOUBLE[], NULL)).value AS v"
    ).fetchall()
    assert row[0] == 0.75


def test_sql_lc_and_ratio_match_python() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(100, 300, 60).round()
    y = rng.choice([0.0, 0.5, 1.0], 60)
    con = duckdb.connect()
    evalstats.register(con)
    (row,) = con.execute("SELECT mrtui_eval_ci('lc', ?, ?)", [list(y), list(x)]).fetchall()
    assert tuple(row[0].values()) == bootstrap("lc", y, x)
    counts = np.abs(x) % 5 + 1
    (row,) = con.execute(
        "SELECT mrtui_eval_ci('ratio', ?, ?)", [list(counts - 1), list(counts)]
    ).fetchall()
    assert tuple(row[0].values()) == bootstrap("ratio", counts - 1, counts)


def test_sql_nulls() -> None:
    con = duckdb.connect()
    evalstats.register(con)

    def ci(sql: str):
        return con.execute(f"SELECT mrtui_eval_ci({sql})").fetchall()[0][0]

    # a NULL y drops its item; for a mean x is ignored, NULLs and all
    assert ci("'mean', [1, NULL, 0, 1]::DOUBLE[], [NULL]::DOUBLE[]")["value"] == pytest.approx(
        2 / 3
    )
    expected = dict(
        zip(("value", "lo", "hi"), bootstrap("ratio", [1.0, 0.0], [2.0, 3.0]), strict=True)
    )
    assert ci("'ratio', [1, NULL, 0, 4]::DOUBLE[], [2, 1, 3, NULL]::DOUBLE[]") == expected
    assert ci("'lc', [1, 0]::DOUBLE[], NULL") == {"value": None, "lo": None, "hi": None}
    assert ci("'mean', []::DOUBLE[], NULL") == {"value": None, "lo": None, "hi": None}
    assert ci("NULL, [1]::DOUBLE[], NULL") is None
    assert ci("'mean', NULL, NULL") is None
    with pytest.raises(duckdb.Error, match="unknown kind"):
        ci("'median', [1]::DOUBLE[], NULL")


def test_sql_in_stored_and_temporary_views(tmp_path: Path) -> None:
    path = tmp_path / "v.duckdb"
    con = duckdb.connect(str(path))
    evalstats.register(con)
    con.execute(
        "CREATE TABLE items AS SELECT * FROM (VALUES ('a', 1.0), ('a', 0.0), ('b', 1.0)) t(g, y)"
    )
    con.execute(
        "CREATE VIEW results AS SELECT g, mrtui_eval_ci('mean', list(y ORDER BY y), NULL) AS ci "
        "FROM items GROUP BY g"
    )
    con.close()
    con = duckdb.connect(str(path), read_only=True)
    evalstats.register(con)
    con.execute("CREATE TEMP VIEW again AS SELECT g, ci.value AS value FROM results")
    rows = dict(con.execute("SELECT g, value FROM again ORDER BY g").fetchall())
    assert rows == {"a": 0.5, "b": 1.0}
    con.close()


def test_registered_on_mrtui_connections(tmp_path: Path) -> None:
    db = LogBuilder(tmp_path / "m.duckdb").prompt("P").write()
    with connect(db) as con:
        (row,) = con.execute("SELECT mrtui_eval_ci('mean', [1, 0]::DOUBLE[], NULL)").fetchall()
    assert row[0]["value"] == 0.5
