"""Checkpoint paths are found from the log, not from the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrtui.loop.checkpoints import from_log, log_relative, require
from mrtui.loop.settings import ConfigError


def test_paths_under_the_log_folder_are_recorded_relative_to_it(tmp_path: Path) -> None:
    log = tmp_path / "runs" / "demo.duckdb"
    inside = tmp_path / "runs" / "demo.checkpoints" / "demo" / "iter-2" / "hf-1"
    assert log_relative(log, inside) == "demo.checkpoints/demo/iter-2/hf-1"
    assert log_relative(log, tmp_path / "models" / "m.gguf") == str(tmp_path / "models/m.gguf")


def test_a_moved_log_finds_its_checkpoints_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = tmp_path / "elsewhere" / "demo.duckdb"
    folder = moved.parent / "demo.checkpoints" / "demo" / "iter-2" / "hf-1"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert from_log(moved, "demo.checkpoints/demo/iter-2/hf-1") == str(folder)
    # an older log recorded the path relative to where the run was started
    assert from_log(moved, "runs/demo.checkpoints/demo/iter-2/hf-1") == str(folder)


def test_a_missing_checkpoint_names_the_path_and_the_hash(tmp_path: Path) -> None:
    log = tmp_path / "demo.duckdb"
    where = from_log(log, "demo.checkpoints/demo/iter-2/hf-1")
    assert where == str(tmp_path / "demo.checkpoints/demo/iter-2/hf-1")
    with pytest.raises(ConfigError) as e:
        require(where, "ab" * 32, "M_2")
    msg = str(e.value)
    assert where in msg and "abababababab" in msg and "\n" not in msg
