"""Did model B do better than model A? Paired comparisons of two evaluated models on the items
both answered, per suite, metric and judge: the per-item outcomes come from the
``eval_item_outcomes`` view and the statistics from :mod:`mrtui.store.paired`. ``mrtui eval
compare`` and the TUI's Evaluation screen both read comparisons here; no Typer, Rich or
Textual.

Which two models: a side is (run, iteration). :func:`sides` turns the command line's runs and
iterations into the two sides (see its docstring); A is the baseline, B the candidate, and a
difference is B − A.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mrtui.store.paired import ALPHA, TEST_MCNEMAR

from .report import METRIC_KINDS, SUITE_ORDER
from .settings import EvalConfigError

# the difference the verdict sizes the needed n for: 5 points for rates, half a grade point
TARGETS = {"rate": 0.05, "points": 0.5}
METRICS = ("prompt_strict", "prompt_loose", "win_rate", "score", "rubric_accuracy",
           "pairwise_accuracy")  # fmt: skip


@dataclass(frozen=True)
class Side:
    """One evaluated model: a run's iteration."""

    run_id: str
    iteration: int

    def __str__(self) -> str:
        return f"{self.run_id}:{self.iteration}"


def evaluated(con: Any, run_id: str) -> list[int]:
    """The run's iterations with per-item outcomes, in order."""
    rows = con.execute(
        "SELECT DISTINCT iteration FROM eval_item_outcomes WHERE run_id = ? ORDER BY 1", [run_id]
    ).fetchall()
    return [r[0] for r in rows]


def sides(con: Any, runs: Sequence[str], iterations: Sequence[int]) -> tuple[Side, Side]:
    """(A, B) from up to two runs and up to two iterations.

    One run: two iterations compare the first (A) with the second (B); one iteration compares
    it with the run's evaluated iteration before it; none compares the last two evaluated.
    Two runs (A in the first, B in the second): two iterations pair up in order; one is taken
    from both runs; none takes each run's last evaluated iteration."""
    if not 1 <= len(runs) <= 2 or len(iterations) > 2:
        raise EvalConfigError(
            "compare takes one or two --run and at most two --iteration, e.g. "
            "--iteration 1 --iteration 2, or --run R1 --run R2"
        )
    done = {r: evaluated(con, r) for r in dict.fromkeys(runs)}
    for run, its in done.items():
        if not its:
            raise EvalConfigError(
                f"run {run!r} has no evaluated iterations in this log; evaluate it first "
                f"with `mrtui eval --run {run} --suite ...`"
            )
    if len(runs) == 1:
        run, its = runs[0], done[runs[0]]
        if len(iterations) == 2:
            a, b = iterations
        elif len(iterations) == 1:
            b = iterations[0]
            before = [i for i in its if i < b]
            if not before:
                raise EvalConfigError(
                    f"run {run!r} has no evaluated iteration before {b} (evaluated: "
                    f"{_list(its)}); name both with --iteration A --iteration B"
                )
            a = before[-1]
        else:
            if len(its) < 2:
                raise EvalConfigError(
                    f"run {run!r} has one evaluated iteration ({its[0]}); evaluate another, "
                    "or compare with a second --run"
                )
            a, b = its[-2], its[-1]
        pair = Side(run, a), Side(run, b)
    else:
        if len(iterations) == 2:
            a, b = iterations
        elif len(iterations) == 1:
            a = b = iterations[0]
        else:
            a, b = done[runs[0]][-1], done[runs[1]][-1]
        pair = Side(runs[0], a), Side(runs[1], b)
    if pair[0] == pair[1]:
        raise EvalConfigError(f"A and B are both {pair[0]}; name two different models")
    for side in pair:
        if side.iteration not in done[side.run_id]:
            raise EvalConfigError(
                f"run {side.run_id!r} iteration {side.iteration} was not evaluated "
                f"(evaluated: {_list(done[side.run_id])})"
            )
    return pair


def _list(its: Sequence[int]) -> str:
    return ", ".join(map(str, its)) or "none"


_OUTCOMES = """
SELECT suite, metric, judge_sha256, any_value(judge_model_id), any_value(model_id),
       bool_and(pass_fail), list(item_key), list(unit), list(value)
FROM eval_item_outcomes
WHERE run_id = $run AND iteration = $it AND ($suites IS NULL OR list_contains($suites, suite))
GROUP BY suite, metric, judge_sha256
"""


def _outcomes(con: Any, side: Side, suites: Sequence[str] | None) -> dict[tuple, dict[str, Any]]:
    rows = con.execute(
        _OUTCOMES, {"run": side.run_id, "it": side.iteration, "suites": list(suites or []) or None}
    ).fetchall()
    out: dict[tuple, dict[str, Any]] = {}
    for suite, metric, judge_sha, judge, model, pass_fail, keys, units, values in rows:
        out[(suite, metric, judge_sha)] = {
            "judge_model_id": judge,
            "model_id": model,
            "pass_fail": bool(pass_fail),
            "values": dict(zip(zip(keys, units, strict=True), values, strict=True)),
        }
    return out


def compare(
    con: Any, a: Side, b: Side, suites: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One comparison per suite, metric and judge that A or B has, in suite order: B − A on
    the items both have (see :func:`row` for the keys)."""
    from mrtui.store.paired import compare as paired_compare

    left, right = _outcomes(con, a, suites), _outcomes(con, b, suites)
    out = []
    for key in sorted(left.keys() | right.keys(), key=_order):
        la, rb = left.get(key), right.get(key)
        suite, metric, _ = key
        pass_fail = all(s["pass_fail"] for s in (la, rb) if s is not None)
        result = paired_compare(
            la["values"] if la else {},
            rb["values"] if rb else {},
            binary=pass_fail,
            item=lambda k: k[0],  # an item is a prompt; MT-Bench's units are its turns
        )
        info = la or rb or {}
        out.append(
            row(
                suite,
                metric,
                info.get("judge_model_id"),
                a,
                b,
                la["model_id"] if la else None,
                rb["model_id"] if rb else None,
                result,
            )
        )
    return out


def _order(key: tuple) -> tuple[int, int, str, str]:
    suite, metric, judge = key
    rank = SUITE_ORDER.index(suite) if suite in SUITE_ORDER else len(SUITE_ORDER)
    m = METRICS.index(metric) if metric in METRICS else len(METRICS)
    return rank, m, metric, judge or ""


def row(
    suite: str,
    metric: str,
    judge_model_id: str | None,
    a: Side,
    b: Side,
    a_model: str | None,
    b_model: str | None,
    result: Any,
) -> dict[str, Any]:
    """A comparison as a JSON-able dict: suite, metric, judge, the sides, n, a and b (means
    over the paired items), difference, lo, hi, p_value, test, mde, the spread σ_d, the
    discordant counts (pass/fail), the unpaired items, the n needed for the verdict's target,
    and the verdict."""
    kind = METRIC_KINDS.get(metric, "points")
    target = TARGETS["rate" if kind == "rate" else "points"]
    fields = asdict(result)
    return {
        "suite": suite,
        "metric": metric,
        "judge_model_id": judge_model_id,
        "a_run": a.run_id,
        "a_iteration": a.iteration,
        "a_model_id": a_model,
        "b_run": b.run_id,
        "b_iteration": b.iteration,
        "b_model_id": b_model,
        **fields,
        "target": target,
        "n_for_target": result.n_for(target),
        "verdict": verdict(metric, result, target),
    }


def _size(value: float, kind: str) -> str:
    """A difference's size: ``12-point`` for rates, ``0.85-point`` for grades."""
    if kind == "rate":
        return f"{100 * value:.0f}-point"
    return f"{value:.2f}-point"


def signed(value: float | None, metric: str) -> str:
    """A difference as written: ``+12.5`` points for rates, ``+0.40`` for grades."""
    if value is None:
        return "-"
    if METRIC_KINDS.get(metric, "points") == "rate":
        return f"{100 * value:+.1f}"
    return f"{value:+.2f}"


def p_text(p: float | None, *, equals: bool = False) -> str:
    """A p-value as written: three decimals, ``<0.001`` below that; with ``equals``, as
    ``p = 0.042`` or ``p < 0.001``."""
    if p is None:
        return "p = -" if equals else "-"
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    if equals:
        return f"p {text[0]} {text[1:]}" if text[0] == "<" else f"p = {text}"
    return text


def significant(result: Any) -> bool:
    """Both the test (p < α) and the 95% interval (excluding 0) say there is a difference."""
    if result.p_value is None or result.lo is None:
        return False
    return result.p_value < ALPHA and (result.lo > 0 or result.hi < 0)


def verdict(metric: str, result: Any, target: float) -> str:
    """One line for a person: better, worse, or what this n could have seen."""
    kind = METRIC_KINDS.get(metric, "points")
    unit = "points" if kind == "rate" else "grade points"
    n = result.n
    if n == 0:
        return f"nothing to compare: no item has both (A {result.only_a}, B {result.only_b})"
    if significant(result):
        word = "better" if result.difference > 0 else "worse"
        return (
            f"B is {word}: {signed(result.difference, metric)} {unit} "
            f"[{signed(result.lo, metric)}, {signed(result.hi, metric)}], "
            f"{p_text(result.p_value, equals=True)}, n = {n}"
        )
    if result.p_value is not None and result.p_value < ALPHA:
        return (
            f"unclear: {p_text(result.p_value, equals=True)} but the 95% interval includes 0 "
            f"(n = {n}); evaluate more items"
        )
    if result.mde is None:
        same = "pass/fail" if result.test == TEST_MCNEMAR else "difference"
        return (
            f"no change seen: all {n} items have the same {same} in A and B, so there is "
            "no spread to size a change by"
        )
    needed = result.n_for(target)
    if result.mde <= target:
        return (
            f"no detectable change: at n = {n} a {_size(result.mde, kind)} change would have "
            "shown (80% power)"
        )
    return (
        f"no detectable change: n = {n} can only see a {_size(result.mde, kind)} change; "
        f"n ≥ {needed} needed for {_size(target, kind).replace('-point', '')} {unit}"
    )


MIN_PRIOR = 20  # paired items a comparison needs before its spread sizes the next evaluation


def choose_limit(
    con: Any | None, run_id: str, suites: Sequence[str], target: float
) -> tuple[int, float, str]:
    """(n, σ_d, why): the items per suite for a minimum detectable difference of ``target`` in
    a rate (80% power, α = 0.05, two-sided), the σ_d it assumed, and why. With a log whose run
    has two evaluated iterations compared on at least :data:`MIN_PRIOR` items of a rate metric
    of these suites, the largest σ_d of that comparison sizes n; otherwise the worst case for
    a rate (Var(B − A) = 1/2, :func:`mrtui.store.paired.limit_for_target`)."""
    import math

    from mrtui.store.paired import WORST_VARIANCE, limit_for_target, n_for_mde

    if not 0 < target < 1:
        raise EvalConfigError(
            f"--target-mde is a difference in a rate, between 0 and 1 (0.05 = 5 points), "
            f"got {target}"
        )
    its = evaluated(con, run_id) if con is not None else []
    if len(its) >= 2:
        a, b = Side(run_id, its[-2]), Side(run_id, its[-1])
        usable = [
            r
            for r in compare(con, a, b, suites)
            if METRIC_KINDS.get(r["metric"]) == "rate" and r["sd"] and r["n"] >= MIN_PRIOR
        ]
        if usable:
            widest = max(usable, key=lambda r: r["sd"])
            n = n_for_mde(widest["sd"], target)
            return (
                n,
                widest["sd"],
                (
                    f"σ_d = {widest['sd']:.3f}, the widest spread of the last comparison "
                    f"({a} vs {b}: {widest['suite']} {widest['metric']}, n = {widest['n']})"
                ),
            )
    sd = math.sqrt(WORST_VARIANCE)
    return (
        limit_for_target(target),
        sd,
        (
            f"σ_d = {sd:.3f}, the worst case for a rate (two models at 50% that agree only by "
            f"chance); no earlier comparison of run {run_id!r} with {MIN_PRIOR}+ paired items"
        ),
    )
