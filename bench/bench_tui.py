"""TUI read benchmarks on the synthetic 1M-judgement log: first screen and moving between items.

    .venv/bin/python bench/bench_tui.py              # everything (about 3-4 minutes)
    .venv/bin/python bench/bench_tui.py --only ab    # a first screen, b moving, c reads, d baseline
    .venv/bin/python bench/bench_tui.py --rebuild    # rebuild the cached 1M-judgement log first

Targets (the TUI issue): the first screen of a log with 1M judgements appears in ≤ 1 s, and
moving between items takes ≤ 100 ms. The log is the one ``bench/bench_log.py`` builds and caches
under /tmp (one complete K=7, N=11 iteration over 13,000 prompts: 2.45M events).

The app is the one ``mrtui tui`` runs: ``MrtuiApp(db, poll=False)`` (the CLI's defaults, less
the poll for new events: the log does not change), not headless, with the bench's terminal
driver ``FrameDriver`` (set through the public ``App.driver_class``). Every frame the app
renders goes to that driver's ``write`` as terminal output, where it is counted and
timestamped instead of sent to a terminal; keys come in through the driver as a terminal's do
(``Driver.process_message``). The bench reads no private name of Textual or of mrtui.

(a) First screen. The app is driven through ``app.run_test(size=(160, 50), headless=False)``;
    the clock starts before the constructor and stops when ``app.first_screen_s`` is set (the
    overview table is filled), then when that frame has been written ("painted"), when the
    health plots are in and when the pair index is in. The cold case runs a fresh ``python -c``
    that imports ``mrtui.tui.app`` and does the same, timed from the parent's launch. Floors: a
    bare ``duckdb.connect`` + ``SELECT count(*) FROM events`` (in this process, and cold in a
    fresh interpreter).
(b) Moving. Keys are sent through the driver without ``Pilot.press``'s idle waits
    (``wait_for_idle`` sleeps ≥ 20 ms per key and up to 1 s while a background read burns CPU);
    each action is timed until the state shows the result (cursor row, preview, detail screen)
    and until the screen has been written with it and stays quiet.
(c) The read layer: every ``mrtui.tui.source.LogSource`` call the TUI makes, on the same log.
(d) Baseline: ``LogSource.focus`` (a scoped copy of one prompt's events, then the ordinary views)
    versus the same views queried for that prompt on the full log through ``mrtui.store.connect``
    (filtered by ``prompt_key``: the unscoped way); both must return the same data.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import random
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
from _common import (
    REPO,
    command,
    load,
    machine,
    median,
    table,
    timed,
    today,
    update_section,
    verdict,
)
from bench_log import ensure_log
from textual import events
from textual.app import App
from textual.driver import Driver
from textual.geometry import Size

from mrtui.store import connect
from mrtui.tui.app import MrtuiApp  # imported here, so that no timed run pays for the import
from mrtui.tui.source import LogSource

TARGET_FIRST_S = 1.0
TARGET_MOVE_S = 0.100
SIZE = (160, 50)
QUIET_S = 0.04  # the screen counts as settled after this long without a new frame
PY = sys.executable


# ---------------------------------------------------------------------------------------------
# helpers


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.0f}"


def secs(s: float | None) -> str:
    return "-" if s is None else f"{s:.3f}"


def p90(xs: list[float]) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, round(0.9 * (len(ys) - 1)))]


class FrameDriver(Driver):
    """A terminal driver that writes nowhere: the app runs as under ``mrtui tui`` (not
    headless), renders each frame to terminal output and hands it to ``write``, which counts it
    and notes when. Keys are sent with ``press``, as a terminal driver sends the ones it reads.
    Writes that are not frames (the bell, the pointer shape, the clipboard, synchronised-output
    marks: escape sequences the app writes on their own) are not counted."""

    NOT_FRAMES: ClassVar[tuple[str, ...]] = ("\x07", "\x1b]", "\x1b[?2026")
    running: ClassVar[dict[int, FrameDriver]] = {}  # id(app) -> the driver the app built

    def __init__(
        self,
        app: App[Any],
        *,
        debug: bool = False,
        mouse: bool = True,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)
        self.terminal = Size(*(size or (80, 24)))
        self.frames = 0  # frames written so far
        self.last = 0.0  # time.perf_counter() of the last one
        FrameDriver.running[id(app)] = self

    @classmethod
    def of(cls, app: App[Any]) -> FrameDriver:
        """The driver a running ``app`` built (``app.driver_class = FrameDriver``)."""
        return cls.running[id(app)]

    def write(self, data: str) -> None:
        if not data.startswith(self.NOT_FRAMES):
            self.frames += 1
            self.last = time.perf_counter()

    def press(self, key: str) -> None:
        """Send one key (a Textual key name) to the app."""
        char = {"escape": "\x1b"}.get(key, key if len(key) == 1 else None)
        self.process_message(events.Key(key, char))

    def start_application_mode(self) -> None:
        self.send_message(events.Resize(self.terminal, self.terminal))

    def disable_input(self) -> None:
        """Nothing to stop: keys come only from ``press``."""

    def stop_application_mode(self) -> None:
        """Nothing to restore: no terminal was changed."""


def bench_app(db: Path) -> MrtuiApp:
    """``MrtuiApp`` for ``db`` as ``mrtui tui --db db`` builds it (less the poll), set to run
    with ``FrameDriver``: drive it with ``app.run_test(size=SIZE, headless=False)``."""
    app = MrtuiApp(db, poll=False)
    app.driver_class = FrameDriver
    return app


class Inflight:
    """Counts ``source.focus`` reads in progress (cancelled thread workers keep running)."""

    def __init__(self, source: Any) -> None:
        self.now = self.peak = self.calls = 0
        orig = source.focus

        def focus(key: str, **kw: Any) -> Any:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
            try:
                return orig(key, **kw)
            finally:
                self.now -= 1

        source.focus = focus


async def until(cond: Callable[[], Any], timeout: float = 60.0, what: str = "") -> float:
    from textual.css.query import NoMatches

    def holds() -> bool:
        try:
            return bool(cond())
        except NoMatches:  # the screen is not composed yet
            return False

    end = time.perf_counter() + timeout
    while not holds():
        if time.perf_counter() > end:
            raise TimeoutError(f"waited {timeout:.0f} s for {what or cond}")
        await asyncio.sleep(0.001)
    return time.perf_counter()


async def nothing_to_paint(app: Any, term: FrameDriver) -> bool:
    """Whether the screen has no update pending: a callback it runs after its next refresh
    (``wait_for_refresh``) comes back without a frame written in between (a screen with
    something to paint composites it first)."""
    n = term.frames
    try:
        await asyncio.wait_for(app.screen.wait_for_refresh(), 1.0)
    except TimeoutError:
        return False
    return term.frames == n


async def settled(
    app: Any, term: FrameDriver, t0: float, cond: Callable[[], Any], what: str, timeout: float = 60
) -> tuple[float, float, int]:
    """(state shown, painted, frames): seconds after ``t0`` to the first moment ``cond`` holds
    and to the last frame written before the screen went quiet (no frame for ``QUIET_S``, and
    nothing left to paint), and the number of frames written in between."""
    n0 = term.frames
    t_state = await until(cond, timeout, what)
    limit = t_state + 2.0
    while time.perf_counter() < limit:
        await asyncio.sleep(0.002)
        # a changed screen writes at least one frame; none yet means its paint is held back
        # (a batch of updates, e.g. a recompose, is still open), not that nothing is left
        shown = term.frames > n0
        quiet = time.perf_counter() - max(term.last, t_state) > QUIET_S
        if shown and quiet and await nothing_to_paint(app, term):
            break
    t_paint = term.last if term.last > t0 else t_state
    return t_state - t0, max(t_paint, t_state) - t0, term.frames - n0


async def act(
    app: Any, term: FrameDriver, key: str, cond: Callable[[], Any], what: str
) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    term.press(key)
    return await settled(app, term, t0, cond, what)


# ---------------------------------------------------------------------------------------------
# (a) first screen


async def _first_screen_once(db: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    app = bench_app(db)
    out: dict[str, float] = {}
    async with app.run_test(size=SIZE, headless=False):
        out["first"], out["painted"], _ = await settled(
            app, FrameDriver.of(app), t0, lambda: app.first_screen_s is not None, "first screen", 60
        )
        out["app_first"] = app.first_screen_s
        out["health"] = await until(lambda: app.health is not None, 120, "health") - t0
        out["index"] = await until(lambda: app.index is not None, 300, "pair index") - t0
        out["index_judge"] = await until(lambda: app.index_judge, 300, "judge pairs") - t0
        await asyncio.sleep(0.1)
    return out


# The cold run's script; FrameDriver's own source is pasted in (importing this module there
# would load duckdb, textual and mrtui before the clock starts, and make the import cheaper).
COLD_CHILD = (
    textwrap.dedent(
        """
    from __future__ import annotations
    import time
    w0 = time.time(); t0 = time.perf_counter()
    import asyncio, json, os, sys
    import mrtui.tui.app as m
    t_imp = time.perf_counter()
    from typing import Any, ClassVar
    from textual import events
    from textual.app import App
    from textual.driver import Driver
    from textual.geometry import Size
    FRAME_DRIVER
    async def main():
        app = m.MrtuiApp(sys.argv[1], poll=False)
        app.driver_class = FrameDriver
        async with app.run_test(size=(160, 50), headless=False):
            term = FrameDriver.of(app)
            while app.first_screen_s is None:
                await asyncio.sleep(0.001)
            t_first = time.perf_counter()
            while time.perf_counter() - max(term.last, t_first) <= QUIET_S and (
                time.perf_counter() - t_first < 2
            ):
                await asyncio.sleep(0.002)
            t_paint = max(term.last, t_first)
            while app.health is None and time.perf_counter() - t_first < 120:
                await asyncio.sleep(0.005)
            t_health = time.perf_counter()
            out = {"w0": w0, "imp": t_imp - t0, "first": t_first - t0, "paint": t_paint - t0,
                   "health": t_health - t0, "app_first": app.first_screen_s}
            # on a line of its own (DuckDB may have drawn a progress bar on stdout); os.write
            # because print() goes to the app here
            os.write(1, ("\\n" + json.dumps(out) + "\\n").encode())
            os._exit(0)
    asyncio.run(main())
    """
    )
    .replace("QUIET_S", repr(QUIET_S))
    .replace("FRAME_DRIVER\n", inspect.getsource(FrameDriver))
)

COLD_FLOOR = textwrap.dedent(
    """
    import time, sys
    import duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    con.execute("SELECT count(*) FROM events").fetchall()
    con.close()
    print(time.time(), flush=True)
    """
)


def _spawn(code: str, *args: str, timeout: float = 180) -> tuple[float, str]:
    w0 = time.time()
    proc = subprocess.run(
        [PY, "-c", code, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return w0, proc.stdout.strip().splitlines()[-1]


def part_a(db: Path, repeats: int, cold_repeats: int) -> tuple[str, dict[str, Any]]:
    runs = []
    for i in range(repeats):
        gc.collect()
        r = asyncio.run(_first_screen_once(db))
        print(f"  in-process {i}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
        runs.append(r)
    cold = []
    for i in range(cold_repeats):
        w0, line = _spawn(COLD_CHILD, str(db))
        c = json.loads(line)
        c["startup"] = c["w0"] - w0
        for k in ("first", "paint", "health"):
            c["launch_" + k] = c["startup"] + c[k]
        cold.append(c)
        print(
            f"  cold {i}: launch->first {c['launch_first']:.3f}, import {c['imp']:.3f}, "
            f"launch->health {c['launch_health']:.3f}",
            flush=True,
        )
    floor = []
    for _ in range(5):
        t, _ = timed(
            lambda: (
                duckdb.connect(str(db), read_only=True)
                .execute("SELECT count(*) FROM events")
                .fetchall()
            )
        )
        floor.append(t)
    mrtui_floor = []
    for _ in range(5):

        def via_connect() -> None:
            with connect(db) as con:
                con.execute("SELECT count(*) FROM events").fetchall()

        mrtui_floor.append(timed(via_connect)[0])
    cold_floor = []
    for _ in range(cold_repeats):
        w0, line = _spawn(COLD_FLOOR, str(db))
        cold_floor.append(float(line) - w0)
    imp = []
    for _ in range(cold_repeats):
        _, line = _spawn(
            "import time; t = time.perf_counter(); import mrtui.cli.app; "
            "print(time.perf_counter() - t)"
        )
        imp.append(float(line))

    def col(key: str, rows: list[dict[str, float]]) -> list[float]:
        return [r[key] for r in rows]

    first = median(col("first", runs))
    painted = median(col("painted", runs))
    cold_first = median(col("launch_first", cold))
    cold_paint = median(col("launch_paint", cold))
    fl, cfl = median(floor), median(cold_floor)

    def line(label: str, vals: list[float], target: bool = False) -> list[str]:
        """A table row: first run, median, and the ≤ 1 s verdict where ``target``."""
        med = median(vals)
        return [
            label,
            secs(vals[0]),
            secs(med),
            "≤ 1 s" if target else "",
            verdict(med <= TARGET_FIRST_S) if target else "info",
        ]

    rows = [
        line(
            "in process: constructor → `first_screen_s` set (overview table shown)",
            col("first", runs),
            True,
        ),
        line("  … the app's own `first_screen_s`", col("app_first", runs)),
        line("  … that frame composited", col("painted", runs), True),
        line("  … health plots in (`app.health`)", col("health", runs)),
        line("  … list scores and actor pairs in (`app.index`)", col("index", runs)),
        line("  … judge pairs in (`app.index_judge`)", col("index_judge", runs)),
        line(
            "cold: launch `python -c` → first screen (interpreter + imports + app)",
            col("launch_first", cold),
            True,
        ),
        line("  … that frame composited (cold)", col("launch_paint", cold), True),
        line("  … of which interpreter start", col("startup", cold)),
        line("  … of which `import mrtui.tui.app`", col("imp", cold)),
        line("  … the app's own `first_screen_s` (cold)", col("app_first", cold)),
        line("cold: launch → health plots in", col("launch_health", cold)),
        line("`import mrtui.cli.app` (what `mrtui tui` imports first) in a fresh interpreter", imp),
        [
            "floor: `duckdb.connect` + `SELECT count(*) FROM events` (in process)",
            secs(floor[0]),
            secs(fl),
            "",
            f"`first_screen_s` / floor = {first / fl:.1f}x",
        ],
        line("floor: `mrtui.store.connect` + the same count (in process)", mrtui_floor),
        [
            "floor, cold: launch `python -c` with `import duckdb` + connect + count",
            secs(cold_floor[0]),
            secs(cfl),
            "",
            f"cold first screen (data) / cold floor = {cold_first / cfl:.1f}x",
        ],
    ]
    text = f"""### (a) First screen

{repeats} in-process runs (a fresh `MrtuiApp` each, `poll=False`, `FrameDriver`,
`run_test(size={SIZE}, headless=False)`,
each run waits for the pair index so no read of one run overlaps the next) and
{cold_repeats} cold runs in a fresh interpreter. Times in seconds; "first run" is the first
repeat (in process it also pays Textual's lazy imports and CSS parsing).

{table(["measure", "first run s", "median s", "target", "met?"], rows)}

**First screen ≤ 1 s: {verdict(painted <= TARGET_FIRST_S and cold_paint <= TARGET_FIRST_S)}**
(to the composited frame: in process {painted:.3f} s, cold from launch {cold_paint:.3f} s).
"""
    summary = {"first": painted, "cold_first": cold_paint}
    return text, summary


# ---------------------------------------------------------------------------------------------
# (b) moving between items


async def _navigate(db: Path, keys: int, opens: int) -> dict[str, Any]:
    from textual.widgets import DataTable, Static

    from mrtui.tui.battle import BattleScreen
    from mrtui.tui.detail import PromptDetailScreen, ResponseDetailScreen
    from mrtui.tui.prompts import PromptListScreen
    from mrtui.tui.text import lit

    res: dict[str, Any] = {"notes": []}
    samples: dict[str, list[tuple[float, float, int]]] = {}

    def rec(name: str, v: tuple[float, float, int]) -> None:
        samples.setdefault(name, []).append(v)

    app = bench_app(db)
    reads = Inflight(app.source)
    async with app.run_test(size=SIZE, headless=False):
        term = FrameDriver.of(app)
        await until(lambda: app.first_screen_s is not None, 60, "first screen")
        res["health_at_first"] = app.health is not None

        def lst() -> Any:
            return app.screen if isinstance(app.screen, PromptListScreen) else None

        def list_ok(row: int) -> Callable[[], bool]:
            def ok() -> bool:
                s = lst()
                if s is None or not s.rows:
                    return False
                t = s.query_one("#prompts", DataTable)
                if t.cursor_row != row or row >= len(s.rows):
                    return False
                want = lit(s.rows[row].preview).plain[:40]
                return s.query_one("#preview-text", Static).content.plain[:40] == want

            return ok

        # -- the list, opened right after the first screen (health and index still reading) --
        rec("open list (p), reads in flight", await act(app, term, "p", list_ok(0), "list"))
        early = min(10, keys)
        for i in range(early):
            busy = not app.index_judge
            v = await act(app, term, "down", list_ok(i + 1), f"list row {i + 1}")
            rec("list ↓, health/index reading in background" if busy else "list ↓", v)
        before = lst().query_one("#prompts", DataTable).cursor_row
        t_wait = time.perf_counter()
        await until(lambda: app.index_judge, 300, "pair index")
        await until(
            lambda: lst() is not None and len(lst().rows) > 0 and not lst().page_loading,
            60,
            "list reload after index",
        )
        await asyncio.sleep(0.3)
        after = lst().query_one("#prompts", DataTable).cursor_row
        res["index_wait"] = time.perf_counter() - t_wait
        res["cursor_before_index"], res["cursor_after_index"] = before, after
        if after != before:
            res["notes"].append(
                f"When the pair index arrived (`_got_index` → `PromptListScreen.index_ready` → "
                f"`reload()`), the prompt list was cleared and reloaded: the highlighted row "
                f"jumped from {before} to {after} while the user was on it (the index takes "
                f"{res['index_wait']:.0f} s more after the list was opened)."
            )

        # -- the list with the index in --
        def focus_idle() -> bool:
            return reads.now == 0

        row = lst().query_one("#prompts", DataTable).cursor_row
        for _ in range(keys):  # paced: the prefetch of the previous row has finished
            await until(focus_idle, 60, "prefetch")
            row += 1
            rec(
                "list ↓ (previous prefetch finished)",
                await act(app, term, "down", list_ok(row), "row"),
            )
        for _ in range(keys):  # burst: next key as soon as the screen settled
            row += 1
            rec(
                "list ↓ (burst: prefetches pile up)",
                await act(app, term, "down", list_ok(row), "row"),
            )
        await until(focus_idle, 60, "prefetch")
        # holding ↓: 10 presses at 30/s, then time from the last press to the settled screen
        for _ in range(3):
            await until(focus_idle, 60, "prefetch")
            for _k in range(9):
                term.press("down")
                await asyncio.sleep(1 / 30)
            row += 10
            rec(
                "hold ↓ (10 keys at 30/s): last key → settled",
                await act(app, term, "down", list_ok(row), "held row"),
            )
        await until(focus_idle, 60, "prefetch")

        # -- opening a prompt --
        def detail_ok(key: str) -> Callable[[], bool]:
            def ok() -> bool:
                s = app.screen
                if not isinstance(s, PromptDetailScreen) or s.focus_data.prompt_key != key:
                    return False
                it = s.it
                t = s.query_one("#responses", DataTable)
                return it is None or t.row_count == len(it.responses)

            return ok

        def back_to_list() -> bool:
            return lst() is not None

        def current_key() -> str:
            return lst().current().prompt_key

        stack_depths = []
        for _ in range(opens):  # warm: the highlighted prompt was prefetched
            await until(focus_idle, 60, "prefetch")
            key = current_key()
            await until(lambda key=key: key in app.focus_cache, 30, "prefetched focus")
            rec(
                "open prompt (Enter), prefetched",
                await act(app, term, "enter", detail_ok(key), "detail"),
            )
            await asyncio.sleep(0.2)
            stack_depths.append(len(app.screen_stack))
            rec("back to list (Esc)", await act(app, term, "escape", back_to_list, "list"))
            while lst() is None:  # a second detail screen was pushed
                term.press("escape")
                await asyncio.sleep(0.2)
            row += 1
            await act(app, term, "down", list_ok(row), "row")
        res["stack_depths"] = stack_depths
        if any(d > 4 for d in stack_depths):
            res["notes"].append(
                f"Enter on the prompt list pushed more than one detail screen "
                f"(screen stack depths after Enter: {stack_depths}; expected 4)."
            )
        for _ in range(opens):  # cold: nothing cached, Enter reads the prompt (focus())
            await until(focus_idle, 60, "prefetch")
            key = current_key()
            app.focus_cache.clear()
            rec(
                "open prompt (Enter), not prefetched (focus() read)",
                await act(app, term, "enter", detail_ok(key), "detail"),
            )
            await asyncio.sleep(0.2)
            await act(app, term, "escape", back_to_list, "list")
            while lst() is None:
                term.press("escape")
                await asyncio.sleep(0.2)
            row += 1
            await act(app, term, "down", list_ok(row), "row")
        for _ in range(3):  # hold ↓ 10 keys at 30/s, then Enter: stale prefetches queue up
            await until(focus_idle, 60, "prefetch")
            calls0 = reads.calls
            for _k in range(10):
                term.press("down")
                await asyncio.sleep(1 / 30)
            row += 10
            await until(list_ok(row), 30, "held row")
            key = current_key()
            queued = reads.now
            t0 = time.perf_counter()
            term.press("enter")
            rec(
                "hold ↓ (10 keys at 30/s), then Enter",
                await settled(app, term, t0, detail_ok(key), "detail"),
            )
            res.setdefault("hold_enter", []).append((queued, reads.calls - calls0))
            await asyncio.sleep(0.2)
            await act(app, term, "escape", back_to_list, "list")
            while lst() is None:
                term.press("escape")
                await asyncio.sleep(0.2)
        for gap, label in ((0.0, "↓ then Enter at once"), (0.06, "↓, Enter 60 ms later")):
            for _ in range(opens):  # the prefetch of the new row is queued or running
                await until(focus_idle, 60, "prefetch")
                key = lst().rows[row + 1].prompt_key
                calls0 = reads.calls
                t_down = time.perf_counter()
                term.press("down")
                if gap:
                    await until(list_ok(row + 1), 30, "row")
                    await asyncio.sleep(max(0.0, t_down + gap - time.perf_counter()))
                t0 = time.perf_counter()
                term.press("enter")
                rec(
                    f"{label} (timed from Enter)",
                    await settled(app, term, t0, detail_ok(key), "detail"),
                )
                res.setdefault("enter_reads", {}).setdefault(label, []).append(reads.calls - calls0)
                row += 1
                await asyncio.sleep(0.2)
                await act(app, term, "escape", back_to_list, "list")
                while lst() is None:
                    term.press("escape")
                    await asyncio.sleep(0.2)

        # -- inside a prompt: responses, response view, battle --
        await until(focus_idle, 60, "prefetch")
        key = current_key()
        await until(lambda: key in app.focus_cache, 30, "prefetched focus")
        await act(app, term, "enter", detail_ok(key), "detail")
        det = app.screen
        it = det.it
        k = len(it.responses) if it else 0
        res["k"] = k

        def resp_ok(i: int) -> Callable[[], bool]:
            def ok() -> bool:
                s = app.screen
                if not isinstance(s, PromptDetailScreen):
                    return False
                if s.query_one("#responses", DataTable).cursor_row != i:
                    return False
                r = s.current()
                body = s.query_one("#response-body", Static).content
                return (
                    r is not None
                    and getattr(body, "plain", None) == lit(r.text).plain
                    and s.query_one("#judgements", DataTable).row_count == len(r.judgements)
                )

            return ok

        for _ in range(3):
            for i in range(1, k):
                rec("detail: response ↓", await act(app, term, "down", resp_ok(i), "response"))
            for i in range(k - 2, -1, -1):
                rec("detail: response ↑", await act(app, term, "up", resp_ok(i), "response"))
        for _ in range(3):
            rec(
                "open response (Enter): N judgements side by side",
                await act(
                    app,
                    term,
                    "enter",
                    lambda: isinstance(app.screen, ResponseDetailScreen) and app.screen.is_mounted,
                    "response view",
                ),
            )
            rec(
                "response view: judgement →",
                await act(app, term, "right", lambda: app.screen.selected == 1, "judgement"),
            )
            await act(app, term, "escape", lambda: app.screen is det, "detail")
        if it is not None and it.battle is not None:
            nj = len(it.battle.judgements)

            def battle_ok() -> bool:
                s = app.screen
                return (
                    isinstance(s, BattleScreen)
                    and s.query_one("#matrix", DataTable).row_count == nj
                )

            for _ in range(5):
                rec("open battle view (b)", await act(app, term, "b", battle_ok, "battle"))
                rec(
                    "battle: cell →",
                    await act(
                        app,
                        term,
                        "right",
                        lambda: (
                            app.screen.query_one("#matrix", DataTable).cursor_coordinate.column == 3
                        ),
                        "cell",
                    ),
                )
                rec(
                    "back from battle (Esc)",
                    await act(app, term, "escape", lambda: app.screen is det, "detail"),
                )
        else:
            res["notes"].append("the prompt opened for (c) has no battle in its last iteration")
        await asyncio.sleep(0.1)
        res["focus_calls"], res["focus_peak"] = reads.calls, reads.peak
        await until(focus_idle, 60, "prefetch")
    res["samples"] = samples
    return res


HEAD_B = [
    "action",
    "n",
    "state ms (median)",
    "painted ms (median)",
    "p90 ms",
    "max ms",
    "frames",
    "target",
    "met?",
]


def part_b(db: Path, keys: int, opens: int) -> tuple[str, dict[str, Any]]:
    res = asyncio.run(_navigate(db, keys, opens))
    rows = []
    worst = 0.0
    for name, vs in res["samples"].items():
        state = [v[0] for v in vs]
        paint = [v[1] for v in vs]
        med = median(paint)
        is_move = not name.startswith("open list")
        if is_move:
            worst = max(worst, med)
        rows.append(
            [
                name,
                len(vs),
                ms(median(state)),
                ms(med),
                ms(p90(paint)),
                ms(max(paint)),
                f"{median([v[2] for v in vs]):.0f}",
                "≤ 100 ms" if is_move else "",
                verdict(med <= TARGET_MOVE_S) if is_move else "info",
            ]
        )
        print(
            f"  {name}: n={len(vs)} state {ms(median(state))} ms, painted {ms(med)} ms", flush=True
        )
    if res.get("hold_enter"):
        res["notes"].append(
            "Holding ↓ then Enter: `focus()` reads still running when Enter was pressed / "
            "started during the 10 keys: "
            + ", ".join(f"{q} / {c}" for q, c in res["hold_enter"])
            + ". The app starts a prefetch only after the cursor rests on a row for 60 ms, "
            "and Enter joins a read of the same prompt already in flight, so held keys leave "
            "few reads behind to compete with the one Enter needs."
        )
    for label, counts in res.get("enter_reads", {}).items():
        twice = sum(c >= 2 for c in counts)
        res["notes"].append(
            f"{label}: `focus()` reads of that prompt per try: {', '.join(map(str, counts))}"
            + (
                f". In {twice} of {len(counts)} tries the prompt was read twice."
                if twice
                else " (one read per open: Enter joined the prefetch or started the only read)."
            )
        )
    pool = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor
    res["notes"].append(
        f"`focus()` reads during the session: {res.get('focus_calls')} "
        f"(at most {res.get('focus_peak')} at once"
        + (
            f": the size of asyncio's default executor here ({pool} threads), so further "
            "reads, the one Enter needs included, wait in its queue)."
            if res.get("focus_peak") == pool
            else ")."
        )
    )
    notes = "\n".join(f"- {n}" for n in res["notes"])
    text = f"""### (b) Moving between items

One app session (`poll=False`, `FrameDriver`), keys sent through the driver as a terminal's
are, without `Pilot.press`'s idle waits. "state" = the
result is in the widgets (cursor row and preview; detail screen on top with its rows; body and
judgements of the response; battle matrix filled), "painted" = the last frame written before
the screen went quiet ({QUIET_S * 1000:.0f} ms without a frame, nothing left to paint),
"frames" = frames written up to then (median). "painted" is the conservative figure the
verdict uses: Textual composites at most 60 frames/s and one key often takes several (e.g.
list ↓: the cursor row in the first frame, the preview's new text a frame or two later,
scrollbar updates after that). The list is opened
right after the first screen (health and pair index still reading), then used again once the
index is in. Each Enter/Esc pair opens a different prompt. A row the cursor rests on for 60 ms
is prefetched in the background (one `focus()` read, see (c)); opening a prompt shows its
responses as soon as they are read and fills in ω, Elo and the judge pair ~50 ms later (that
second fill is part of "painted"). The
response view (Enter in a prompt) and moving between its judgements read nothing from the log
(the prompt is in memory already): their time is Textual's compose, layout and compositing.

{table(HEAD_B, rows)}

**Moving ≤ 100 ms: {verdict(worst <= TARGET_MOVE_S)}** (slowest median: {worst * 1000:.0f} ms).

Observations:
{notes}
"""
    return text, {"worst_move": worst}


# ---------------------------------------------------------------------------------------------
# (c) the read layer


def part_c(db: Path, repeats: int, n_focus: int) -> tuple[str, dict[str, Any]]:
    src = LogSource(db)
    ov = src.overview()
    run = src.run_id
    keys = [
        r[0]
        for r in src.sql(
            "SELECT key FROM events WHERE event_type = 'PromptAdded' AND run_id = ? ORDER BY seq",
            [run],
        )
    ]
    rng = random.Random(0)
    picks = rng.sample(keys, n_focus)
    rows: list[list[Any]] = []
    times: dict[str, float] = {}

    def bench(name: str, fn: Callable[[], Any], reps: int, target: str, limit: float | None):
        ts = []
        out = None
        for _ in range(reps):
            t, out = timed(fn)
            ts.append(t)
        m = median(ts)
        times[name] = m
        ok = "info" if limit is None else verdict(m <= limit)
        rows.append([name, reps, secs(ts[0]), secs(m), target, ok])
        print(f"  {name}: median {m:.3f} s", flush=True)
        return out

    bench(
        "overview() (first screen's read)", lambda: LogSource(db).overview(), repeats, "≤ 1 s", 1.0
    )

    def fresh_health() -> Any:
        s = LogSource(db, run)
        return s.health()

    bench("health() first call (whole log)", fresh_health, repeats, "", None)
    warm = LogSource(db, run)
    warm.health()
    bench("health() again, nothing new (incremental)", warm.health, repeats, "", None)
    bench("losses()", src.losses, repeats, "", None)
    bench(
        "poll: `SELECT max(seq) FROM events`",
        lambda: src.sql("SELECT coalesce(max(seq), 0) FROM events"),
        repeats,
        "",
        None,
    )
    bench("prompt_count()", src.prompt_count, repeats, "", None)
    bench(
        "prompts() page of 100 at offset 0",
        lambda: src.prompts(offset=0),
        repeats,
        "≤ 100 ms",
        TARGET_MOVE_S,
    )
    bench(
        "prompts() page of 100 at offset 10,000",
        lambda: src.prompts(offset=10_000),
        repeats,
        "≤ 100 ms",
        TARGET_MOVE_S,
    )
    sample_text = src.text(keys[777])
    words = sorted({w.strip(".,;:?!\"'()") for w in sample_text.split()}, key=lambda w: (len(w), w))
    term = next((w for w in reversed(words) if w.isalpha() and 5 <= len(w) <= 10), "the")
    hits = src.prompt_count(search=term)
    bench(
        f"search {term!r} ({hits} hits): prompt_count + prompts page",
        lambda: (src.prompt_count(search=term), src.prompts(search=term)),
        repeats,
        "",
        None,
    )
    bench(
        "search with no hit: prompt_count + prompts page",
        lambda: (src.prompt_count(search="zqxjzqxj"), src.prompts(search="zqxjzqxj")),
        repeats,
        "",
        None,
    )
    ft = []
    foci = []
    for k in picks:
        t, f = timed(lambda k=k: src.focus(k))
        ft.append(t)
        foci.append(f)
    times["focus"] = median(ft)
    rows.append(
        [
            f"focus(prompt) over {n_focus} random prompts",
            n_focus,
            secs(ft[0]),
            secs(median(ft)),
            "≤ 100 ms (open without prefetch)",
            verdict(median(ft) <= TARGET_MOVE_S),
        ]
    )
    rows.append(["  … p90 / max", n_focus, "", f"{p90(ft):.3f} / {max(ft):.3f}", "", "info"])
    print(f"  focus: median {median(ft):.3f} s", flush=True)
    f0 = foci[0]
    it = f0.iterations[max(f0.iterations)]
    rkey = it.responses[0].key
    jkey = it.responses[0].judgements[0].key if it.responses[0].judgements else rkey
    bench("text(response key)", lambda: src.text(rkey), repeats, "", None)
    bench("text(judgement key)", lambda: src.text(jkey), repeats, "", None)
    bench("prompt_index() (pair index, background)", src.prompt_index, 1, "", None)
    bench(
        "prompt_index(judge_pairs=False)",
        lambda: src.prompt_index(judge_pairs=False),
        1,
        "",
        None,
    )
    text = f"""### (c) The read layer (`mrtui.tui.source.LogSource`)

Run `{run}`: {ov.prompts:,} prompts, {ov.max_seq:,} events. Each call opens its own
connection (as in the app). {repeats} repeats unless the count says otherwise; seconds.
Targets are given for the reads that sit directly on a user action (the first screen, opening
a prompt without a prefetch, the list's pages).

{table(["call", "n", "first s", "median s", "target", "met?"], rows)}
"""
    return text, {"picks": picks, "times": times, "run": run}


# ---------------------------------------------------------------------------------------------
# (d) baseline: scoped focus() vs the same views on the full log

UNSCOPED = {
    "prompt": "SELECT text, payload->>'$.source_id', (payload->>'$.index')::INTEGER FROM events "
    "WHERE event_type = 'PromptAdded' AND key = $p",
    "responses": "SELECT r.response_key, s.mean_score, s.valid_count, s.judgement_count "
    "FROM responses r LEFT JOIN response_scores s USING (response_key) "
    "WHERE r.run_id = $run AND r.prompt_key = $p",
    "judgements": "SELECT judgement_key, score FROM judgements "
    "WHERE run_id = $run AND prompt_key = $p",
    "actor_pairs": "SELECT iteration, chosen_key, rejected_key FROM actor_pairs "
    "WHERE run_id = $run AND prompt_key = $p",
    "meta_targets": "SELECT iteration, response_key FROM meta_targets "
    "WHERE run_id = $run AND prompt_key = $p",
    "meta_verdicts": "SELECT verdict_key, first_key, second_key, winner FROM meta_verdicts "
    "WHERE run_id = $run AND prompt_key = $p",
    "judge_battles": "SELECT response_key, any_value(win_1st), any_value(win_2nd) "
    "FROM judge_battles WHERE run_id = $run AND prompt_key = $p GROUP BY ALL",
    "judgement_elo": "SELECT judgement_key, elo FROM judgement_elo "
    "WHERE run_id = $run AND prompt_key = $p",
    "judge_pair_candidates": "SELECT chosen_key, rejected_key, drop_reason "
    "FROM judge_pair_candidates WHERE run_id = $run AND prompt_key = $p",
}


def unscoped(db: Path, run: str, pk: str) -> tuple[dict[str, float], dict[str, Any]]:
    per: dict[str, float] = {}
    out: dict[str, Any] = {}
    with connect(db) as con:
        for name, sql in UNSCOPED.items():
            params = {k: v for k, v in {"run": run, "p": pk}.items() if f"${k}" in sql}
            t, rows = timed(lambda sql=sql, params=params: con.execute(sql, params).fetchall())
            per[name] = t
            out[name] = rows
    return per, out


def _agree(f: Any, u: dict[str, Any]) -> list[str]:
    """Differences between the scoped focus() and the unscoped rows of the same prompt."""
    bad = []
    resp = {r.key: r for it in f.iterations.values() for r in it.responses}
    if set(resp) != {r[0] for r in u["responses"]}:
        bad.append("response keys")
    for key, mean, valid, judged in u["responses"]:
        r = resp.get(key)
        if r and (
            r.valid != valid or r.judged != judged or abs((r.mean or 0) - (mean or 0)) > 1e-9
        ):
            bad.append(f"scores of {key}")
    js = {j.key: j for r in resp.values() for j in r.judgements}
    if {k: s for k, s in u["judgements"]} != {k: j.score for k, j in js.items()}:
        bad.append("judgements")
    battles = {it.battle.response_key: it.battle for it in f.iterations.values() if it.battle}
    if {r[1] for r in u["meta_targets"]} != set(battles):
        bad.append("meta targets")
    nv = sum(len(b.verdicts) for b in battles.values())
    if nv != len(u["meta_verdicts"]):
        bad.append(f"verdicts ({nv} vs {len(u['meta_verdicts'])})")
    for k, elo in u["judgement_elo"]:
        if k in js and (js[k].elo is None or abs(js[k].elo - elo) > 1e-6):
            bad.append(f"elo of {k}")
            break
    cand = {(c, r, d) for c, r, d in u["judge_pair_candidates"]}
    mine = {(b.chosen_key, b.rejected_key, b.drop_reason) for b in battles.values()}
    if cand != mine:
        bad.append("judge pair")
    pairs = {(it, c, r) for it, c, r in u["actor_pairs"]}
    if pairs != {(i.iteration, *i.actor_pair) for i in f.iterations.values() if i.actor_pair}:
        bad.append("actor pair")
    return bad


def part_d(db: Path, run: str, picks: list[str], n: int) -> tuple[str, dict[str, Any]]:
    src = LogSource(db, run)
    scoped_t, full_t, per_view, issues = [], [], {}, []
    for pk in picks[:n]:
        ts = []
        for _ in range(3):
            t, f = timed(lambda pk=pk: src.focus(pk))
            ts.append(t)
        scoped_t.append(median(ts))
        per, rows = unscoped(db, run, pk)
        full_t.append(sum(per.values()))
        for k, v in per.items():
            per_view.setdefault(k, []).append(v)
        bad = _agree(f, rows)
        if bad:
            issues.append(f"{pk}: {', '.join(bad)}")
        print(f"  {pk}: scoped {scoped_t[-1]:.3f} s, unscoped {full_t[-1]:.2f} s", flush=True)
    s, u = median(scoped_t), median(full_t)
    rows = [
        [f"unscoped: `{k}` WHERE prompt_key = ?", secs(median(v)), ""] for k, v in per_view.items()
    ]
    rows.append(["unscoped total (baseline)", secs(u), "1.00x"])
    rows.append(
        ["`LogSource.focus()` (scoped copy + the same views)", secs(s), f"{u / s:.0f}x faster"]
    )
    agree = "yes, on every prompt" if not issues else "NO: " + "; ".join(issues)
    text = f"""### (d) Baseline: scoped `focus()` vs the same views on the full log

{n} prompts from (c); per prompt, `focus()` is the median of 3 and the unscoped queries run once
each on one `mrtui.store.connect` connection (they filter each view by `prompt_key` and let
DuckDB push the filter down as far as it can). Both return the same data: {agree}.

{table(["query", "median s", "ratio"], rows)}

**Scoped focus() / unscoped = {s / u:.4f} ({u / s:.0f}x speed-up).**
"""
    return text, {"ratio": u / s}


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="abcd", help="parts to run: any of a, b, c, d")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached synthetic log")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold-repeats", type=int, default=3)
    ap.add_argument("--keys", type=int, default=20, help="key presses per list measurement")
    ap.add_argument("--opens", type=int, default=5, help="prompts opened per variant")
    ap.add_argument("--focus-prompts", type=int, default=20)
    ap.add_argument("--baseline-prompts", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true", help="print the section, leave RESULTS.md")
    args = ap.parse_args()
    import textual

    load_start = load()
    t_start = time.perf_counter()
    db, _ = ensure_log(args.rebuild)
    print(f"log: {db}", flush=True)
    sections = []
    picks: list[str] = []
    run = ""
    for part in "abcd":
        if part not in args.only:
            continue
        print(f"({part})", flush=True)
        try:
            if part == "a":
                sections.append(part_a(db, args.repeats, args.cold_repeats)[0])
            elif part == "b":
                sections.append(part_b(db, args.keys, args.opens)[0])
            elif part == "c":
                text, info = part_c(db, args.repeats, args.focus_prompts)
                picks, run = info["picks"], info["run"]
                sections.append(text)
            else:
                if not picks:
                    src = LogSource(db)
                    src.overview()
                    run = src.run_id
                    keys = [
                        r[0]
                        for r in src.sql(
                            "SELECT key FROM events WHERE event_type = 'PromptAdded' "
                            "AND run_id = ? ORDER BY seq",
                            [run],
                        )
                    ]
                    picks = random.Random(0).sample(keys, args.baseline_prompts)
                sections.append(part_d(db, run, picks, args.baseline_prompts)[0])
        except Exception:
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            sections.append(f"### ({part}) FAILED\n\n```\n{tb[-3000:]}\n```\n")
    took = time.perf_counter() - t_start
    head = f"""## TUI reads — `bench/bench_tui.py`

- Date: {today()}
- Machine: {machine()}; DuckDB {duckdb.__version__}, Textual {textual.__version__}
- Other work on the machine: {load_start} at start, {load()} at end
- Command: `{command()}` ({took:.0f} s)
- Log: the cached synthetic log of `bench/bench_log.py` ({db.stat().st_size / 2**30:.2f} GiB)
- Targets (TUI issue): first screen of a 1M-judgement log ≤ 1 s; moving between items ≤ 100 ms
"""
    name = "tui" if args.only == "abcd" else f"tui-{args.only}"
    body = head + "\n" + "\n\n".join(sections)
    if args.dry_run:
        print(body)
        return
    update_section(name, body)
    print(f"wrote section {name!r} of bench/RESULTS.md ({took:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
