"""``mrtui judge check``: its JSON and table, settings from --preset/--set, and one-line errors
for bad label files (exit 2, no traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fakes import FakeBackend

from mrtui.cli import app as app_module

from .helpers import mrtui


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, str]]:
    """Every backend the command starts is a FakeBackend; records (settings, model)."""
    started: list[tuple[object, str]] = []

    def backend(settings: object, model: str) -> FakeBackend:
        started.append((settings, model))
        return FakeBackend()

    monkeypatch.setattr("mrtui.loop.runner.default_backend", backend)
    return started


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["mrtui", "judge", "check", *args])
    with pytest.raises(SystemExit) as stop:
        app_module.run_app()
    return int(stop.value.code or 0)


def _labels(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "labels.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


PAIR = {"prompt": "What is 2+2?", "chosen": "4.", "rejected": "Fish.", "note": "ignored"}


def test_json_has_the_rates_intervals_settings_and_cost(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fake: list[tuple[object, str]],
) -> None:
    labels = _labels(tmp_path, PAIR, {**PAIR, "chosen": "Four."}, {**PAIR, "prompt": "2+2?"})
    code = _run(
        monkeypatch,
        *("--labels", str(labels), "--model", "some-judge", "--json"),
        *("--set", "judge_scoring=expected", "--set", "judge_rationale=false"),
        *("--set", "pairwise_rationale=false"),
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("pointwise_accuracy", "pairwise_accuracy", "position_consistency", "ties"):
        assert isinstance(out[key], float)
        lo, hi = out["intervals"][key]
        assert lo <= out[key] <= hi
    assert out["n"] == 3 and isinstance(out["first_preference"], float)
    assert out["settings"]["judge_scoring"] == "expected"
    assert out["settings"]["judge_rationale"] is False
    assert out["cost"]["requests"] == 3 * 2 * 3 + 3 * 2 and "wall_s" in out["cost"]
    assert out["model"] == "some-judge" and fake[0][1] == "some-judge"


def test_table_and_the_preset_settings_on_the_shipped_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake: list[object]
) -> None:
    code = _run(monkeypatch, "--preset", "demo", "--limit", "4", "--set", "n=1")
    out = capsys.readouterr().out
    assert code == 0
    assert "pointwise accuracy" in out and "pairwise accuracy" in out and "95% interval" in out
    assert "on 4 pairs" in out and "structured_judging=true n=1" in out
    assert "preferences.jsonl" in out


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ((PAIR, "{oops"), "line 2: not valid JSON"),
        ((PAIR, {"prompt": "p", "rejected": "r"}), "line 2: missing 'chosen'"),
        ((), "holds no labelled pairs"),
    ],
)
def test_bad_label_files_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fake: list[object],
    rows: tuple[object, ...],
    says: str,
) -> None:
    labels = _labels(tmp_path, *rows)
    code = _run(monkeypatch, "--labels", str(labels), "--model", "m")
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.startswith("Error: ")
    assert err.count("\n") == 1 and fake == []  # refused before a backend started


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--preset", "nope"), "unknown preset 'nope'; packaged presets: demo, paper"),
        (("--preset", "demo", "--config", "x.toml"), "give --config or --preset, not both"),
        (("--set", "judge_scoring=maybe"), "judge_scoring must be 'sampled' or 'expected'"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake: list[object],
    args: tuple[str, ...],
    says: str,
) -> None:
    code = _run(monkeypatch, "--limit", "2", *args)
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1 and fake == []


def test_real_entry_point_names_the_line_without_a_traceback(tmp_path: Path) -> None:
    labels = _labels(tmp_path, PAIR, PAIR, '["prompt", "chosen"]')
    out = mrtui("judge", "check", "--labels", labels, "--model", "m", timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("Error: ") and "line 3: expected a JSON object" in out.stderr
