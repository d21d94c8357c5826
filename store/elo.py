"""Bradley–Terry fit of judgement strengths, registered into DuckDB as ``mrtui_bt``.

For one meta-judged response with n judgements, the weighted wins w[m][n] = B_mn arrive as
sparse cells (only B_mn > 0). We maximise Σ B_mn·log σ(ε_m − ε_n) plus a weak prior: every judgement
also plays one virtual game (half won, half lost) against a fixed opponent of strength ε = 0.
Without the prior a judgement that wins every comparison has ε = +∞; with it the maximum is
unique and finite and the ranking is the MLE's wherever the MLE is finite.

Fitting uses Newton's method vectorised over many responses at once, so the SQL view
``judgement_elo`` can fit every response of a large log in one pass. The UDF receives a batch
of responses at a time; they are padded to the largest n of the batch (a judgement with no
games keeps ε = 0 from the prior).
"""

from __future__ import annotations

from typing import Any

PRIOR_GAMES = 1.0  # total weight of the virtual games per judgement
MAX_ITERS = 100
TOL = 1e-10
MAX_STEP = 10.0


def fit_bt(w: Any) -> Any:
    """Fit strengths for a batch: ``w`` has shape (B, n, n); returns ε with shape (B, n).

    Newton's method on the penalised log-likelihood, which is strictly concave thanks to the
    prior, so it converges in a handful of steps for every response at once."""
    import numpy as np

    w = np.asarray(w, dtype=np.float64)
    games = w + np.swapaxes(w, 1, 2)  # games played between each pair, any outcome
    c = PRIOR_GAMES / 2
    eps = np.zeros(w.shape[:2])
    eye = np.eye(w.shape[1])[None]
    for _ in range(MAX_ITERS):
        p = 1.0 / (1.0 + np.exp(-(eps[:, :, None] - eps[:, None, :])))  # P(m beats n)
        s = 1.0 / (1.0 + np.exp(-eps))
        grad = (w * (1 - p) - np.swapaxes(w, 1, 2) * p).sum(axis=2) + c * (1 - 2 * s)
        curv = games * p * (1 - p)
        hess = curv - eye * (curv.sum(axis=2) + 2 * c * s * (1 - s))[:, :, None]
        step = np.clip(np.linalg.solve(hess, grad[..., None])[..., 0], -MAX_STEP, MAX_STEP)
        eps = eps - step
        if np.max(np.abs(step), initial=0.0) < TOL:
            break
    return eps


def _bt_arrow(n: Any, i: Any, k: Any, w: Any) -> Any:
    """Arrow-vectorised UDF body: n INTEGER, and the weighted wins as sparse cells i INTEGER[],
    k INTEGER[], w DOUBLE[] (w[m][n] for 1-based m = i, n = k) -> ε DOUBLE[] (n)."""
    import numpy as np
    import pyarrow as pa

    def flat(a: Any) -> tuple[Any, Any]:
        a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
        return a.offsets.to_numpy(), a.values.to_numpy(zero_copy_only=False)

    n_np = n.to_numpy(zero_copy_only=False).astype(np.int64)
    offsets, rows = flat(i)
    _, cols = flat(k)
    _, weights = flat(w)
    size = int(n_np.max(initial=0))
    batch = np.zeros((len(n_np), size, size))
    owner = np.repeat(np.arange(len(n_np)), np.diff(offsets))
    # one cell per ordered pair of a response, so plain assignment fills the matrices
    batch[owner, rows.astype(np.int64) - 1, cols.astype(np.int64) - 1] = weights
    eps = fit_bt(batch) if size else batch[:, :0, 0]
    keep = np.arange(size)[None, :] < n_np[:, None]  # each response's own n strengths
    out_offsets = np.concatenate([[0], np.cumsum(n_np)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(out_offsets), pa.array(eps[keep]))


def register(con: Any) -> None:
    """Make ``mrtui_bt(n, i, k, w)`` available on a DuckDB connection."""
    import duckdb

    try:
        con.create_function(
            "mrtui_bt",
            _bt_arrow,
            [
                duckdb.sqltype("INTEGER"),
                duckdb.sqltype("INTEGER[]"),
                duckdb.sqltype("INTEGER[]"),
                duckdb.sqltype("DOUBLE[]"),
            ],
            duckdb.sqltype("DOUBLE[]"),
            type="arrow",
        )
    except (duckdb.CatalogException, duckdb.NotImplementedException) as exc:
        # Connections of one process to one file share a database instance; a connection
        # open in another thread (or the writer's lingering one) may have registered it.
        if "already" not in str(exc):
            raise
