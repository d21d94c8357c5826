"""Bradley–Terry fit of judgement strengths, registered into DuckDB as ``mrtui_bt``.

For one meta-judged response with n judgements, the weighted wins w[m][n] = B_mn arrive as
sparse cells (only B_mn > 0). We maximise the penalised log-likelihood

    Σ_mn B_mn·log σ(ε_m − ε_n)  +  (g/2)·Σ_m [log σ(ε_m) + log σ(−ε_m)]

where the prior gives every judgement g virtual games against a fixed opponent of strength 0,
half of them won and half lost; g is the iteration's ``bt_prior_games`` (1 by default and for
logs from before the setting). The prior term is strictly concave, so the maximum exists, is
unique and is finite for any data.

What the prior does to the estimate:

* Location. The likelihood only sees differences ε_m − ε_n; the prior fixes the rest: over
  every group of judgements linked by games, Σ_m tanh(ε_m / 2) = 0 at the maximum.
* g → 0. Where the maximum-likelihood estimate exists (in a group whose comparison graph,
  an edge m → n when B_mn > 0, is strongly connected), the penalised differences converge
  to the MLE's, off by O(g). Only then: with g > 0 estimates are shrunk toward 0, by more
  where there is less game weight to hold them, and as pairs carry different weights the
  ranking can differ from the MLE's. Example: A beat C 0.1 to 0.05 and B beat C 1.0 to
  0.7; the MLE puts A first (ln 2 > ln(10/7)), a prior of one game puts B first.
* Infinite MLE. A judgement m that won every comparison it was in has no finite MLE; here
  ε_m ≈ ln(Σ_n B_mn·e^ε_n / (g/2)) once that is large, i.e. about ln(W_m / (g/2)) above the
  judgements it beat, W_m its weighted wins (≈ 14.5 + ln W_m for g = 1e-6): large, finite
  and growing like ln(1/g). It is always positive and ranks above every judgement it beat
  with a weight of at least g (σ(ε_n − ε_m) < g / (2·B_mn) from its stationarity). A
  judgement that lost everything mirrors this below; one with no games keeps ε = 0.

Fitting uses Newton's method vectorised over many responses at once, so the SQL view
``judgement_elo`` can fit every response of a large log in one pass. The UDF receives a batch
of responses at a time, each with its own g; they are padded to the largest n of the batch
(a padding slot has only the prior, so it stays at ε = 0 and touches nothing). Each step is
damped by a backtracking line search on the objective, which keeps tiny priors converging
(far from 0 the objective is nearly flat, and plain Newton overshoots it); the solver is
``newton.py``, shared with the evaluation intervals. The pieces are
computed so that tiny quantities keep their relative precision, and priors are floored at
:data:`MIN_PRIOR_GAMES` (see :func:`fit_bt`).
"""

from __future__ import annotations

from typing import Any

from .newton import maximise

PRIOR_GAMES = 1.0  # virtual games per judgement when a log predates the setting
MIN_PRIOR_GAMES = 1e-9  # floor: below it, saturated strengths lose precision (see fit_bt)
WIDE_SUMS_BELOW = 1e-2  # priors below this sum gradients in extended precision


def _evaluate(
    w: Any, eps: Any, c: Any, *, full: bool = True, wide: bool = False
) -> tuple[Any, Any, Any]:
    """The penalised log-likelihood per response at ε and, with ``full``, its gradient and
    negated Hessian: w (B, n, n), ε (B, n), c = g/2 (B,) -> (B,), (B, n), (B, n, n).

    Every quantity is computed so that tiny values keep their relative precision: log σ(x) as
    −log1p(exp(−x)), P(n beats m) as its own value rather than 1 − P(m beats n). ``wide`` sums
    each judgement's gradient in extended precision: the likelihood's gradient sums to zero
    over every connected group of judgements, and the rounding left of that zero is what
    moves a group's location against the prior's pull of size g/2 (where numpy's longdouble
    is plain double, as on some platforms, this buys nothing and costs little)."""
    import numpy as np

    e = np.exp(eps[:, None, :] - eps[:, :, None])  # exp(−(ε_m − ε_n))
    ep = np.exp(-eps)
    f = -(w * np.log1p(e)).sum(axis=(1, 2)) - c * (np.log1p(ep) + np.log1p(1 / ep)).sum(axis=1)
    if not full:
        return f, None, None
    p = 1.0 / (1.0 + e)  # P(m beats n)
    q = np.swapaxes(p, 1, 2)  # P(n beats m)
    s, t = 1.0 / (1.0 + ep), 1.0 / (1.0 + 1 / ep)  # σ(ε), σ(−ε)
    # ∂/∂ε_m: the weight of each win of m times the chance it would have lost it, less the
    # weight of each loss times the chance it would have won; the prior pulls toward 0.
    won = w * q
    net = won - np.swapaxes(won, 1, 2)  # exactly antisymmetric
    like = net.astype(np.longdouble).sum(axis=2).astype(np.float64) if wide else net.sum(axis=2)
    grad = like + c[:, None] * (t - s)
    neg_hess = -(w + np.swapaxes(w, 1, 2)) * p * q
    idx = np.arange(eps.shape[1])
    neg_hess[:, idx, idx] = -neg_hess.sum(axis=2) + 2 * c[:, None] * s * t
    return f, grad, neg_hess


def _solve(grad: Any, neg_hess: Any) -> Any:
    """The Newton step of each response: neg_hess · d = grad."""
    import numpy as np

    try:
        return np.linalg.solve(neg_hess, grad[..., None])[..., 0]
    except np.linalg.LinAlgError:  # numerically singular somewhere in the batch
        return (np.linalg.pinv(neg_hess) @ grad[..., None])[..., 0]


def fit_bt(w: Any, prior_games: Any = PRIOR_GAMES) -> Any:
    """Fit strengths for a batch: ``w`` has shape (B, n, n); returns ε with shape (B, n).

    ``prior_games``: the prior strength g, one for the batch or one per response (shape (B,)),
    positive; values under :data:`MIN_PRIOR_GAMES` fit as that floor. Some directions of the
    objective are held only by curvature of order g (the location of a group of judgements,
    how far an unbeaten judgement runs ahead), so rounding in the gradient moves ε along
    them by about 1e-16 / g: ~1e-10 at g = 1e-6 and ~1e-7 at the floor, still under the
    6 decimals of ε that the judge-pair views compare. Below the floor it would not be.

    Damped Newton on the penalised log-likelihood, all responses at once
    (:func:`mrtui.store.newton.maximise`): the objective never falls, and with the prior it
    is strictly concave, so this converges from ε = 0."""
    import numpy as np

    w = np.asarray(w, dtype=np.float64)
    batch, size = w.shape[:2]
    g = np.broadcast_to(np.asarray(prior_games, dtype=np.float64), (batch,))
    if not np.isfinite(g).all() or (g <= 0).any():
        raise ValueError("the Bradley-Terry prior strength must be a positive number of games")
    c = np.maximum(g, MIN_PRIOR_GAMES) / 2
    wide = bool((g < WIDE_SUMS_BELOW).any())

    def evaluate(data: tuple[Any, ...], eps: Any, full: bool) -> tuple[Any, Any, Any]:
        return _evaluate(data[0], eps, data[1], full=full, wide=wide)

    return maximise(evaluate, _solve, (w, c), np.zeros((batch, size)))


def _bt_arrow(n: Any, i: Any, k: Any, w: Any, prior: Any) -> Any:
    """Arrow-vectorised UDF body: n INTEGER, the weighted wins as sparse cells i INTEGER[],
    k INTEGER[], w DOUBLE[] (w[m][n] for 1-based m = i, n = k) and the prior strength
    DOUBLE (NULL: :data:`PRIOR_GAMES`) -> ε DOUBLE[] (n)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def flat(a: Any) -> tuple[Any, Any]:
        a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
        return a.offsets.to_numpy(), a.values.to_numpy(zero_copy_only=False)

    n_np = n.to_numpy(zero_copy_only=False).astype(np.int64)
    prior_np = pc.fill_null(prior, PRIOR_GAMES).to_numpy(zero_copy_only=False)
    offsets, rows = flat(i)
    _, cols = flat(k)
    _, weights = flat(w)
    size = int(n_np.max(initial=0))
    batch = np.zeros((len(n_np), size, size))
    owner = np.repeat(np.arange(len(n_np)), np.diff(offsets))
    # one cell per ordered pair of a response, so plain assignment fills the matrices
    batch[owner, rows.astype(np.int64) - 1, cols.astype(np.int64) - 1] = weights
    eps = fit_bt(batch, prior_np) if size else batch[:, :0, 0]
    keep = np.arange(size)[None, :] < n_np[:, None]  # each response's own n strengths
    out_offsets = np.concatenate([[0], np.cumsum(n_np)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(out_offsets), pa.array(eps[keep]))


def register(con: Any) -> None:
    """Make ``mrtui_bt(n, i, k, w, prior_games)`` available on a DuckDB connection."""
    from .udf import create_function

    create_function(
        con,
        "mrtui_bt",
        _bt_arrow,
        ["INTEGER", "INTEGER[]", "INTEGER[]", "DOUBLE[]", "DOUBLE"],
        "DOUBLE[]",
        type="arrow",
    )
