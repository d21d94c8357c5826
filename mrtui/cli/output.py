"""Terminal output that never interprets model text: no Rich markup, no escape sequences."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
from typing import Any

from mrtui.untrusted import safe

__all__ = ["health_pct", "print_alarms", "print_json", "print_table", "safe"]


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False, indent=2) + "\n")


def print_table(
    columns: list[str],
    rows: list[tuple[Any, ...]],
    *,
    title: str | None = None,
    max_width: int = 80,
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None, show_lines=False)
    for c in columns:
        table.add_column(Text(safe(c)), overflow="fold", max_width=max_width)
    for row in rows:
        table.add_row(*(Text(safe(v)) for v in row))
    Console(soft_wrap=False).print(table)


def health_pct(row: dict[str, Any], rate: str) -> str:
    """A health rate of a status/summary row as a percentage, marked ``ALARM`` (with its
    threshold) when the row's alarms (``mrtui.loop.report.alarms``) include one on it."""
    value = row.get(rate)
    text = "-" if value is None else f"{value:.0%}"
    for a in row.get("alarms") or ():
        if a["rate"] == rate:
            text += f" ALARM ({a['op']} {a['threshold']:.0%})"
    return text


def tied_prompts(row: dict[str, Any]) -> str:
    """``3 of 8``: the prompts whose scored responses all tie (no actor pair), of those with
    two or more scored responses (the judge_signal view); ``-`` when not derived."""
    if row.get("scored_prompts") is None:
        return "-"
    return f"{row['tied_prompts']} of {row['scored_prompts']}"


def calibrated(row: dict[str, Any]) -> str:
    """``75% of 12 pairs``: the meta-judge's position consistency once its mean preference for
    the first shown is taken out (expected meta scoring; the judge_signal view); a judge that
    guesses scores 50%."""
    if row.get("calibrated_consistency") is None:
        return "-"
    return f"{row['calibrated_consistency']:.0%} of {row['prob_pairs']} pairs"


def print_alarms(run_id: str, rows: list[dict[str, Any]]) -> None:
    """One line per alarm that is on, with its advice, under a status or summary table."""
    for r in rows:
        for a in r.get("alarms") or ():
            sys.stdout.write(
                f"ALARM run {safe(run_id)} iteration {r['iteration']}: {a['message']}; "
                f"{a['advice']}\n"
            )
