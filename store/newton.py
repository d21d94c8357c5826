"""The damped Newton solver both store fits use: the Bradley–Terry strengths of
``judgement_elo`` (:func:`mrtui.store.elo.fit_bt`) and the length-controlled win rate of the
evaluation intervals (:func:`mrtui.store.evalstats.fit_lc`).

Each maximises a strictly concave objective for a batch of independent problems at once (one
row of every array per problem). A step is the Newton step, scaled down to at most
:data:`MAX_STEP` and then halved until the objective rises by a share (:data:`ARMIJO`) of the
predicted gain; plain Newton overshoots on the flat tails of the logistic. A problem stops once
its step is under :data:`TOL`, or no step raises its objective beyond rounding. numpy is
imported when a fit runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_ITERS = 200
TOL = 1e-10  # a Newton step this short counts as converged
MAX_STEP = 10.0  # longest step; a longer Newton step is scaled down, keeping its direction
ARMIJO = 1e-4  # share of the predicted gain a damped step must deliver
ROUNDOFF = 1e-13  # relative slack when comparing objectives of nearly equal value
MAX_HALVINGS = 60

# evaluate(data, x, full) -> (objective (B,), gradient (B, k), curvature): ``data`` is the
# problems' rows of the fit's arrays, ``x`` their points (B, k); without ``full`` only the
# objective is needed (the other two may be None).
Evaluate = Callable[[tuple[Any, ...], Any, bool], tuple[Any, Any, Any]]
# solve(gradient, curvature) -> the Newton step (B, k) of each problem.
Solve = Callable[[Any, Any], Any]


def maximise(evaluate: Evaluate, solve: Solve, data: tuple[Any, ...], x0: Any) -> Any:
    """The maximiser of each problem's objective, from ``x0`` (B, k); ``data`` holds arrays
    whose first axis is the problem (B)."""
    import numpy as np

    x = np.array(x0, dtype=np.float64)
    f, grad, curv = evaluate(data, x, True)
    active = np.arange(len(x))  # problems still moving; f, grad, curv are theirs
    for _ in range(MAX_ITERS):
        if not active.size:
            break
        da, xa = tuple(d[active] for d in data), x[active]
        direction = solve(grad, curv)
        longest = np.abs(direction).max(axis=1, initial=0.0)
        scale = np.minimum(1.0, MAX_STEP / np.maximum(longest, MAX_STEP))
        direction *= scale[:, None]
        gain = (grad * direction).sum(axis=1)  # first-order gain of the whole step, ≥ 0
        floor = f - ROUNDOFF * (1.0 + np.abs(f))  # no lower than f, up to rounding
        # the whole step first, evaluated with everything the next iteration needs
        f_new, grad_new, curv_new = evaluate(da, xa + direction, True)
        step = np.ones(len(active))
        pending = np.flatnonzero(f_new < floor + ARMIJO * gain)
        backtracked = pending
        for _ in range(MAX_HALVINGS):  # halving, on the objective alone, for the rest
            if not pending.size:
                break
            step[pending] /= 2
            trial = xa[pending] + step[pending, None] * direction[pending]
            f_try = evaluate(tuple(d[pending] for d in da), trial, False)[0]
            pending = pending[f_try < floor[pending] + ARMIJO * step[pending] * gain[pending]]
        step[pending] = 0.0  # no step raises the objective: optimal to working precision
        new = xa + step[:, None] * direction
        if backtracked.size:
            f_new[backtracked], grad_new[backtracked], curv_new[backtracked] = evaluate(
                tuple(d[backtracked] for d in da), new[backtracked], True
            )
        x[active] = new
        moving = step * longest * scale >= TOL
        active = active[moving]
        f, grad, curv = f_new[moving], grad_new[moving], curv_new[moving]
    return x
