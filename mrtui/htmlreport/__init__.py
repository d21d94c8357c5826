"""``mrtui report --html DIR``: one self-contained HTML page of a log, to hand to someone who
will not open the TUI. ``data`` reads (with the functions ``mrtui status``, ``mrtui eval
compare`` and the TUI use), ``svg`` draws the charts, ``render`` writes the page; the page's
CSS and JS are package data under ``assets/``."""

from __future__ import annotations

from pathlib import Path

# prompts per run the battle browser embeds by default (each is read like the TUI reads one)
MAX_PROMPTS = 100

__all__ = ["MAX_PROMPTS", "write_report"]


def write_report(
    db: Path, out_dir: Path, run_id: str | None = None, *, max_prompts: int = MAX_PROMPTS
) -> tuple[Path, int]:
    """Write ``out_dir/index.html``; returns its path and the number of battle rows in it."""
    from .data import gather
    from .render import page

    data = gather(db, run_id, max_prompts=max_prompts)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page(data), encoding="utf-8")
    tmp.replace(path)
    return path, len(data.battles)
