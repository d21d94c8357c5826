"""How evaluation results are written for people (status, summary, eval, TUI)."""

from __future__ import annotations

import pytest

from mrtui.evaluation.report import format_metric, table


def _row(metric: str, value: float | None, lo: float | None, hi: float | None, n: int,
         it: int = 1, suite: str = "ifeval") -> dict[str, object]:  # fmt: skip
    return {"iteration": it, "suite": suite, "metric": metric, "value": value, "lo": lo,
            "hi": hi, "n": n, "judge_model_id": None}  # fmt: skip


def test_rates_points_and_counts_are_written_with_their_intervals() -> None:
    assert format_metric(_row("prompt_strict", 0.4167, 0.25, 0.5833, 24)) == (
        "41.7% [25.0, 58.3%] n=24"
    )
    assert format_metric(_row("score", 6.125, 5.5, 6.75, 16)) == "6.12 [5.50, 6.75] n=16"
    assert format_metric(_row("skipped_instructions", 3, None, None, 120)) == "3 of 120"
    assert format_metric(_row("win_rate", None, None, None, 0)) == "-"


def test_the_table_has_a_column_per_iteration_and_suites_in_order() -> None:
    rows = [
        _row("win_rate", 0.5, 0.4, 0.6, 8, 2, "alpaca_eval"),
        _row("prompt_strict", 0.5, 0.25, 0.75, 8, 1),
        _row("prompt_strict", 0.625, 0.375, 0.875, 8, 2),
    ]
    columns, lines = table(rows)
    assert columns == ["suite", "metric", "judge", "iteration 1", "iteration 2"]
    assert lines[0][:2] == ("ifeval", "prompt_strict")
    assert lines[1][:2] == ("alpaca_eval", "win_rate") and lines[1][3] == "-"


def test_the_lc_caveat_is_printed_under_a_table_that_shows_lc(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mrtui.cli.eval_cmd import print_eval_table
    from mrtui.evaluation.report import CAVEATS, caveats

    row = {"iteration": 1, "suite": "alpaca_eval", "metric": "lc_win_rate", "value": 0.4,
           "lo": 0.3, "hi": 0.5, "n": 8, "judge_model_id": "j"}  # fmt: skip
    assert caveats([row]) == [CAVEATS["lc_win_rate"]]
    assert caveats([{**row, "metric": "win_rate"}]) == []
    print_eval_table("main", [row])
    out = " ".join(capsys.readouterr().out.split())
    assert "instruction-difficulty term" in out and "not a number to set beside" in out
