"""Reading evaluation results for people: the ``eval_results`` and ``arena_results`` rows of a
run, and how each metric is written (rates as percentages, grades and spreads with two
decimals, counts whole), with its 95% interval. ``mrtui eval``, ``mrtui status``, the run
summary and the TUI all use these."""

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
    "win_rate_hard_prompt": "rate",  # arena_hard, per category of Arena-Hard v2.0
    "win_rate_creative_writing": "rate",
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
SUITE_ORDER = ("ifeval", "alpaca_eval", "arena_hard", "mt_bench", "judge-ifeval")
SELF_JUDGED = ("judge-ifeval",)  # suites where the evaluated model is the judge

# arena_hard's rows come from arena_results, which also names their baseline
_RESULTS = """
SELECT run_id, iteration, model_id, suite, metric, value, lo, hi, n, judge_model_id,
       NULL::VARCHAR AS baseline
FROM eval_results WHERE suite <> 'arena_hard' AND ($run IS NULL OR run_id = $run)
UNION ALL
SELECT run_id, iteration, model_id, suite, metric, value, lo, hi, n, judge_model_id, baseline
FROM arena_results WHERE $run IS NULL OR run_id = $run
ORDER BY run_id, iteration, suite, metric, baseline
"""


def results(con: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every evaluation result of one run (or all runs), as dicts: ``eval_results``' rows,
    with arena_hard's from ``arena_results`` and their ``baseline`` (None for other suites)."""
    cur = con.execute(_RESULTS, {"run": run_id})
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


# What a metric's number is not: printed under every table that shows it, and in docs.
CAVEATS = {
    "lc_win_rate": (
        "lc_win_rate is AlpacaEval 2's length control fitted here without its "
        "instruction-difficulty term and its regularisation toward length-gamed baselines "
        "(both need data only the Hugging Face hub serves), with a local judge against "
        "GPT-4-1106's answers: not a number to set beside the AlpacaEval 2.0 LC leaderboard."
    ),
}


def caveats(rows: list[dict[str, Any]]) -> list[str]:
    """The caveats of the metrics ``rows`` hold, once each, in :data:`CAVEATS` order."""
    shown = {r["metric"] for r in rows}
    return [text for metric, text in CAVEATS.items() if metric in shown]


def label(row: dict[str, Any]) -> tuple[str, str, str]:
    """The line a result belongs to: (suite, metric, judge). A suite judged against a named
    baseline reads ``arena_hard vs M1``; a self-judged suite's judge is the model itself."""
    suite = row["suite"]
    judge = row.get("judge_model_id") or ("the model itself" if suite in SELF_JUDGED else "")
    if row.get("baseline"):
        suite = f"{suite} vs {row['baseline']}"
    return suite, row["metric"], judge


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Columns (one per iteration) and lines (one per :func:`label`) of a run's results, in
    suite order."""
    iterations = sorted({r["iteration"] for r in rows})
    cells: dict[tuple[str, str, str], dict[int, str]] = {}
    for r in rows:
        cells.setdefault(label(r), {})[r["iteration"]] = format_metric(r)

    def order(line: tuple[str, str, str]) -> tuple[int, str, int, str]:
        suite, metric, judge = line
        suite = suite.split(" vs ", 1)[0]
        rank = SUITE_ORDER.index(suite) if suite in SUITE_ORDER else len(SUITE_ORDER)
        metrics = list(METRIC_KINDS)
        return rank, judge, metrics.index(metric) if metric in metrics else 99, metric

    columns = ["suite", "metric", "judge", *(f"iteration {i}" for i in iterations)]
    lines = [
        (*line, *(cells[line].get(i, "-") for i in iterations)) for line in sorted(cells, key=order)
    ]
    return columns, lines
