"""Human labels made in the TUI (``l``): the label modal on the prompt-detail, response-detail
and battle screens, what lands in the log (read back through the ``human_labels`` and
``judge_human_agreement`` views with SQL, never from the TUI), the agreement on the overview,
and labels that wait while another process holds the writer lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static

from mrtui.store.labels import Label, record_labels
from mrtui.tui.app import MrtuiApp
from mrtui.tui.battle import BattleScreen
from mrtui.tui.detail import PromptDetailScreen, ResponseDetailScreen
from mrtui.tui.label_modal import LabelModal
from mrtui.tui.overview import OverviewScreen

from .test_app import SIZE, _statics, open_list, q, until

AUTHOR = "tester"


@pytest.fixture(autouse=True)
def _author(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MRTUI_AUTHOR", AUTHOR)


def labels(db: Path) -> dict[str, tuple[Any, ...]]:
    """human_labels by target key: (target, label, author, note, revisions)."""
    rows = q(
        db,
        "SELECT target_key, target, label, author, note, revisions FROM human_labels "
        "WHERE run_id = 'main'",
    )
    return {r[0]: r[1:] for r in rows}


def agreement(db: Path) -> dict[tuple[int, str], tuple[Any, ...]]:
    """judge_human_agreement by (iteration, measure): (n, value, lo, hi)."""
    rows = q(
        db,
        "SELECT iteration, measure, n, value, lo, hi FROM judge_human_agreement "
        "WHERE run_id = 'main'",
    )
    return {(r[0], r[1]): r[2:] for r in rows}


def spread_prompt(db: Path) -> tuple[str, int, list[tuple[str, float]]]:
    """A prompt and iteration whose responses have four different mean judge scores, with its
    (response key, mean score) lowest first."""
    key, it = q(
        db,
        "SELECT prompt_key, iteration FROM response_scores WHERE run_id = 'main' "
        "GROUP BY ALL HAVING count(DISTINCT mean_score) = 4 ORDER BY iteration, prompt_key "
        "LIMIT 1",
    )[0]
    scores = q(
        db,
        "SELECT response_key, mean_score FROM response_scores WHERE prompt_key = ? "
        "AND iteration = ? ORDER BY mean_score",
        [key, it],
    )
    return key, it, scores


def battle_prompt(db: Path) -> tuple[str, int]:
    return q(
        db,
        "SELECT m.prompt_key, m.iteration FROM meta_targets m JOIN prompts p USING (prompt_key) "
        "WHERE m.run_id = 'main' ORDER BY p.prompt_index, m.iteration LIMIT 1",
    )[0]


async def open_prompt(pilot: Any, app: MrtuiApp, key: str, it: int) -> PromptDetailScreen:
    lst = await open_list(pilot, app)
    pos = next(i for i, r in enumerate(lst.rows) if r.prompt_key == key)
    lst.query_one("#prompts", DataTable).move_cursor(row=pos)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))
    detail = app.screen
    assert isinstance(detail, PromptDetailScreen)
    while detail.iteration != it:
        await pilot.press("left_square_bracket")
    return detail


async def select_response(pilot: Any, detail: PromptDetailScreen, key: str) -> None:
    assert detail.it is not None
    row = [r.key for r in detail.it.responses].index(key)
    detail.query_one("#responses", DataTable).move_cursor(row=row)
    await until(pilot, lambda: (c := detail.current()) is not None and c.key == key)


async def label_with(pilot: Any, app: MrtuiApp, *keys: str) -> LabelModal:
    """Press ``l``, wait for the modal, press ``keys`` in it."""
    await pilot.press("l")
    await until(pilot, lambda: isinstance(app.screen, LabelModal))
    modal = app.screen
    assert isinstance(modal, LabelModal)
    await pilot.press(*keys)
    return modal


async def saved(pilot: Any, app: MrtuiApp, db: Path, key: str, label: str) -> None:
    """Until the log's current label of ``key`` is ``label`` and the app has read it back."""
    await until(
        pilot,
        lambda: (
            labels(db).get(key, (None, None))[1] == label
            and (h := app.state.labels.get(key)) is not None
            and h.label == label
        ),
    )


@pytest.mark.asyncio
async def test_score_a_response_in_prompt_detail(tui_log_copy: Path) -> None:
    db = tui_log_copy
    key, it, scores = spread_prompt(db)
    response = scores[1][0]
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.health is not None and app._labels_mark is not None)
        assert isinstance(app.screen, OverviewScreen)  # no labels yet: nothing new shown
        assert not app.screen.query_one("#agreement", Static).has_class("-on")
        assert "human labels" not in _statics(app)
        detail = await open_prompt(pilot, app, key, it)
        await select_response(pilot, detail, response)
        assert "human label" not in _statics(app)
        modal = await label_with(pilot, app, "4")
        assert [t.kind for t in modal.targets] == ["response"]
        await saved(pilot, app, db, response, "4")
        assert labels(db)[response] == ("response", "4", AUTHOR, None, 1)
        assert q(db, "SELECT human_score FROM human_labels WHERE target_key = ?", [response]) == [
            (4.0,)
        ]
        assert app.screen is detail
        await until(pilot, lambda: "response: human label: 4 (tester)" in _statics(app))
        # one label is no pair yet: the overview shows nothing new
        assert (it, "judge_pairwise_accuracy") not in agreement(db)


@pytest.mark.asyncio
async def test_a_later_label_supersedes_and_moves_the_agreement(tui_log_copy: Path) -> None:
    db = tui_log_copy
    key, it, scores = spread_prompt(db)
    (low, _), (mid, _), (high, _) = scores[0], scores[1], scores[3]
    # labels made elsewhere, ordered as the judge orders them: every pair agrees
    record_labels(db, [Label(low, 1, "elsewhere"), Label(mid, 3, "elsewhere"), Label(high, 5)])
    before = agreement(db)[(it, "judge_pairwise_accuracy")]
    assert before[:2] == (3, 1.0)

    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, OverviewScreen)
        shown = app.screen.query_one("#agreement", Static)
        await until(pilot, lambda: shown.has_class("-on"))
        line = f"human labels, iteration {it}: judge vs human, pairwise accuracy 100% ["
        assert line in _statics(app) and "100%], n=3" in _statics(app)

        detail = await open_prompt(pilot, app, key, it)
        await select_response(pilot, detail, high)
        await until(pilot, lambda: "response: human label: 5 (tester)" in _statics(app))
        modal = await label_with(pilot, app)
        assert modal.targets[0].current is not None and modal.targets[0].current.label == "5"
        await pilot.press("0")  # the judge's best is the worst after all
        await saved(pilot, app, db, high, "0")
        assert labels(db)[high][1:] == ("0", AUTHOR, None, 2)  # superseded, nothing rewritten
        assert q(db, "SELECT count(*) FROM events WHERE event_type = 'HumanLabelRecorded'") == [
            (4,)
        ]
        after = agreement(db)[(it, "judge_pairwise_accuracy")]
        assert after[0] == 3 and after[1] == pytest.approx(1 / 3)  # only low < mid still agrees
        await until(pilot, lambda: "human label: 0 (tester, 2 revisions)" in _statics(app))

        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        n, value, lo, hi = after
        line = (
            f"human labels, iteration {it}: judge vs human, pairwise accuracy {value:.0%} "
            f"[{lo:.0%}, {hi:.0%}], n={n}"
        )
        assert line == (
            f"human labels, iteration {it}: judge vs human, pairwise accuracy 33% [6%, 79%], n=3"
        )
        await until(pilot, lambda: line in _statics(app))


@pytest.mark.asyncio
async def test_agree_with_a_judgement_in_response_detail(tui_log_copy: Path) -> None:
    db = tui_log_copy
    key, it, scores = spread_prompt(db)
    response = scores[2][0]
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_prompt(pilot, app, key, it)
        await select_response(pilot, detail, response)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResponseDetailScreen))
        screen = app.screen
        assert isinstance(screen, ResponseDetailScreen)
        await pilot.press("right")
        judgement = screen.response.judgements[screen.selected].key
        modal = await label_with(pilot, app, "n")
        assert [(t.kind, t.key) for t in modal.targets] == [
            ("response", response),
            ("judgement", judgement),
        ]
        await saved(pilot, app, db, judgement, "disagree")
        assert q(db, "SELECT agrees FROM human_labels WHERE target_key = ?", [judgement]) == [
            (False,)
        ]
        assert agreement(db)[(it, "judgement_agreement")][:2] == (1, 0.0)
        await until(pilot, lambda: "human label: disagree (tester)" in _statics(app))
        # the response itself, from the same screen, with a note typed as text
        note = "too long [b]really[/b]"
        await label_with(pilot, app, "tab", *note, "enter", "g")
        await saved(pilot, app, db, response, "good")
        assert labels(db)[response] == ("response", "good", AUTHOR, note, 1)
        await until(pilot, lambda: f"human label: good (tester) · {note}" in _statics(app))


@pytest.mark.asyncio
async def test_say_which_judgement_is_better_in_the_battle(tui_log_copy: Path) -> None:
    db = tui_log_copy
    key, it = battle_prompt(db)
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_prompt(pilot, app, key, it)
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BattleScreen))
        battle = app.screen
        assert isinstance(battle, BattleScreen)
        v = battle.current_verdict()
        assert v is not None
        modal = await label_with(pilot, app)
        assert [(t.kind, t.key) for t in modal.targets] == [
            ("verdict", v.key),
            ("judgement", v.first_key),  # the row's judgement
        ]
        await pilot.press("b")  # the one shown second is better
        await saved(pilot, app, db, v.key, "B")
        better, winner = q(
            db,
            "SELECT h.better_key, m.winner_key FROM human_labels h JOIN meta_verdicts m "
            "ON m.verdict_key = h.target_key WHERE h.target_key = ?",
            [v.key],
        )[0]
        assert better == v.second_key
        expected = 0.5 if winner is None else float(winner == v.second_key)
        assert agreement(db)[(it, "meta_judge_agreement")][:2] == (1, expected)
        await until(
            pilot, lambda: "this verdict: human label: B (second shown) better" in _statics(app)
        )
        # and the row's judgement, from the same modal
        await label_with(pilot, app, "y")
        await saved(pilot, app, db, v.first_key, "agree")


@pytest.mark.asyncio
async def test_cancel_records_nothing(tui_log_copy: Path) -> None:
    db = tui_log_copy
    key, it, _scores = spread_prompt(db)
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_prompt(pilot, app, key, it)
        # app keys do nothing in the window (q would quit, s start a run, p leave the prompt)
        await label_with(pilot, app, "q", "s", "p", "7")
        await pilot.pause(0.2)
        assert isinstance(app.screen, LabelModal) and app.is_running and not app.running
        await pilot.press("tab", *"never mind", "escape")  # leaves the note
        assert isinstance(app.screen, LabelModal)
        assert app.screen.query_one("#note", Input).value == "never mind"
        await pilot.press("escape")  # cancels
        await until(pilot, lambda: app.screen is detail)
        await pilot.press("7", "x")  # no label keys outside the modal
        await pilot.pause(0.3)
    assert labels(db) == {}


HOLD_WRITER = textwrap.dedent(
    """
    import sys
    from mrtui.store import EventLog
    with EventLog(sys.argv[1]):
        print("holding", flush=True)
        sys.stdin.readline()
    """
)


def hold_writer(db: Path) -> subprocess.Popen[str]:
    """Another process that holds the log's writer lock until its stdin is closed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


@pytest.mark.asyncio
async def test_a_label_waits_while_another_process_writes(tui_log_copy: Path) -> None:
    db = tui_log_copy
    key, it, scores = spread_prompt(db)
    response = scores[0][0]
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_prompt(pilot, app, key, it)
        await select_response(pilot, detail, response)
        writer = hold_writer(db)
        try:
            await label_with(pilot, app, "2")
            await until(pilot, lambda: app.state.pending_labels == 1 and not app._labels_saving)
            assert "1 label(s) waiting to be saved" in app.status_text()[0]
            assert "1 label(s) waiting to be saved" in _statics(app)  # the status line
            await pilot.pause(2.5)  # retried at least once, still locked out
            assert app.state.pending_labels == 1
            assert labels(db) == {}
        finally:
            release(writer)
        await saved(pilot, app, db, response, "2")
        assert app.state.pending_labels == 0
        assert "waiting to be saved" not in app.status_text()[0]
        assert labels(db)[response] == ("response", "2", AUTHOR, None, 1)


@pytest.mark.asyncio
async def test_quit_with_a_waiting_label_keeps_it_in_a_file(
    tui_log_copy: Path, tmp_path: Path
) -> None:
    db = tui_log_copy
    key, it, scores = spread_prompt(db)
    response = scores[3][0]
    export = tmp_path / "export"
    app = MrtuiApp(db, poll=False, export_dir=export)
    writer = hold_writer(db)
    try:
        async with app.run_test(size=SIZE) as pilot:
            detail = await open_prompt(pilot, app, key, it)
            await select_response(pilot, detail, response)
            await label_with(pilot, app, "tab", *"keep me", "enter", "5")
            await until(pilot, lambda: app.state.pending_labels == 1 and not app._labels_saving)
            await pilot.press("q")  # tries once more, warns, stays
            await until(pilot, lambda: app._labels_quit and not app._labels_saving)
            await pilot.pause(0.2)
            assert app.is_running and app.state.pending_labels == 1
            await pilot.press("q")  # quits, the label written out
        files = list(export.glob("unsaved-labels-*.jsonl"))
        assert len(files) == 1
        assert [json.loads(x) for x in files[0].read_text().splitlines()] == [
            {"key": response, "label": 5, "author": AUTHOR, "note": "keep me"}
        ]
    finally:
        release(writer)
    assert labels(db) == {}
    subprocess.run(
        [
            str(Path(sys.executable).parent / "mrtui"),
            "labels",
            "import",
            "--db",
            str(db),
            str(files[0]),
        ],
        check=True,
        capture_output=True,
    )
    assert labels(db)[response] == ("response", "5", AUTHOR, "keep me", 1)


@pytest.mark.asyncio
async def test_quit_waits_for_a_label_until_the_writer_is_gone(tui_log_copy: Path) -> None:
    db = tui_log_copy
    key, it, scores = spread_prompt(db)
    response = scores[3][0]
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_prompt(pilot, app, key, it)
        await select_response(pilot, detail, response)
        writer = hold_writer(db)
        try:
            await label_with(pilot, app, "b")
            await until(pilot, lambda: app.state.pending_labels == 1 and not app._labels_saving)
            await pilot.press("q")  # one more try, still locked out: the app stays
            await until(pilot, lambda: app._labels_quit and not app._labels_saving)
            assert app.is_running
        finally:
            release(writer)
        # the next retry goes through, and the app quits as asked
        await until(pilot, lambda: not app.is_running)
    assert labels(db)[response] == ("response", "bad", AUTHOR, None, 1)


@pytest.mark.asyncio
async def test_a_label_waits_for_a_writer_in_this_process(tui_log_copy: Path) -> None:
    """A run started from the TUI writes from the TUI's own process: its writer lock keeps a
    label waiting the same way, and it is saved once the writer closes."""
    from mrtui.store import EventLog

    db = tui_log_copy
    key, it, scores = spread_prompt(db)
    response = scores[2][0]
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_prompt(pilot, app, key, it)
        await select_response(pilot, detail, response)
        log = EventLog(db)
        try:
            await label_with(pilot, app, "1")
            await until(pilot, lambda: app.state.pending_labels == 1 and not app._labels_saving)
            assert labels(db) == {}
        finally:
            log.close()
        await saved(pilot, app, db, response, "1")
        assert app.state.pending_labels == 0
