"""The battle view's filter (``f``): only the pairs of judgements whose two orders do not name
the same winner, on a hand-made battle with every kind of pair."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from mrtui.tui.app import MrtuiApp
from mrtui.tui.battle import BattleScreen, disagrees
from mrtui.tui.model import Battle, IterationFocus, JudgementInfo, PromptFocus, Verdict

from .test_app import SIZE, _statics, ready, until

J = [f"j{i}" for i in range(4)]
# (first shown, second shown) -> (winner, parse_error)
VERDICTS = {
    (0, 1): ("A", None),  # j0 wins both ways: agree
    (1, 0): ("B", None),
    (0, 2): ("A", None),  # the first shown wins both times: disagree
    (2, 0): ("A", None),
    (1, 2): (None, "tie"),  # a tie both ways: no winner to agree on
    (2, 1): (None, "tie"),
    (0, 3): ("A", None),  # one order only: not judged both ways
    (1, 3): ("B", None),  # j3 wins both ways: agree
    (3, 1): ("A", None),
    (2, 3): (None, "no winner line"),  # unparsed, then j2: disagree
    (3, 2): ("B", None),
}
DISAGREE = {(0, 2), (1, 2), (2, 3)}


def _battle() -> tuple[PromptFocus, IterationFocus]:
    judgements = [
        JudgementInfo(k, "resp", i, 1.0 + i, f"judgement {i}", None, False, 11)
        for i, k in enumerate(J)
    ]
    verdicts = {
        (J[m], J[n]): Verdict(f"v{m}{n}", J[m], J[n], w, f"verdict {m}{n}\nWinner: x", e)
        for (m, n), (w, e) in VERDICTS.items()
    }
    battle = Battle("resp", "response", judgements, verdicts, 0.5, 0.5, 3, 3, None, None, "tie")
    battle.ready = True
    it = IterationFocus(1, [], None, battle)
    return PromptFocus("prompt", 0, "", "question?", {1: it}), it


def test_disagrees_is_not_the_same_winner_in_both_orders() -> None:
    _, it = _battle()
    assert it.battle is not None
    got = {(m, n) for m in range(4) for n in range(m + 1, 4) if disagrees(it.battle, J[m], J[n])}
    assert got == DISAGREE
    assert all(disagrees(it.battle, J[n], J[m]) for m, n in DISAGREE)  # either cell of a pair


def _cells(screen: BattleScreen) -> dict[tuple[int, int], str]:
    m = screen.query_one("#matrix", DataTable)
    return {(r, c): str(m.get_cell_at((r, c + 1))) for r in range(4) for c in range(4) if r != c}


@pytest.mark.asyncio
async def test_f_shows_only_the_pairs_whose_orders_disagree(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        focus, it = _battle()
        app.push_screen(BattleScreen(focus, it))
        await until(pilot, lambda: isinstance(app.screen, BattleScreen))
        screen = app.screen
        assert isinstance(screen, BattleScreen)
        await pilot.pause(0.1)
        before = _cells(screen)
        assert before[(0, 1)] == "A ◀" and before[(3, 0)] == "·"  # every verdict shown
        assert "for 3 of 5 pairs judged both ways; f shows only these" in _statics(app)
        shown_keys = {
            a.binding.description: k for k, a in screen.active_bindings.items() if a.binding.show
        }
        assert shown_keys.get("Only AB≠BA") == "f"  # in the footer (and the palette)

        await pilot.press("f")
        after = _cells(screen)
        shown = {(r, c) for (r, c), text in after.items() if text}
        assert shown == DISAGREE | {(n, m) for m, n in DISAGREE}  # both cells of each pair
        for cell in shown:
            assert after[cell] == before[cell]
        assert "only these are shown (f: all)" in _statics(app)

        m = screen.query_one("#matrix", DataTable)
        m.move_cursor(row=0, column=2)  # j0 first, j1 second: the orders agree, hidden
        await pilot.pause(0.05)
        assert screen.current_verdict() is None
        assert "only the pairs whose two orders disagree are shown" in _statics(app)
        m.move_cursor(row=0, column=3)  # j0 first, j2 second: shown
        await pilot.pause(0.05)
        v = screen.current_verdict()
        assert v is not None and (v.first_key, v.second_key) == ("j0", "j2")

        await pilot.press("f")
        assert _cells(screen) == before
