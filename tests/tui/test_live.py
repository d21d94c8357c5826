"""Live use: a run started, stopped and resumed from the TUI on real llama.cpp (the tiny random
Qwen2), and the TUI watching a log that a separate process is writing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mrtui.loop.settings import load_config
from mrtui.store import connect
from mrtui.tui.app import MrtuiApp
from mrtui.tui.overview import OverviewScreen

from .test_app import SIZE, until


def _settings(tmp_path: Path, model: Path, n_prompts: int = 3):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"prompt": f"Tell me fact number {i}."}) for i in range(n_prompts))
    )
    cli = {
        "prompts": str(prompts),
        "model": str(model),
        "run_id": "live",
        "iterations": 1,
        "k": 2,
        "n": 2,
        "actor_max_tokens": 16,
        "judge_max_tokens": 16,
        "meta_max_tokens": 16,
        "train": False,
    }
    return load_config(None, cli)


def _log(app: MrtuiApp) -> str:
    return "\n".join(app.screen.query_one("#run-log").lines)


def _counts(db: Path) -> dict[str, int]:
    with connect(db) as con:
        return dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())


@pytest.mark.asyncio
async def test_start_stop_and_resume_a_run_from_the_tui(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    settings = _settings(tmp_path, tiny_gguf)
    app = MrtuiApp(db, settings=settings, run_id="live")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: app.running)
        # stop as soon as the first units are in the log
        await until(pilot, lambda: "/" in app.run_state and "0/" not in app.run_state, 120)
        await pilot.press("x")
        await until(pilot, lambda: not app.running, 120)
        assert app.run_state == "run stopped", app.run_state
        partial = _counts(db)
        assert partial.get("ResponseGenerated", 0) > 0
        assert partial.get("MetaVerdictRecorded", 0) == 0 or partial.get("JudgementRecorded")

        await pilot.press("s")  # resume: only what is missing runs
        await until(pilot, lambda: app.run_state != "run stopped", 30)
        await until(pilot, lambda: not app.running, 300)
        assert app.run_state == "run finished", (app.run_state, _log(app))
        total = sum(_counts(db).values())
        await until(pilot, lambda: app.overview and app.overview.max_seq == total)
        rows = app.overview.iterations
        assert len(rows) == 1 and rows[0].responses == 3 * 2 and rows[0].judgements == 3 * 2 * 2
        log_lines = "\n".join(app.screen.query_one("#run-log").lines)
        assert "iteration 1" in log_lines
    full = _counts(db)
    assert full["ResponseGenerated"] == 6 and full["JudgementRecorded"] == 12
    with connect(db) as con:  # nothing was generated twice across the stop
        dup = con.execute(
            "SELECT count(*) FROM (SELECT key FROM events WHERE key IS NOT NULL "
            "GROUP BY key HAVING count(*) > 1)"
        ).fetchall()[0][0]
    assert dup == 0


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from tui.conftest import build_log, write_prompts
    db = Path({db!r})
    build_log(db, write_prompts(db.parent / "w.jsonl"), iterations=1,
              defaults={{"train": False}}, delay=0.05, flush_interval=0.2)
    """
)


@pytest.mark.asyncio
async def test_watching_a_log_another_process_writes(tmp_path: Path) -> None:
    db = tmp_path / "watched.duckdb"
    tests = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tests=tests, db=str(db))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        app = MrtuiApp(db, poll=True)
        async with app.run_test(size=SIZE) as pilot:
            seen: list[int] = []
            writer_seen = False
            while proc.poll() is None:
                await pilot.pause(0.2)
                if app.overview is not None:
                    seen.append(app.overview.max_seq)
                    writer_seen |= app.overview.writer is not None
            _, err = proc.communicate()
            assert proc.returncode == 0, err[-2000:]
            final = sum(_counts(db).values())
            await until(pilot, lambda: app.overview and app.overview.max_seq == final, 20)
            assert seen == sorted(seen)  # never went backwards
            assert len(set(seen)) >= 2  # saw the log grow while it was written
            assert writer_seen  # and said who was writing
            await until(pilot, lambda: app.overview.writer is None, 10)
            assert isinstance(app.screen, OverviewScreen)
            recent = app.screen.query_one("#recent")  # the newest event is listed first
            await until(pilot, lambda: recent.row_count and recent.get_row_at(0)[0] == str(final))
            status, stale = app.status_text()
            assert not stale, status
            assert app.health and sum(app.health[1].scores) + app.health[1].judgements - app.health[
                1
            ].valid_judgements == (app.overview.iterations[0].judgements)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.asyncio
async def test_quit_during_a_run_stops_it_first(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "quit.duckdb"
    app = MrtuiApp(db, settings=_settings(tmp_path, tiny_gguf), run_id="live")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: "/" in app.run_state and "0/" not in app.run_state, 120)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, 120)  # exits once the run stopped
    assert not app.running and app.run_state == "run stopped"
    counts = _counts(db)
    done = counts.get("ResponseGenerated", 0) + counts.get("JudgementRecorded", 0)
    assert 0 < done < 6 + 12  # stopped part-way
    assert "IterationFinished" not in counts
