"""Both orders side by side (``2`` in the battle matrix) and the compare-two-runs screen (``C``
on the overview, ``mrtui tui --compare A B``).

The orders tests put a hand-made battle (every kind of pair, one verdict of hostile text) on
the battle screen over a real log and press the real keys. The compare tests read a hand-built
log of two runs on the same prompt texts whose actor pairs are known: which prompts' chosen
responses differ is fixed by the scores written, not computed by the code under test.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from cli.helpers import mrtui
from store.logbuilder import LogBuilder
from textual.widgets import DataTable, OptionList, Static

from mrtui.store import EventLog, connect
from mrtui.tui.app import MrtuiApp
from mrtui.tui.battle import BattleScreen
from mrtui.tui.compare import CompareScreen, RunPicker
from mrtui.tui.model import Battle, IterationFocus, JudgementInfo, PromptFocus, Verdict
from mrtui.tui.orders import AGREES, CONTRADICTS, OrdersScreen
from mrtui.untrusted import safe

from .conftest import HOSTILE
from .test_app import SIZE, ready, until

J = [f"j{i}" for i in range(5)]
# (first shown, second shown) -> (winner, parse_error, p_first)
VERDICTS: dict[tuple[int, int], tuple[str | None, str | None]] = {
    (0, 1): ("A", None),  # each order picks the one shown first: a contradiction
    (1, 0): ("A", None),
    (0, 2): ("B", None),  # each order picks the one shown second: a contradiction
    (2, 0): ("B", None),
    (1, 2): ("A", None),  # j1 both ways: consistent
    (2, 1): ("B", None),
    (0, 3): ("A", None),  # one order only
    (3, 4): (None, "tie"),  # a tie, then j4: no winner to compare
    (4, 3): ("A", None),
}
HOSTILE_CELL = (1, 0)


def _plain(screen: Any, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return getattr(r, "plain", str(r))


def _battle(expected: bool = False) -> tuple[PromptFocus, IterationFocus]:
    judgements = [
        JudgementInfo(k, "resp", i, 1.0 + i, f"judgement {i}", None, False, 11)
        for i, k in enumerate(J)
    ]
    verdicts = {}
    for (m, n), (w, e) in VERDICTS.items():
        text = HOSTILE if (m, n) == HOSTILE_CELL else f"verdict {m}{n}\nWinner: {w}"
        p = (0.8 if w == "A" else 0.3) if expected else None
        verdicts[(J[m], J[n])] = Verdict(f"v{m}{n}", J[m], J[n], w, text, e, p)
    battle = Battle("resp", "response", judgements, verdicts, 0.5, 0.5, 3, 3, None, None, "x")
    battle.ready = True
    it = IterationFocus(1, [], None, battle)
    return PromptFocus("prompt", 0, "", "question?", {1: it}), it


async def _orders(pilot: Any, app: MrtuiApp, m: int, n: int) -> OrdersScreen:
    """From the battle screen, the cell of j<m> shown first and j<n> second, then ``2``."""
    while not isinstance(app.screen, BattleScreen):
        app.pop_screen()
        await pilot.pause(0.05)
    app.screen.query_one("#matrix", DataTable).move_cursor(row=m, column=n + 1)
    await pilot.pause(0.05)
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, OrdersScreen))
    await pilot.pause(0.05)
    assert isinstance(app.screen, OrdersScreen)
    return app.screen


async def _battle_app(pilot: Any, app: MrtuiApp, expected: bool = False) -> None:
    await ready(pilot, app)
    app.push_screen(BattleScreen(*_battle(expected)))
    await until(pilot, lambda: isinstance(app.screen, BattleScreen))
    await pilot.pause(0.1)


@pytest.mark.asyncio
async def test_contradictions_are_marked_and_winners_named_the_same_way(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await _battle_app(pilot, app)

        s = await _orders(pilot, app, 0, 1)
        mark = _plain(s, "#orders-mark")
        assert mark.startswith(CONTRADICTS) and "picks the judgement shown first" in mark
        assert s.query_one("#orders-mark").has_class("-contradiction")
        # left: j0 first, picks j0; right: j1 first, picks j1: both named by judge and score
        assert "winner: J0 (score 1), the judgement shown first" in _plain(s, "#head-left")
        assert "winner: J1 (score 2), the judgement shown first" in _plain(s, "#head-right")
        assert "J0 shown first, J1 second" in _plain(s, "#head-left")

        s = await _orders(pilot, app, 2, 0)  # opened from the mirror cell: j2 first on the left
        mark = _plain(s, "#orders-mark")
        assert mark.startswith(CONTRADICTS) and "picks the judgement shown second" in mark
        assert "winner: J0 (score 1), the judgement shown second" in _plain(s, "#head-left")
        assert "winner: J2 (score 3), the judgement shown second" in _plain(s, "#head-right")

        s = await _orders(pilot, app, 1, 2)
        mark = _plain(s, "#orders-mark")
        assert mark == f"{AGREES}: both orders pick J1 (score 2)"
        assert CONTRADICTS not in mark and not s.query_one("#orders-mark").has_class(
            "-contradiction"
        )
        assert "winner: J1 (score 2), the judgement shown first" in _plain(s, "#head-left")
        assert "winner: J1 (score 2), the judgement shown second" in _plain(s, "#head-right")

        s = await _orders(pilot, app, 3, 4)  # a tie in one order: neither agree nor contradict
        mark = _plain(s, "#orders-mark")
        assert CONTRADICTS not in mark and AGREES not in mark
        assert "no winner to compare: left tie" in mark
        assert "winner: none (tie)" in _plain(s, "#head-left")
        assert "P(" not in _plain(s, "#head-left")  # sampled meta scoring: no probability


@pytest.mark.asyncio
async def test_a_pair_judged_in_one_order_says_so(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await _battle_app(pilot, app)
        for m, n, missing in ((0, 3, "right"), (3, 0, "left")):  # the cell and its empty mirror
            s = await _orders(pilot, app, m, n)
            mark = _plain(s, "#orders-mark")
            assert mark.startswith("only one order: this pair was meta-judged with J0 shown")
            assert CONTRADICTS not in mark and AGREES not in mark
            assert "no verdict in this order" in _plain(s, f"#head-{missing}")
            present = "left" if missing == "right" else "right"
            assert "winner: J0 (score 1), the judgement shown first" in _plain(
                s, f"#head-{present}"
            )
        # a pair never meta-judged (j1, j3) opens nothing
        app.pop_screen()
        await pilot.pause(0.05)
        app.screen.query_one("#matrix", DataTable).move_cursor(row=1, column=4)
        await pilot.press("2")
        await pilot.pause(0.1)
        assert isinstance(app.screen, BattleScreen)


@pytest.mark.asyncio
async def test_verdict_text_is_shown_literally(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await _battle_app(pilot, app)
        s = await _orders(pilot, app, *HOSTILE_CELL)
        body = s.query_one("#body-left", Static).render()
        assert getattr(body, "plain", None) == safe(HOSTILE)  # markup as typed, ESC as \x1b
        assert "\x1b" not in body.plain and r"\x1b[31mRED" in body.plain
        assert not body.spans  # no style came from the text
        assert app.is_running  # the [@click=app.quit] link did nothing


@pytest.mark.asyncio
async def test_expected_meta_scoring_shows_p_first(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await _battle_app(pilot, app, expected=True)
        s = await _orders(pilot, app, 1, 2)
        assert "P(J1 better, J1 shown first) 0.80" in _plain(s, "#head-left")
        assert "P(J2 better, J2 shown first) 0.30" in _plain(s, "#head-right")


# -- compare two runs -------------------------------------------------------------------------

# prompt text -> (responses of run r, responses of run s): (text, scores of its 3 judgements)
PROMPTS: dict[str, tuple[list[tuple[str, list[Any]]], list[tuple[str, list[Any]]]]] = {
    "same pick": ([("alpha", [5, 5, 5]), ("beta", [1, 1, 1])],) * 2,
    "other pick": (
        [("alpha", [5, 5, 5]), ("beta", [1, 1, 1])],
        [("alpha", [1, 1, 1]), ("beta", [5, 5, 5])],
    ),
    "no pair in either": ([("tie a", [3, 3, 3]), ("tie b", [3, 3, 3])],) * 2,
    "pair in r only": (
        [("gamma", [4, 4, 4]), ("delta", [2, 2, 2])],
        [("gamma", [3, 3, 3]), ("delta", [3, 3, 3])],
    ),
    "same text, other sample": (  # the same text chosen: not a difference
        [("alpha", [5, 5, 5]), ("beta", [1, 1, 1])],
        [("beta", [1, 1, 1]), ("alpha", [5, 5, 5])],
    ),
    "other text, same sample": (  # sample #0 both times, different texts: a difference
        [("alpha", [5, 5, 5]), ("beta", [1, 1, 1])],
        [("gamma", [5, 5, 5]), ("beta", [1, 1, 1])],
    ),
    f"hostile {HOSTILE}": (
        [(f"chosen {HOSTILE}", [5, 5, 5]), ("plain", [2, 2, 2])],
        [(f"chosen {HOSTILE}", [5, 5, 5]), ("plain", [2, 2, 2])],
    ),
}
DIFFERING = {"other pick", "pair in r only", "other text, same sample"}
ONLY_R = "a prompt only run r has"


def _two_runs(path: Path, third: bool = False) -> Path:
    """Runs "r" and "s" (and, with ``third``, "t", a copy of "s") on the same prompt texts."""
    runs: dict[str, list[Any]] = {}
    for side, run in enumerate(("r", "s")):
        b = LogBuilder(path)
        for i, (text, sides) in enumerate(PROMPTS.items()):
            b.prompt(f"p{i}", text)
            b.events[-1].payload["index"] = i
            for k, (answer, scores) in enumerate(sides[side]):
                b.response(f"p{i}", f"p{i}r{k}", answer, scores, index=k)
        if run == "r":
            b.prompt("only", ONLY_R)
            b.events[-1].payload["index"] = len(PROMPTS)
        runs[run] = b.events
    if third:
        runs["t"] = runs["s"]
    events = []
    for run, evs in runs.items():
        for e in evs:
            if e.event_type == "TemplateRegistered":
                if run != "r":
                    continue
                events.append(e)
                continue
            # keys unique to the run (prompt keys carry the run in a real log too)
            payload = dict(e.payload)
            if payload.get("prompt_key"):
                payload["prompt_key"] = f"{run}:{payload['prompt_key']}"
            events.append(
                dataclasses.replace(
                    e,
                    run_id=run,
                    payload=payload,
                    key=f"{run}:{e.key}" if e.key else None,
                    parent_key=f"{run}:{e.parent_key}" if e.parent_key else None,
                )
            )
    with EventLog(path) as log:
        log.append(events)
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _two_runs(tmp_path_factory.mktemp("compare") / "log.duckdb")


async def _compare(pilot: Any, app: MrtuiApp) -> CompareScreen:
    await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.complete)
    await pilot.pause(0.05)
    assert isinstance(app.screen, CompareScreen)
    return app.screen


def _texts(screen: CompareScreen) -> set[str]:
    return {p.text for p in screen.rows}


def test_the_log_holds_the_pairs_the_test_expects(two_runs: Path) -> None:
    """The premise, from the actor_pairs view: which prompts have which chosen response."""
    with connect(two_runs) as con:
        rows = con.execute(
            "SELECT ap.run_id, p.prompt, r.response FROM actor_pairs ap "
            "JOIN prompts p ON p.prompt_key = ap.prompt_key "
            "JOIN responses r ON r.response_key = ap.chosen_key"
        ).fetchall()
    chosen = {(run, prompt): text for run, prompt, text in rows}
    assert chosen[("r", "other pick")] == "alpha" and chosen[("s", "other pick")] == "beta"
    assert ("s", "pair in r only") not in chosen and ("r", "pair in r only") in chosen
    assert not any(p == "no pair in either" for _, p in chosen)
    assert chosen[("r", "same text, other sample")] == chosen[("s", "same text, other sample")]
    assert chosen[("r", "other text, same sample")] != chosen[("s", "other text, same sample")]


@pytest.mark.asyncio
async def test_f_keeps_exactly_the_prompts_whose_chosen_response_differs(two_runs: Path) -> None:
    app = MrtuiApp(two_runs, poll=False, compare=("r", "s"))
    async with app.run_test(size=SIZE) as pilot:
        s = await _compare(pilot, app)
        assert _texts(s) == set(PROMPTS)  # the shared prompts, matched by text
        assert s.data is not None and (s.data.only_a, s.data.only_b) == (1, 0)
        assert "chosen response differs for 3" in _plain(s, "#cmp-list-info")
        assert "(1 only in A, 0 only in B)" in _plain(s, "#cmp-list-info")

        await pilot.press("f")
        assert _texts(s) == DIFFERING
        assert s.query_one("#cmp-prompts", DataTable).row_count == len(DIFFERING)
        assert "showing only those (f: all)" in _plain(s, "#cmp-list-info")

        await pilot.press("f")
        assert _texts(s) == set(PROMPTS)


@pytest.mark.asyncio
async def test_compare_shows_health_pairs_and_model_text_literally(two_runs: Path) -> None:
    app = MrtuiApp(two_runs, poll=False, compare=("r", "s"))
    async with app.run_test(size=SIZE) as pilot:
        s = await _compare(pilot, app)
        health = s.query_one("#cmp-health", DataTable)
        rows = {str(health.get_row_at(i)[0]): i for i in range(health.row_count)}
        actor = [str(c) for c in health.get_row_at(rows["actor pairs"])[1:]]
        assert actor == ["6", "5"]  # r: all but the tie; s: the pair in r only is gone too
        responses = [str(c) for c in health.get_row_at(rows["responses"])[1:]]
        assert responses == ["14", "14"]
        judgements = [str(c) for c in health.get_row_at(rows["judgements"])[1:]]
        assert judgements == ["42", "42"]

        costs = s.query_one("#cmp-costs", DataTable)
        shown = {str(costs.get_row_at(i)[0]) for i in range(costs.row_count)}
        with connect(two_runs) as con:
            roles = {r for (r,) in con.execute("SELECT DISTINCT role FROM role_costs").fetchall()}
        assert shown == {r.replace("_", "-") for r in roles} and "actor" in shown

        hostile = next(i for i, p in enumerate(s.rows) if p.text.startswith("hostile"))
        s.query_one("#cmp-prompts", DataTable).move_cursor(row=hostile)
        await pilot.pause(0.05)
        detail = s.query_one("#cmp-a", Static).render()
        assert safe(f"chosen {HOSTILE}") in detail.plain and not detail.spans
        cell = s.query_one("#cmp-prompts", DataTable).get_row_at(hostile)[1]
        assert "[bold red]BOOM[/]" in cell.plain and not cell.spans
        assert app.is_running


@pytest.mark.asyncio
async def test_C_on_the_overview_opens_compare_or_asks_for_the_runs(tmp_path: Path) -> None:
    db = _two_runs(tmp_path / "log.duckdb", third=True)
    app = MrtuiApp(db, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.overview is not None)
        await pilot.pause(0.05)
        shown = {a.binding.description: k for k, a in app.screen.active_bindings.items()}
        assert shown.get("Compare runs") == "C"
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, RunPicker))
        options = app.screen.query_one(OptionList)
        runs = app.screen.runs
        assert sorted(runs) == ["r", "s", "t"]
        options.highlighted = runs.index("r")
        await pilot.press("enter")
        options.highlighted = runs.index("s")
        await pilot.press("enter")
        s = await _compare(pilot, app)
        assert s.runs == ("r", "s")
        await pilot.press("f")
        assert _texts(s) == DIFFERING
        await pilot.press("C")  # only on the overview
        await pilot.pause(0.05)
        assert app.screen is s


@pytest.mark.asyncio
async def test_C_is_off_with_one_run(tui_log: Path) -> None:
    app = MrtuiApp(tui_log, poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.overview is not None)
        await pilot.pause(0.05)
        shown = {a.binding.description for a in app.screen.active_bindings.values()}
        assert "Compare runs" not in shown
        await pilot.press("C")
        await pilot.pause(0.05)
        assert not isinstance(app.screen, (CompareScreen, RunPicker))


def test_compare_option_names_runs_the_log_holds(two_runs: Path, tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    shutil.copyfile(two_runs, db)
    for args, needle in (
        (("r", "ghost"), "--compare: no run 'ghost'"),
        (("s", "s"), "two different runs"),
    ):
        out = mrtui("tui", "--db", db, "--compare", *args, timeout=60)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], out.stderr


def test_compare_in_a_real_terminal(two_runs: Path, tmp_path: Path) -> None:
    """`mrtui tui --compare r s` in tmux: the screen opens on the two runs, f narrows it."""
    tmux = pytest.importorskip("tui.test_tmux_smoke")
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    db = tmp_path / "log.duckdb"
    shutil.copyfile(two_runs, db)
    pane = tmux.Pane(tmp_path)
    try:
        pane.start([str(tmux.MRTUI), "tui", "--db", str(db), "--compare", "r", "s"])
        screen = pane.wait_for(lambda s: "differs for 3" in s, 60, "the compare screen")
        assert "A = run r · B = run s" in screen
        assert all(text.split()[0] in screen for text in PROMPTS)
        pane.send("f")
        screen = pane.wait_for(lambda s: "showing only those" in s, 10, "the filter")
        assert all(text in screen for text in DIFFERING)
        assert not any(text in screen for text in set(PROMPTS) - DIFFERING)
        pane.send("q")
        deadline = time.monotonic() + 20
        while pane.exit_status() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pane.exit_status() == "0"
    finally:
        pane.close()
