"""Reading evaluation results for people: the ``eval_results`` rows of a run, and how each
metric is written (rates as percentages, grades and spreads with two decimals, counts whole),
with its 95% interval. ``mrtui eval``, ``mrtui status``, the run summary and the TUI all use
these."""

from __future__ import annotations

from typing import Any

# metric -> how it is written: "rate" (a fraction shown as %), "points", "chars" or "count"
METRIC_KINDS = {
    "prompt_strict": "rate",
    "prompt_loose": "rate",
    "instruction_strict": "rate",
    "instruction_loose": "rate",
    "skipped_instructions": "count",
    "win_rate": "rate",
    "lc_win_rate": "rate",
    "order_disagreement": "rate",
    "response_chars": "chars",
    "score": "points",
    "score_turn1": "points",
    "score_turn2": "points",
    "verifiable_pairs": "count",
    "rubric_accuracy": "rate",
    "pairwise_accuracy": "rate",
    "position_consistency": "rate",
    "score_spread": "points",
}
SUITE_ORDER = ("ifeval", "alpaca_eval", "mt_bench", "judge-ifeval")
SELF_JUDGED = ("judge-ifeval",)  # suites where the evaluated model is the judge

_RESULTS = """
SELECT run_id, iteration, model_id, suite, metric, value, lo, hi, n, judge_model_id
FROM eval_results WHERE (? IS NULL OR run_id = ?)
ORDER BY run_id, iteration, suite, metric
"""


def results(con: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every ``eval_results`` row of one run (or all runs), as dicts."""
    cur = con.execute(_RESULTS, [run_id, run_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _one(value: float, kind: str) -> str:
    if kind == "rate":
        return f"{100 * value:.1f}%"
    if kind == "points":
        return f"{value:.2f}"
    return f"{value:.0f}"


def format_metric(row: dict[str, Any]) -> str:
    """``41.7% [25.0, 58.3] n=24``; a count is ``3 of 120``; no value is ``-``."""
    kind = METRIC_KINDS.get(row["metric"], "points")
    value = row.get("value")
    if value is None:
        return "-"
    if kind == "count":
        return f"{value:.0f} of {row['n']}"
    text = _one(value, kind)
    if row.get("lo") is not None and row.get("hi") is not None:
        lo, hi = _one(row["lo"], kind).rstrip("%"), _one(row["hi"], kind)
        text += f" [{lo}, {hi}]"
    return f"{text} n={row['n']}"


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Columns (one per iteration) and lines (one per suite, metric and judge) of a run's
    results, in suite order."""
    iterations = sorted({r["iteration"] for r in rows})
    cells: dict[tuple[str, str, str], dict[int, str]] = {}
    for r in rows:
        judge = r.get("judge_model_id") or ("the model itself" if r["suite"] in SELF_JUDGED else "")
        label = (r["suite"], r["metric"], judge)
        cells.setdefault(label, {})[r["iteration"]] = format_metric(r)

    def order(label: tuple[str, str, str]) -> tuple[int, str, int, str]:
        suite, metric, judge = label
        rank = SUITE_ORDER.index(suite) if suite in SUITE_ORDER else len(SUITE_ORDER)
        metrics = list(METRIC_KINDS)
        return rank, judge, metrics.index(metric) if metric in metrics else 99, metric

    columns = ["suite", "metric", "judge", *(f"iteration {i}" for i in iterations)]
    lines = [
        (*label, *(cells[label].get(i, "-") for i in iterations))
        for label in sorted(cells, key=order)
    ]
    return columns, lines
