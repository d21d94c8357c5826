"""`mrtui tui` in a real terminal: the installed command run inside a detached tmux session.

Keys go in with ``tmux send-keys``; what the terminal shows comes back with ``tmux
capture-pane -p`` (plain text: an escape sequence the app wrote raw would have been obeyed by
tmux, not shown). The walk: overview → ``p`` prompt list → ``Enter`` prompt detail → ``b``
battle view → ``escape`` back to the overview → ``q``, which must end the process with exit
status 0. On the way, the log's hostile text (Rich markup, Textual action links, an ANSI escape,
a bell) must be on screen literally.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from mrtui.store import connect

from .conftest import HOSTILE, RUN_ID

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

MRTUI = Path(sys.executable).parent / "mrtui"
WIDTH, HEIGHT = 160, 50
POLL_S = 0.2

# HOSTILE as the terminal must show it: markup as typed, control characters as \xNN.
HOSTILE_SHOWN = (
    r"[bold red]BOOM[/] [link=http://x]y[/link] \x1b[31mRED\x1b[0m bell\x07 "
    r"[@click=app.quit]quit[/]"
)


class Pane:
    """One tmux server of our own (``tmux -L``), one session, one pane running the TUI."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"mrtui-smoke-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.session = "tui"
        self.conf = tmp / "tmux.conf"
        # remain-on-exit from the server's start: a crash or an exit leaves the pane (and its
        # last screen) for us to read; a POSIX shell runs the command line, whatever $SHELL is
        self.conf.write_text("set -g remain-on-exit on\nset -g default-shell /bin/sh\n")
        # the command's exit status, written by the pane's shell: tmux's own
        # #{pane_dead_status} is unreliable (tmux 3.3a here leaves it empty in about one run in
        # ten, the exited child never reaped)
        self.status_file = tmp / "exit-status"
        self.env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        self.env.update(TERM="xterm-256color", LANG="C.UTF-8", LC_ALL="C.UTF-8")
        self.socket_path: str | None = None

    def tmux(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.conf), *args],
            env=self.env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=10,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def start(self, command: list[str]) -> None:
        self.tmux(
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            str(WIDTH),
            "-y",
            str(HEIGHT),
            "-e",
            "TERM=xterm-256color",
            " ".join(_quote(c) for c in command) + f"; echo $? > {_quote(str(self.status_file))}",
        )
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def capture(self, history: bool = False) -> str:
        """The screen as text; with ``history``, also the lines scrolled off it (a traceback
        printed before a resize, say), for failure messages."""
        args = ("-S", "-200") if history else ()
        return self.tmux("capture-pane", "-p", *args, "-t", self.session)

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def exit_status(self) -> str | None:
        """The command's exit status once it has exited and the pane is dead, else None."""
        out = self.tmux("list-panes", "-t", self.session, "-F", "#{pane_dead}", check=False)
        dead = out.strip() in ("1", "")  # "": the session is gone, so is the pane
        status = self.status_file.read_text().strip() if self.status_file.exists() else ""
        return status if dead and status else None

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """Poll the screen every POLL_S seconds until ``predicate(capture)``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                status = self.exit_status()
                proc = "process running" if status is None else f"exited with status {status}"
                pytest.fail(
                    f"timed out after {timeout:.0f} s waiting for {what} ({proc}); "
                    f"last capture (with scrollback):\n{self.capture(history=True).strip()}",
                    pytrace=False,
                )
            time.sleep(POLL_S)

    def close(self) -> None:
        self.tmux("kill-server", check=False)
        if self.socket_path:
            Path(self.socket_path).unlink(missing_ok=True)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _battle_prompt(db: Path) -> tuple[int, str, bool]:
    """The row (file order) and text of a prompt whose last iteration has a meta-judged
    response (the prompt detail opens on the last iteration, where `b` needs one); the hostile
    prompt if it qualifies. Returns (row, text, is_hostile)."""
    with connect(db) as con:
        prompts = con.execute(
            "SELECT key, text FROM events WHERE event_type = 'PromptAdded' AND run_id = ? "
            "ORDER BY (payload->>'$.index')::INTEGER, seq",
            [RUN_ID],
        ).fetchall()
        targets = {
            k
            for (k,) in con.execute(
                "SELECT t.prompt_key FROM meta_targets t WHERE t.run_id = ? AND t.iteration = "
                "(SELECT max(r.iteration) FROM responses r WHERE r.run_id = t.run_id "
                "AND r.prompt_key = t.prompt_key)",
                [RUN_ID],
            ).fetchall()
        }
    rows = [(i, text) for i, (key, text) in enumerate(prompts) if key in targets]
    assert rows, "the log holds no prompt with a meta-judged response in its last iteration"
    hostile = [(i, t) for i, t in rows if HOSTILE in t]
    i, text = (hostile or rows)[0]
    return i, text, bool(hostile)


def _iterations(db: Path) -> list[int]:
    with connect(db) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT iteration FROM events WHERE run_id = ? "
                "AND event_type = 'IterationStarted' ORDER BY 1",
                [RUN_ID],
            ).fetchall()
        ]


def _table_rows(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if re.match(r"^ ?\d+ ", line)]


def test_tui_in_tmux(tui_log_copy: Path, tmp_path: Path) -> None:
    db = tui_log_copy
    row, prompt_text, hostile = _battle_prompt(db)
    iterations = _iterations(db)
    assert len(iterations) >= 2
    # literal text of the prompt as the list and the detail show it (first line, control
    # characters as \xNN), cut short enough to fit the list's prompt column
    prefix = prompt_text.splitlines()[0][:30].replace("\x1b", r"\x1b").replace("\x07", r"\x07")

    pane = Pane(tmp_path)
    t0 = time.monotonic()
    try:
        pane.start([str(MRTUI), "tui", "--db", str(db), "--export-dir", str(tmp_path / "export")])

        # -- overview: status line, one row per iteration -------------------------------------
        def overview_ready(s: str) -> bool:
            lines = s.splitlines()
            return (
                bool(lines)
                and str(db) in lines[0]
                and f"run {RUN_ID}" in lines[0]
                and all(
                    re.search(rf"^ ?{it}\s+\S+\s+\d+×\d+\s+\d+/\d+\s", s, re.M) for it in iterations
                )
            )

        pane.wait_for(overview_ready, 30, "the overview with its iteration rows")

        # -- prompt list ----------------------------------------------------------------------
        pane.send("p")

        def list_ready(s: str) -> bool:
            # every row has its pair column ("AJ", "A·", ...): the background index is in, so
            # the list will not reload (and reset its cursor) under the keys sent next
            rows = _table_rows(s)
            return (
                "search prompt text or id" in s
                and prefix in s
                and len(rows) > row
                and all(re.search(r"\s[A·][J·]\s*$", r) for r in rows)
            )

        screen = pane.wait_for(list_ready, 15, "the prompt list with its pair column")
        if HOSTILE_SHOWN[:40] not in screen:
            pytest.fail(f"hostile prompt not shown literally in the list:\n{screen}", pytrace=False)

        for _ in range(row):
            pane.send("Down")
        # the cursor is on the row when its text is shown twice: in the row and in the preview
        pane.wait_for(lambda s: s.count(prefix) >= 2, 10, f"row {row} highlighted ({prefix!r})")

        # -- prompt detail --------------------------------------------------------------------
        pane.send("Enter")
        last = iterations[-1]
        screen = pane.wait_for(
            lambda s: (
                f"prompt #{row} " in s
                and f"iteration {last} of" in s
                and " responses" in s
                and "meta-judged: ⚔ (b)" in s
            ),
            10,
            "the prompt detail",
        )
        if hostile:
            for shown in (HOSTILE_SHOWN, "[bold red]BOOM[/]", r"\x1b[31mRED\x1b[0m", r"bell\x07"):
                assert shown in screen, f"{shown!r} not shown literally:\n{screen}"

        # -- battle view ----------------------------------------------------------------------
        pane.send("b")
        pane.wait_for(
            lambda s: (
                "first \\ second" in s and "ω1 = " in s and f"prompt #{row} · iteration {last}" in s
            ),
            10,
            "the battle view",
        )

        # -- escape back down the stack to the overview ---------------------------------------
        pane.send("Escape")
        pane.wait_for(
            lambda s: "first \\ second" not in s and "meta-judged: ⚔ (b)" in s,
            10,
            "the prompt detail again",
        )
        pane.send("Escape")
        pane.wait_for(
            lambda s: "search prompt text or id" in s and "meta-judged" not in s,
            10,
            "the prompt list again",
        )
        pane.send("Escape")
        pane.wait_for(
            lambda s: overview_ready(s) and "search prompt text or id" not in s,
            10,
            "the overview again",
        )

        # -- quit -----------------------------------------------------------------------------
        pane.send("q")
        deadline = time.monotonic() + 10
        status = pane.exit_status()
        while status is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
            status = pane.exit_status()
        if status is None:
            pytest.fail(f"`q` did not end the TUI within 10 s:\n{pane.capture()}", pytrace=False)
        if status != "0":
            pytest.fail(
                f"the TUI exited with status {status}:\n{pane.capture(history=True).strip()}",
                pytrace=False,
            )
    finally:
        pane.close()
    print(f"tmux smoke walk: {time.monotonic() - t0:.1f} s")
