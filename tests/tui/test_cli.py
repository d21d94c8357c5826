"""`mrtui tui` refuses what it cannot show with one line naming the fix, before any screen."""

from __future__ import annotations

from pathlib import Path

from cli.helpers import mrtui


def _one_line_error(out, code: int, *needles: str) -> None:
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_log(tmp_path: Path) -> None:
    db = tmp_path / "nope.duckdb"
    _one_line_error(mrtui("tui", "--db", db, timeout=60), 1, "no event log", "mrtui run")
    assert not db.exists()


def test_not_a_log(tmp_path: Path) -> None:
    db = tmp_path / "junk.duckdb"
    db.write_text("not a database\n" * 50)
    _one_line_error(mrtui("tui", "--db", db, timeout=60), 1, "not a DuckDB event log")


def test_unknown_run(tui_log_copy: Path) -> None:
    out = mrtui("tui", "--db", tui_log_copy, "--run", "ghost", timeout=60)
    _one_line_error(out, 2, "no run 'ghost'", "main")


def test_bad_prompts_file(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("{not json\n")
    out = mrtui("tui", "--db", tmp_path / "new.duckdb", "--prompts", prompts, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "p.jsonl" in out.stderr and len(out.stderr.strip().splitlines()) == 1
