"""Terminal output that never interprets model text: no Rich markup, no escape sequences."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
from typing import Any

from mrtui.untrusted import safe

__all__ = ["print_json", "print_table", "safe"]


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
