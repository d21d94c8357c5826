"""Expected scoring in the TUI: a log run under judge_scoring = meta_scoring = "expected"
(``tui_log_expected``) shows decimal scores with their distributions, P(first better) and the
soft outcomes; the overview gets the score-length correlation and the mean P(first); a sampled
log (``tui_log``) shows what it showed before. Expected values come from the views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from mrtui.store import connect
from mrtui.store import health as store_health
from mrtui.tui.app import MrtuiApp
from mrtui.tui.battle import BattleScreen
from mrtui.tui.detail import PromptDetailScreen, ResponseDetailScreen
from mrtui.tui.items import judgement_item, verdict_item
from mrtui.tui.modal import TextModal
from mrtui.tui.model import JudgementInfo
from mrtui.tui.overview import COLUMNS, PERCENT
from mrtui.tui.scores import dist_bar, dist_numbers, score_cell, score_head
from mrtui.tui.source import LogSource

from .conftest import RUN_ID, K, N
from .test_app import SIZE, _statics, open_list, q, until


def _signal(db: Path) -> dict[int, float | None]:
    return dict(
        q(db, "SELECT iteration, score_length_corr FROM judge_signal WHERE run_id = ?", [RUN_ID])
    )


def _overview_rows(app: MrtuiApp) -> dict[int, dict[str, str]]:
    table = app.screen.query_one("#iterations", DataTable)
    rows = {}
    for i in range(table.row_count):
        row = dict(zip(COLUMNS, (str(c) for c in table.get_row_at(i)), strict=True))
        rows[int(row["iter"])] = row
    return rows


async def _overview(pilot: Any, app: MrtuiApp) -> dict[int, dict[str, str]]:
    await until(
        pilot,
        lambda: app.health is not None and app.index_judge and app.state.signal is not None,
    )
    await until(pilot, lambda: all(r["len r"] != "…" for r in _overview_rows(app).values()))
    return _overview_rows(app)


async def _open_prompt(pilot: Any, app: MrtuiApp, key: str, it: int) -> PromptDetailScreen:
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


def _battle_prompt(db: Path) -> tuple[str, int]:
    """The first prompt (file order) with a meta-judged response, and its iteration."""
    key, it = q(
        db,
        "SELECT m.prompt_key, m.iteration FROM meta_targets m JOIN prompts p USING "
        "(prompt_key) WHERE m.run_id = ? ORDER BY p.prompt_index, m.iteration LIMIT 1",
        [RUN_ID],
    )[0]
    return key, it


# -- the overview -----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_overview_shows_length_r_and_mean_p_first(tui_log_expected: Path) -> None:
    db = tui_log_expected
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        rows = await _overview(pilot, app)
        corr = _signal(db)
        p_first = dict(
            q(
                db,
                "SELECT iteration, avg(p_first) FROM meta_verdicts WHERE run_id = ? GROUP BY 1",
                [RUN_ID],
            )
        )
        assert set(rows) == set(corr) == set(p_first) == {1, 2}
        for it, row in rows.items():
            assert corr[it] is not None and row["len r"] == f"{corr[it]:.2f}"
            assert row["P(1st)"] == f"{p_first[it]:.2f}"
            assert p_first[it] > 0.5  # the fake meta-judge leans to the first shown
            assert app.health is not None
            assert app.health[it].rate("mean_p_first") == pytest.approx(p_first[it])


@pytest.mark.asyncio
async def test_a_sampled_overview_shows_what_it_showed_and_length_r(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        rows = await _overview(pilot, app)
        corr = _signal(tui_log)
        with connect(tui_log) as con:
            health = store_health.read(con)
        for it, row in rows.items():
            assert row["P(1st)"] == "-"  # no probability verdicts
            assert row["len r"] == ("-" if corr[it] is None else f"{corr[it]:.2f}")
            h = health[(RUN_ID, it)]
            for col, rate in PERCENT.items():
                value = h.rate(rate)
                assert row[col].startswith("-" if value is None else f"{value:.0%}")
            assert row["K×N"] == f"{K}×{N}"


def test_judge_signal_matches_the_view(tui_log_expected: Path) -> None:
    got = LogSource(tui_log_expected, RUN_ID).judge_signal()
    want = q(
        tui_log_expected,
        "SELECT iteration, scored_prompts, tied_prompts, score_length_corr, score_per_100_chars "
        "FROM judge_signal WHERE run_id = ?",
        [RUN_ID],
    )
    assert {(s.iteration, s.scored_prompts, s.tied_prompts) for s in got.values()} == {
        w[:3] for w in want
    }
    for it, _, _, corr, slope in want:
        assert got[it].score_length_corr == pytest.approx(corr)
        assert got[it].score_per_100_chars == pytest.approx(slope)


# -- what the read layer hands the screens ------------------------------------------------------
def test_focus_carries_probabilities_and_soft_outcomes(tui_log_expected: Path) -> None:
    db = tui_log_expected
    key, it = _battle_prompt(db)
    focus = LogSource(db, RUN_ID).focus(key)
    want = {
        r[0]: r[1:]
        for r in q(
            db,
            "SELECT judgement_key, scoring, score, sampled_score, choice_probs, choice_mass "
            "FROM judgements WHERE prompt_key = ?",
            [key],
        )
    }
    judged = [j for itf in focus.iterations.values() for r in itf.responses for j in r.judgements]
    assert len(judged) == len(want) > 0
    for j in judged:
        scoring, score, sampled, probs, mass = want[j.key]
        assert (j.scoring, j.score, j.sampled_score, j.choice_mass) == (
            scoring,
            score,
            sampled,
            mass,
        )
        assert scoring == "expected" and j.choice_probs == pytest.approx(probs)
    battle = focus.iterations[it].battle
    assert battle is not None and battle.ready and battle.expected
    p = dict(
        q(
            db,
            "SELECT verdict_key, p_first FROM meta_verdicts WHERE response_key = ?",
            [battle.response_key],
        )
    )
    assert {v.key: v.p_first for v in battle.verdicts.values()} == pytest.approx(p)
    b = {
        (m, n): b_mn
        for m, n, b_mn in q(
            db,
            "SELECT judgement_m, judgement_n, b_mn FROM judge_battles WHERE response_key = ?",
            [battle.response_key],
        )
    }
    assert battle.outcomes == pytest.approx(b) and b
    for (m, n), b_mn in battle.outcomes.items():  # both orders combined: b_mn + b_nm = 1
        assert b_mn + battle.outcomes[(n, m)] == pytest.approx(1.0)
    v = next(iter(battle.verdicts.values()))
    item = verdict_item(battle, v)
    assert item["p_first"] == v.p_first
    assert item["soft_outcome"] == battle.outcomes.get((v.first_key, v.second_key))


def test_a_sampled_focus_has_no_probabilities(tui_log: Path) -> None:
    key, it = _battle_prompt(tui_log)
    focus = LogSource(tui_log, RUN_ID).focus(key)
    battle = focus.iterations[it].battle
    assert battle is not None and not battle.expected and battle.outcomes == {}
    for r in focus.iterations[it].responses:
        for j in r.judgements:
            assert j.scoring == "sampled" and j.choice_probs is None
            assert judgement_item(j)["choice_probs"] is None


# -- how a score reads ----------------------------------------------------------------------
def test_score_texts() -> None:
    probs = {"0": 0.0, "1": 0.05, "2": 0.1, "3": 0.25, "4": 0.5, "5": 0.1}
    j = JudgementInfo("j", "r", 0, 3.4, "text", None, False, 4, scoring="expected",
                      sampled_score=4.0, choice_probs=probs, choice_mass=0.9)  # fmt: skip
    assert dist_bar(probs) == " ▁▁▂▄▁"
    assert dist_bar({s: 1 / 6 for s in "012345"}) == "▂▂▂▂▂▂"  # flat: low, not full
    assert dist_numbers(probs) == "0:0.00 1:0.05 2:0.10 3:0.25 4:0.50 5:0.10"
    assert score_cell(j) == "3.40" and score_cell(j, bar=True) == "3.40  ▁▁▂▄▁"
    assert score_head(j) == "expected score 3.40 (its text named 4)"
    j.sampled_score = None
    assert score_head(j) == "expected score 3.40 (its text named no score)"
    s = JudgementInfo("s", "r", 0, 3.0, "text", None, False, 4)
    assert (score_cell(s, bar=True), score_head(s)) == ("3", "score 3")
    u = JudgementInfo("u", "r", 0, None, "text", "no score line", False, 4)
    assert (score_cell(u), score_head(u)) == ("✗", "unparsed")


# -- the screens ------------------------------------------------------------------------------
def _heads(app: MrtuiApp) -> list[str]:
    out = []
    for w in app.screen.query(".judgement Static.jhead"):
        assert isinstance(w, Static)
        r = w.render()
        out.append(getattr(r, "plain", str(r)))
    return out


@pytest.mark.asyncio
async def test_expected_scores_in_the_prompt_response_and_battle_screens(
    tui_log_expected: Path,
) -> None:
    db = tui_log_expected
    key, it = _battle_prompt(db)
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        detail = await _open_prompt(pilot, app, key, it)
        assert detail.it is not None
        r = detail.it.responses[0]
        rows = q(
            db,
            "SELECT judge_index, score, sampled_score, choice_probs, choice_mass FROM judgements "
            "WHERE response_key = ? ORDER BY judge_index, judgement_key",
            [r.key],
        )
        table = detail.query_one("#judgements", DataTable)
        assert table.row_count == len(rows) == N
        for i, (_, score, _, probs, _) in enumerate(rows):
            assert str(table.get_row_at(i)[1]) == f"{score:.2f} {dist_bar(probs)}"

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResponseDetailScreen))
        await pilot.pause(0.1)
        heads = _heads(app)
        for head, (jidx, score, sampled, probs, mass) in zip(heads, rows, strict=True):
            named = "no score" if sampled is None else f"{sampled:.0f}"
            assert head.startswith(f"judge {jidx}: expected score {score:.2f} (its text named")
            assert f"(its text named {named})" in head
            assert dist_bar(probs) in head and dist_numbers(probs) in head
            assert f"mass {mass:.2f}" in head
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, TextModal))
        await pilot.pause(0.1)
        assert f"expected score {rows[0][1]:.2f}" in _statics(app)
        assert dist_numbers(rows[0][3]) in _statics(app)
        await pilot.press("escape", "escape")
        await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))

        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BattleScreen))
        battle = app.screen
        assert isinstance(battle, BattleScreen)
        await pilot.pause(0.1)
        b = battle.battle
        verdicts = {
            (first, second): (winner, p)
            for first, second, winner, p in q(
                db,
                "SELECT first_key, second_key, winner, p_first FROM meta_verdicts "
                "WHERE response_key = ?",
                [b.response_key],
            )
        }
        js = battle.compared
        matrix = battle.query_one("#matrix", DataTable)
        for row, m in enumerate(js):
            assert str(matrix.get_cell_at((row, 0))).endswith(f"({m.score:.2f})")
            for col, n in enumerate(js):
                if m.key == n.key or (m.key, n.key) not in verdicts:
                    continue
                winner, p = verdicts[(m.key, n.key)]
                arrow = {"A": "A ◀", "B": "B ▲"}[winner]
                assert str(matrix.get_cell_at((row, col + 1))) == f"{arrow} {p:.2f}"
        mean_p = sum(p for _, p in verdicts.values()) / len(verdicts)
        assert f"mean P(first shown better) {mean_p:.2f} over {len(verdicts)} verdicts" in (
            _statics(app)
        )
        # the verdict under the cursor: both orders' P(first better) and the soft outcome
        m, n = js[0], js[1]
        matrix.move_cursor(row=0, column=2)
        await pilot.pause(0.1)
        b_mn = q(
            db,
            "SELECT b_mn FROM judge_battles WHERE judgement_m = ? AND judgement_n = ?",
            [m.key, n.key],
        )[0][0]
        text = _statics(app)
        assert f"P(J{m.judge_index} better, J{m.judge_index} shown first) " in text
        assert f"{verdicts[(m.key, n.key)][1]:.2f}" in text
        assert f"{verdicts[(n.key, m.key)][1]:.2f}" in text
        assert f"soft outcome b(J{m.judge_index} over J{n.judge_index}) {b_mn:.3f}" in text
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextModal))
        await pilot.pause(0.1)
        assert f"soft outcome b(J{m.judge_index} over J{n.judge_index}) {b_mn:.3f}" in (
            _statics(app)
        )


@pytest.mark.asyncio
async def test_sampled_scores_and_verdicts_show_as_before(tui_log: Path) -> None:
    key, it = _battle_prompt(tui_log)
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        detail = await _open_prompt(pilot, app, key, it)
        assert detail.it is not None
        r = detail.it.responses[0]
        table = detail.query_one("#judgements", DataTable)
        for i, j in enumerate(r.judgements):
            assert str(table.get_row_at(i)[1]) == ("✗" if j.score is None else f"{j.score:.0f}")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResponseDetailScreen))
        await pilot.pause(0.1)
        for head, j in zip(_heads(app), r.judgements, strict=True):
            score = "unparsed" if j.score is None else f"score {j.score:.0f}"
            assert head.startswith(f"judge {j.judge_index}: {score}")
            assert "expected" not in head and "p(0..5)" not in head
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PromptDetailScreen))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BattleScreen))
        await pilot.pause(0.1)
        text = _statics(app)
        assert "ω1 = " in text and "position wins (response scope)" in text
        assert "P(first" not in text and "soft outcome" not in text
        battle = app.screen
        assert isinstance(battle, BattleScreen)
        matrix = battle.query_one("#matrix", DataTable)
        cells = {
            str(matrix.get_cell_at((r_, c)))
            for r_ in range(matrix.row_count)
            for c in range(1, len(matrix.columns))
        }
        assert cells <= {"A ◀", "B ▲", "tie", "?", "·", "—"}
