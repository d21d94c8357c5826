"""Snapshots of the label modal (``l``) and of labels on screen (SVG under __snapshots__/,
reviewed by eye when accepted; the conventions of ``test_snapshots``).

Update after a deliberate change with ``.venv/bin/pytest tests/tui/test_snapshots_labels.py
--snapshot-update`` and look at every changed SVG before committing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mrtui.store import connect
from mrtui.store.labels import Label, record_labels
from mrtui.tui.app import MrtuiApp
from mrtui.tui.detail import ResponseDetailScreen
from mrtui.tui.label_modal import LabelModal

from .conftest import HOSTILE_INDEX
from .test_app import until
from .test_snapshots import SIZE, _battle, _prompt, _ready, app  # noqa: F401 (fixture)

# a note is text a person typed: shown as typed, markup and escapes included
NOTE = "[bold]not bold[/] \x1b[31mnot red"


def _label_first_response(db: Path) -> None:
    """Labels of the hostile prompt's first two responses and of the first one's first judgement
    (in its last iteration, where the prompt detail opens), made before the app starts."""
    with connect(db) as con:
        (response, judgement), (other, _) = con.execute(
            "SELECT r.response_key, j.judgement_key FROM responses r JOIN prompts p "
            "USING (prompt_key) JOIN judgements j ON j.response_key = r.response_key "
            "WHERE p.prompt_index = ? AND r.run_id = 'main' AND j.judge_index = 0 "
            "ORDER BY r.iteration DESC, r.sample_index LIMIT 2",
            [HOSTILE_INDEX],
        ).fetchall()
    record_labels(
        db,
        [
            Label(response, 2, "ann", None),
            Label(response, 3, "ann", NOTE),  # supersedes: 2 revisions
            Label(other, 5, "ann"),
            Label(judgement, "disagree", "bob", "the score ignores the question"),
        ],
    )


def test_label_modal_on_a_response(snap_compare: Any, app: MrtuiApp) -> None:  # noqa: F811
    """The modal over the response detail: the response (scores, good/bad) and the selected
    judgement (agree/disagree), each with its current label."""
    _label_first_response(Path("log.duckdb"))

    async def before(pilot: Any) -> None:
        await _prompt(pilot, HOSTILE_INDEX)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ResponseDetailScreen))
        await until(pilot, lambda: pilot.app.state.labels)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LabelModal))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_label_modal_in_the_battle(snap_compare: Any, app: MrtuiApp) -> None:  # noqa: F811
    """The modal over the battle view: the verdict under the cursor (A/B) and its row's
    judgement, with a note being typed."""

    async def before(pilot: Any) -> None:
        await _battle(pilot)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LabelModal))
        await pilot.press("tab", *"J1 misses the [i]point[/i]")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_overview_with_labels(snap_compare: Any, app: MrtuiApp) -> None:  # noqa: F811
    """The overview once labels exist: the judge-human agreement per iteration."""
    _label_first_response(Path("log.duckdb"))

    async def before(pilot: Any) -> None:
        await _ready(pilot)
        await until(pilot, lambda: pilot.app.state.agreement)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
