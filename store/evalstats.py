"""Evaluation results with 95% bootstrap intervals, registered into DuckDB as ``mrtui_eval_ci``.

A result is a statistic of n items (an item is one prompt of a benchmark: the unit that was
drawn, so the unit that is resampled), with a percentile bootstrap interval: the items are
resampled with replacement :data:`RESAMPLES` times, the statistic is recomputed on every
replicate, and the interval runs from the 2.5th to the 97.5th percentile of the replicates
(numpy's linear interpolation between order statistics). The random stream is seeded by
:data:`SEED` and n alone, so the same data gives the same interval in every query. Kinds:

* ``mean``: the mean of y (e.g. 1 for a correct answer, 0 for a wrong one).
* ``ratio``: Σ y / Σ x, e.g. instructions followed over instructions checked with one item per
  IFEval prompt, so a prompt's instructions are resampled together (a cluster bootstrap).
  Replicates with Σ x = 0 are left out; data with Σ x = 0 has no value.
* ``lc``: AlpacaEval 2's length-controlled win rate (Dubois, Galambosi, Liang & Hashimoto
  2024, "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic Evaluators",
  arXiv:2404.04475; alpaca_eval ``src/alpaca_eval/metrics/glm_winrate.py``). y ∈ [0, 1] is
  the judge's preference for the evaluated model over the baseline (1: the model wins, 0.5:
  a tie; alpaca_eval's ``preference − 1``) and x = len(model output) − len(baseline output)
  in characters. alpaca_eval fits the GLM
  ``np.tanh(std_delta_len) + instruction_difficulty + not_gamed_baseline − 1``; we keep

      logit P(model preferred) = θ + φ·tanh(x / sd(x))

  where sd is the sample standard deviation (ddof = 1, as pandas' ``Series.std`` that
  alpaca_eval uses). alpaca_eval's Δ is len(baseline) − len(model) = −x, which only flips
  the sign of φ. The LC win rate is the model's predicted preference with the length term
  set to 0, averaged over items: σ(θ). If all x are equal (sd = 0) or n < 2 the length term
  is 0 and LC is the plain mean of y.

  Left out, as both need data from the Hugging Face hub: the instruction-difficulty term (a
  per-prompt γ_i precomputed by the authors; with it LC = mean_i σ(θ + γ_i)) and the
  regularisation toward two length-"gamed" baselines (their annotations enter the fit with
  weight 0.2). Also unlike alpaca_eval, which fits an L1-penalised logistic regression with
  its penalty chosen by 5-fold cross-validation, θ and φ here maximise the soft-label
  log-likelihood (cross-entropy)

      Σ_i [y_i·log σ(η_i) + (1 − y_i)·log σ(−η_i)] − (λ/2)·(θ² + φ²),  η_i = θ + φ·t_i,

  with only a tiny ridge λ = :data:`RIDGE` against separation. When every item's y is 1 (or
  0), or the items where the model was longer all won, the likelihood alone rises forever
  as |θ| or |φ| grows; the ridge makes the objective strictly concave, so the maximum is
  unique and finite and LC stays strictly inside (0, 1) (e.g. 1 − 2e-8 for 805 wins).
  Where the maximum-likelihood estimate exists the ridge moves θ by O(λ/n), far below what
  any result shows (3e-8 in LC on the tests' hand example of 12 items).

  In a saturated case the estimate is explicit: with two groups of items, one with x = +d
  (fitted preference p₊, the group's mean y) and one with x = −d (p₋), the fit passes
  through both means, so θ = (logit p₊ + logit p₋)/2 whatever the group sizes.

Fitting uses Newton's method (iteratively reweighted least squares) on the two parameters,
vectorised over all bootstrap replicates at once as (B, n) arrays, B × 2 parameters, with the
2 × 2 systems solved in closed form; each step is damped by a backtracking line search on the
objective (plain Newton can overshoot on the flat tails of the logistic): the solver of
``newton.py``, which ``elo.py`` uses too.
Every replicate recomputes sd(x) from its own resampled items.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .newton import maximise

KINDS = ("mean", "ratio", "lc")
RESAMPLES = 1000
PERCENTILES = (2.5, 97.5)  # a 95% interval
SEED = 0x6D72_7475  # with n, the seed of every interval: the same data, the same interval
CHUNK_CELLS = 1 << 20  # resampled items held at once (replicates × n), bounding memory
RIDGE = 1e-6  # λ of the LC fit: keeps θ, φ finite under separation (see the module docstring)

_RESULT_TYPE = "STRUCT(value DOUBLE, lo DOUBLE, hi DOUBLE)"


def _evaluate(y: Any, t: Any, beta: Any, *, full: bool = True) -> tuple[Any, Any, Any]:
    """The penalised log-likelihood per replicate at β = (θ, φ) and, with ``full``, its gradient
    and negated Hessian: y, t (B, n), β (B, 2) -> (B,), (B, 2), (B, 3) as (h_θθ, h_θφ, h_φφ).

    One exp and one log1p per item serve both: with e = exp(−|η|), log(1 + e^η) is
    max(η, 0) + log1p(e), and σ(η), σ(−η) are each computed as their own value (not 1 − the
    other), so y − σ(η) keeps its precision where σ(η) is near 1."""
    import numpy as np

    eta = beta[:, :1] + beta[:, 1:] * t
    e = np.exp(-np.abs(eta))
    # y·log(1 + e^−η) + (1 − y)·log(1 + e^η), the cross-entropy of each item
    loss = np.log1p(e) + y * np.maximum(-eta, 0.0) + (1.0 - y) * np.maximum(eta, 0.0)
    f = -loss.sum(axis=1) - RIDGE / 2 * (beta * beta).sum(axis=1)
    if not full:
        return f, None, None
    big, small = 1.0 / (1.0 + e), e / (1.0 + e)
    pos = eta >= 0
    p, q = np.where(pos, big, small), np.where(pos, small, big)  # σ(η), σ(−η)
    r = y * q - (1.0 - y) * p  # y − σ(η)
    grad = np.stack([r.sum(axis=1), (r * t).sum(axis=1)], axis=1) - RIDGE * beta
    w = p * q
    wt = w * t
    hess = np.stack([w.sum(axis=1), wt.sum(axis=1), (wt * t).sum(axis=1)], axis=1)
    return f, grad, hess


def _newton_step(grad: Any, hess: Any) -> Any:
    """Solve (H + λI)·d = g for every replicate, H = [[a, b], [b, c]] the likelihood's part.

    The determinant is (ac − b²) + λ(a + c) + λ², its Cauchy–Schwarz part floored at 0 against
    rounding, so it is at least λ² and the step is always defined."""
    import numpy as np

    h_aa, b, h_cc = hess[:, 0], hess[:, 1], hess[:, 2]
    a, c = h_aa + RIDGE, h_cc + RIDGE
    det = np.maximum(h_aa * h_cc - b * b, 0.0) + RIDGE * (h_aa + h_cc) + RIDGE * RIDGE
    g0, g1 = grad[:, 0], grad[:, 1]
    return np.stack([(c * g0 - b * g1) / det, (a * g1 - b * g0) / det], axis=1)


def fit_lc(y: Any, t: Any) -> Any:
    """Fit θ, φ of logit P = θ + φ·t for a batch: y, t of shape (B, n) (or (n,), one fit);
    returns β of shape (B, 2) (or (2,)).

    Damped Newton on the ridge-penalised soft-label log-likelihood, all replicates at once
    (:func:`mrtui.store.newton.maximise`). The objective is strictly concave, so this
    converges from β = 0."""
    import numpy as np

    y, t = np.asarray(y, dtype=np.float64), np.asarray(t, dtype=np.float64)
    single = y.ndim == 1
    y, t = np.atleast_2d(y), np.atleast_2d(t)

    def evaluate(data: tuple[Any, ...], beta: Any, full: bool) -> tuple[Any, Any, Any]:
        return _evaluate(data[0], data[1], beta, full=full)

    beta = maximise(evaluate, _newton_step, (y, t), np.zeros((len(y), 2)))
    return beta[0] if single else beta


def length_feature(x: Any) -> Any:
    """tanh(x / sd(x)) per row of x (B, n), sd with ddof = 1; rows whose x are all equal (or
    n < 2) get 0. Equality is tested directly: the sd of equal values can come out as
    rounding noise rather than 0, and dividing by it would make noise a feature."""
    import numpy as np

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    varies = x.max(axis=1, initial=-np.inf) > x.min(axis=1, initial=np.inf)
    t = np.zeros_like(x)
    if varies.any():
        xv = x[varies]
        t[varies] = np.tanh(xv / xv.std(axis=1, ddof=1, keepdims=True))
    return t


def _sigmoid(z: Any) -> Any:
    import numpy as np

    return np.exp(-np.logaddexp(0.0, -z))


def _statistic(kind: str, y: Any, x: Any) -> Any:
    """The statistic of each row of resampled items: y, x (B, n) -> (B,); NaN where a ratio
    has Σ x = 0."""
    import numpy as np

    if kind == "mean":
        return y.mean(axis=1)
    if kind == "ratio":
        den = x.sum(axis=1)
        ok = den != 0
        return np.divide(y.sum(axis=1), den, out=np.full(len(y), np.nan), where=ok)
    t = length_feature(x)
    out = y.mean(axis=1)  # rows without a length term: the plain mean
    fit = t.any(axis=1)
    if fit.any():
        out[fit] = _sigmoid(fit_lc(y[fit], t[fit])[:, 0])
    return out


def _clean(kind: str, y: Any, x: Any) -> tuple[Any, Any]:
    import numpy as np

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if kind == "mean":
        x = None
    else:
        if x is None:
            raise ValueError(f"kind {kind!r} needs x")
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if len(x) != len(y):
            raise ValueError(f"y has {len(y)} items but x has {len(x)}")
        if not np.isfinite(x).all():
            raise ValueError("x must be finite")
    if not np.isfinite(y).all():
        raise ValueError("y must be finite")
    if kind == "lc" and ((y < 0) | (y > 1)).any():
        raise ValueError("an lc preference y must lie in [0, 1]")
    return y, x


def replicates(statistic: Callable[[Any], Any], n: int, resamples: int, seed: Any) -> Any:
    """The bootstrap replicates of ``statistic`` over n items: ``resamples`` draws of n item
    indices with replacement, from ``numpy.random.default_rng(seed)``, handed to
    ``statistic`` as (B, n) index arrays :data:`CHUNK_CELLS` resampled items at a time (a
    number of replicates that depends on n only, so the same seed gives the same
    replicates); ``statistic`` returns one value per row. Returns the (resamples,) values.
    The evaluation intervals here and the paired ones (:mod:`.paired`) draw through this."""
    import numpy as np

    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_CELLS // n)
    reps = [
        statistic(rng.integers(0, n, size=(min(per_chunk, resamples - start), n)))
        for start in range(0, resamples, per_chunk)
    ]
    return np.concatenate(reps) if reps else np.empty(0)


def bootstrap(
    kind: str,
    y: Any,
    x: Any = None,
    *,
    resamples: int = RESAMPLES,
    seed: int | None = None,
) -> tuple[float | None, float | None, float | None]:
    """The statistic ``kind`` of the items (y, x) and its 95% percentile bootstrap interval:
    (value, lo, hi), plain floats. (None, None, None) for no items, or a ratio with Σ x = 0.

    The items are put in a canonical order first, so their order does not matter. ``seed``
    defaults to one derived from :data:`SEED` and n only; replicates are drawn
    :data:`CHUNK_CELLS` resampled items at a time (a number of replicates that depends on n
    only), so they are the same on every call. Replicates without a value (a ratio's Σ x = 0)
    are left out of the percentiles; with none left, lo = hi = value."""
    import numpy as np

    y, x = _clean(kind, y, x)
    n = len(y)
    if n == 0:
        return None, None, None
    # The items in a canonical order (by y, then x): every statistic here ignores order, and
    # so does the interval then. A SQL list() without ORDER BY hands the same items over in
    # whatever order its threads finished, and the same data must give the same interval.
    order = np.lexsort((y,) if x is None else (x, y))
    y, x = y[order], None if x is None else x[order]
    value = float(_statistic(kind, y[None, :], None if x is None else x[None, :])[0])
    if not np.isfinite(value):
        return None, None, None
    reps = replicates(
        lambda idx: _statistic(kind, y[idx], None if x is None else x[idx]),
        n,
        resamples,
        [SEED, n] if seed is None else seed,
    )
    reps = reps[np.isfinite(reps)]
    if not reps.size:
        return value, value, value
    lo, hi = np.percentile(reps, PERCENTILES)
    return value, float(lo), float(hi)


def _eval_ci(kind: Any, y: Any, x: Any) -> dict[str, float | None] | None:
    """Native UDF body: kind VARCHAR, y DOUBLE[], x DOUBLE[] -> STRUCT(value, lo, hi).

    NULL kind or y: NULL. Items whose y is NULL (or NaN) are dropped, and for ``ratio`` and
    ``lc`` those whose x is; x is ignored for ``mean``, and a NULL x leaves a ratio or lc
    with no items. No items: a struct of NULLs."""
    if kind is None or y is None:
        return None
    if kind == "mean":
        ys, xs = [v for v in y if v is not None and v == v], None
    else:
        if x is not None and len(x) != len(y):
            raise ValueError(f"y has {len(y)} items but x has {len(x)}")
        pairs = [
            (a, b)
            for a, b in zip(y, x or [], strict=False)
            if a is not None and b is not None and a == a and b == b  # v == v: not NaN
        ]
        ys, xs = [a for a, _ in pairs], [b for _, b in pairs]
    value, lo, hi = bootstrap(kind, ys, xs)
    return {"value": value, "lo": lo, "hi": hi}


def register(con: Any) -> None:
    """Make ``mrtui_eval_ci(kind, y, x)`` available on a DuckDB connection."""
    from .udf import create_function

    create_function(
        con,
        "mrtui_eval_ci",
        _eval_ci,
        ["VARCHAR", "DOUBLE[]", "DOUBLE[]"],
        _RESULT_TYPE,
        null_handling="special",  # called with a NULL x (a mean); it answers NULLs itself
    )
