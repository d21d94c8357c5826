"""Mistyped commands, undecodable prompt files and the progress display's rates."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from mrtui.cli import app as app_module
from mrtui.cli import progress as progress_module
from mrtui.cli.progress import RichProgress
from mrtui.loop.data import load_prompts
from mrtui.loop.progress import StageBegan, StageEnded, UnitsDone
from mrtui.loop.settings import ConfigError

from .helpers import mrtui

LATIN1_TAIL = b'{"prompt": "caf\xe9"}\n'


def _console_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed ``mrtui`` entry point, so usage lines name ``mrtui`` as users type it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("mrtui")), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "MRTUI_DB"} | {"COLUMNS": "200"},
    )


@pytest.mark.parametrize(
    ("args", "usage", "error"),
    [
        (["frobnicate"], "mrtui", "No such command 'frobnicate'."),
        (["run", "--bogus"], "mrtui run", "No such option: --bogus"),
        (["run"], "mrtui run", "Missing option '--db' (env var: 'MRTUI_DB')."),
    ],
)
def test_usage_errors_show_usage_and_one_error_line(
    args: list[str], usage: str, error: str
) -> None:
    out = _console_script(*args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(f"Usage: {usage} [OPTIONS]")
    assert f"Try '{usage} --help' for help." in out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: {error}"
    ]


def test_cli_works_without_the_click_package() -> None:
    """typer 0.29 does not depend on click: an install without the hub or train extras lacks it."""
    without_click = (
        "import sys; sys.modules['click'] = None; sys.argv = ['mrtui', 'frobnicate']; "
        "from mrtui.cli import main; main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", without_click], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.endswith("Error: No such command 'frobnicate'.\n")


def _raising(exc: Exception) -> Callable[..., object]:
    def fake_app(**_: object) -> object:
        raise exc

    return fake_app


def _run_app_with(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> int:
    monkeypatch.setattr(app_module, "_register", lambda: None)
    monkeypatch.setattr(app_module, "app", _raising(exc))
    with pytest.raises(SystemExit) as stop:
        app_module.run_app()
    return int(stop.value.code or 0)


@pytest.mark.parametrize("flavour", ["typer", "click.exceptions"])
def test_abort_from_either_click_flavour_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flavour: str
) -> None:
    abort = pytest.importorskip(flavour).Abort()
    assert _run_app_with(monkeypatch, abort) == 130
    assert capsys.readouterr().err == "Aborted.\n"


@pytest.mark.parametrize("flavour", ["typer._click.exceptions", "click.exceptions"])
def test_usage_error_from_either_click_flavour_is_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flavour: str
) -> None:
    error = pytest.importorskip(flavour).UsageError("no such thing")
    assert _run_app_with(monkeypatch, error) == 2
    assert capsys.readouterr().err == "Error: no such thing\n"


def test_unknown_errors_still_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "_register", lambda: None)
    monkeypatch.setattr(app_module, "app", _raising(ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        app_module.run_app()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_non_utf8_prompts_name_line_and_byte_offset(tmp_path: Path, newline: bytes) -> None:
    head = b'{"prompt": "ok"}' + newline + b'{"prompt": "d\xc3\xa9j\xc3\xa0 vu"}' + newline
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(head + LATIN1_TAIL.replace(b"\n", newline))
    offset = len(head) + LATIN1_TAIL.index(b"\xe9")
    with pytest.raises(ConfigError) as err:
        load_prompts(bad)
    message = str(err.value)
    assert message == (
        f"{bad} line 3: not UTF-8 (byte 0xe9 at byte offset {offset}); save the file as UTF-8"
    )


def test_utf8_prompts_still_load(tmp_path: Path) -> None:
    good = tmp_path / "utf8.jsonl"
    good.write_bytes(b'{"prompt": "ok"}\r\n\n{"prompt": "caf\xc3\xa9", "id": 7}\n')
    rows = load_prompts(good)
    assert [(r.index, r.text, r.source_id) for r in rows] == [(0, "ok", None), (1, "café", "7")]


def test_run_refuses_non_utf8_prompts_before_the_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "ok"}\n' + LATIN1_TAIL)
    db = tmp_path / "x.duckdb"
    out = mrtui("run", "--db", db, "--prompts", bad, "--model", tmp_path / "nonexistent.gguf")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "line 2: not UTF-8" in out.stderr and "save the file as UTF-8" in out.stderr
    assert "nonexistent.gguf" not in out.stderr
    assert not db.exists()


RATE = re.compile(r"\d+\.\d\d it/s \d+ tok/s")


def test_finished_stage_keeps_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    screen = io.StringIO()
    with RichProgress(Console(file=screen, width=200)) as bars:
        bars(StageBegan(1, "actor", total=4, done=0))
        clock[0] += 10
        bars(UnitsDone(1, "actor", 2, tokens=580))
        bars(StageEnded(1, "actor", done=2, failed=0, wall_s=10.0))
        clock[0] += 3600
        bars(StageBegan(1, "judge", total=2, done=0))
        clock[0] += 2
        bars(UnitsDone(1, "judge", 1, tokens=30))
    assert RATE.findall(screen.getvalue()) == ["0.20 it/s 58 tok/s", "0.50 it/s 15 tok/s"]
