"""Model text on screen: always a literal ``rich.text.Text``, never markup, escapes made visible.

Textual renders a plain ``str`` in a ``Static`` or a ``DataTable`` cell as markup, so every
string that came from a model, a prompt file or the log goes through :func:`lit` first.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from mrtui.untrusted import safe


def lit(value: Any, style: str = "") -> Text:
    """``value`` as literal text: no markup, control characters (ESC included) as ``\\xNN``."""
    return Text(safe(value), style=style, no_wrap=False)


def one_line(value: Any, width: int = 80, style: str = "") -> Text:
    """A single-line preview: newlines shown as ⏎, cut to ``width`` characters."""
    s = safe(value).replace("\n", " ⏎ ").replace("\t", " ")
    if len(s) > width:
        s = s[: width - 1] + "…"
    return Text(s, style=style, no_wrap=True, overflow="ellipsis")


def as_markup(value: Any) -> str:
    """For the few Textual APIs that take only a markup string (command-palette titles and
    help): ``value`` escaped so that it shows literally."""
    from textual.markup import escape

    return escape(safe(value))


def num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
