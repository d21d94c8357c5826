"""Inline SVG charts for the report: grouped bars and lines, drawn as strings.

Every label and title goes through :func:`html.escape`; the numbers are formatted here. No
third-party imports, nothing fetched: the charts are part of the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

W, H = 360, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 26, 34
# colour-blind-safe (Okabe-Ito), one per series
COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442")


def _nice_max(value: float) -> float:
    """A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * base >= value:
            return float(step * base)
    return float(10 * base)


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2g}"


def _frame(title: str, ymax: float, ymin: float = 0.0) -> list[str]:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="{escape(title)}" class="chart">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(5):
        v = ymin + (ymax - ymin) * i / 4
        y = _y(v, ymax, ymin)
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_num(v)}</text>'
        )
    return out


def _y(v: float, ymax: float, ymin: float = 0.0) -> float:
    span = (ymax - ymin) or 1.0
    return TOP + (H - TOP - BOTTOM) * (1 - (v - ymin) / span)


def _legend(names: Sequence[str]) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        colour = COLOURS[i % len(COLOURS)]
        out.append(
            f'<rect x="{x}" y="{H - 12}" width="9" height="9" fill="{colour}"/>'
            f'<text x="{x + 12}" y="{H - 4}" class="tick">{escape(name)}</text>'
        )
        x += 16 + 7 * len(name)
    return out


def empty(title: str, why: str = "no data yet") -> str:
    return "\n".join(
        [
            *_frame(title, 1.0),
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="tick">{escape(why)}</text>',
            "</svg>",
        ]
    )


def bars(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    ymax: float | None = None,
    unit: str = "",
) -> str:
    """Grouped bars: one group per category, one bar per series (a missing value draws none).
    Each bar carries a ``<title>`` with its exact value, and ``data-value`` for tests."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not categories or not values:
        return empty(title)
    top = ymax if ymax is not None else _nice_max(max(values))
    out = _frame(title, top)
    plot_w = W - LEFT - RIGHT
    group = plot_w / len(categories)
    bar = group * 0.8 / max(len(series), 1)
    for c, cat in enumerate(categories):
        x0 = LEFT + c * group + group * 0.1
        out.append(
            f'<text x="{LEFT + (c + 0.5) * group:.1f}" y="{H - BOTTOM + 13}" '
            f'text-anchor="middle" class="tick">{escape(cat)}</text>'
        )
        for s, (name, vs) in enumerate(series):
            v = vs[c] if c < len(vs) else None
            if v is None:
                continue
            y = _y(min(v, top), top)
            colour = COLOURS[s % len(COLOURS)]
            out.append(
                f'<rect x="{x0 + s * bar:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{_y(0, top) - y:.1f}" fill="{colour}" data-value="{v!r}">'
                f"<title>{escape(f'{name} {cat}: {_num(v)}{unit}')}</title></rect>"
            )
    if len(series) > 1:
        out += _legend([name for name, _ in series])
    out.append("</svg>")
    return "\n".join(out)


def lines(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> str:
    """One polyline per series of (x, y) points, with a dot and a ``<title>`` at each point."""
    points = [p for _, ps in series for p in ps]
    if not points:
        return empty(title)
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo = min(0.0, min(ys))
    top = _nice_max(max(ys)) if max(ys) > 0 else 1.0
    out = _frame(title, top, y_lo)
    span = (x_hi - x_lo) or 1.0

    def px(x: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * (x - x_lo) / span

    for s, (name, ps) in enumerate(series):
        colour = COLOURS[s % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{_y(y, top, y_lo):.1f}" for x, y in ps)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in ps:
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{_y(y, top, y_lo):.1f}" r="2.5" fill="{colour}" '
                f'data-value="{y!r}"><title>{escape(f"{name} step {_num(x)}: {y:.4g}")}'
                "</title></circle>"
            )
    out.append(
        f'<text x="{LEFT}" y="{H - BOTTOM + 13}" class="tick">{_num(x_lo)}</text>'
        f'<text x="{W - RIGHT}" y="{H - BOTTOM + 13}" text-anchor="end" class="tick">'
        f"{_num(x_hi)}</text>"
    )
    if len(series) > 1:
        out += _legend([name for name, _ in series])
    out.append("</svg>")
    return "\n".join(out)
