"""`mrtui export pairs` writes the training set each iteration trained on (or would), unless
asked for every derived pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tui.conftest import build_log, write_prompts

from mrtui.store import connect

from .helpers import mrtui


@pytest.fixture(scope="module")
def trained_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    db = tmp / "log.duckdb"
    # judge pairs capped at a fifth of the set; iteration 3 ('auto') trains on actor pairs only
    build_log(db, write_prompts(tmp / "p.jsonl"), iterations=3,
              defaults={"max_judge_share": 0.2}, overrides={3: {"train": False}})  # fmt: skip
    return db


def _export(db: Path, out: Path, *args: str) -> list[dict[str, object]]:
    res = mrtui("export", "pairs", "--db", db, "--out", out, *args)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_default_export_is_exactly_what_each_iteration_trained_on(
    trained_log: Path, tmp_path: Path
) -> None:
    rows = _export(trained_log, tmp_path / "train.jsonl")
    everything = _export(trained_log, tmp_path / "all.jsonl", "--all")
    with connect(trained_log) as con:
        used = {
            it: set(json.loads(keys))
            for it, keys in con.execute(
                "SELECT s.iteration, s.payload->'$.pair_keys' FROM events s JOIN events f "
                "ON f.event_type = 'TrainingFinished' "
                "AND f.payload->>'$.attempt' = s.payload->>'$.attempt' "
                "WHERE s.event_type = 'TrainingStarted'"
            ).fetchall()
        }
    assert set(used) == {1, 2}
    for it in (1, 2):
        exported = [r for r in rows if r["iteration"] == it]
        assert {r["pair_key"] for r in exported} == used[it]
        assert all(r["trained"] is True for r in exported)
        judge = sum(r["kind"] == "judge" for r in exported)
        assert 0 < judge <= 0.2 * len(exported) + 1e-9  # the cap was applied
    third = [r for r in rows if r["iteration"] == 3]
    assert third and {r["kind"] for r in third} == {"actor"}  # the schedule: actor only
    assert all(r["trained"] is None for r in third)  # not trained (train = false)
    assert len(everything) > len(rows)
    assert {r["kind"] for r in everything if r["iteration"] == 3} == {"actor", "judge"}
    assert {r["pair_key"] for r in rows} < {r["pair_key"] for r in everything}


def test_export_refuses_a_bad_setting_in_one_line(trained_log: Path, tmp_path: Path) -> None:
    res = mrtui("export", "pairs", "--db", trained_log, "--out", tmp_path / "x.jsonl",
                "--weights-scope", "prompt")  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "weights_scope must be 'response' or 'iteration'" in res.stderr


def test_sql_does_not_install_or_load_extensions(trained_log: Path) -> None:
    res = mrtui("sql", "--db", trained_log, "SELECT * FROM sqlite_scan('x.db', 'y')")
    assert res.returncode == 1 and res.stderr.startswith("Error: ")
    assert "sqlite" in res.stderr.lower()
    with connect(trained_log, sandbox=True) as con:
        settings = con.execute(
            "SELECT current_setting('autoinstall_known_extensions'), "
            "current_setting('autoload_known_extensions')"
        ).fetchall()[0]
    assert settings == (False, False)


def test_export_rederives_judge_pairs_with_another_prior(trained_log: Path, tmp_path: Path) -> None:
    base = _export(trained_log, tmp_path / "base.jsonl", "--all", "--kind", "judge")
    weak = _export(trained_log, tmp_path / "weak.jsonl", "--all", "--kind", "judge",
                   "--bt-prior-games", "1e-6")  # fmt: skip
    assert base and weak
    spread = {r["pair_key"]: r["chosen_elo"] - r["rejected_elo"] for r in base}
    weak_spread = {r["pair_key"]: r["chosen_elo"] - r["rejected_elo"] for r in weak}
    same = spread.keys() & weak_spread.keys()
    # a weaker prior shrinks less: the Elo gaps of the same pairs widen
    assert same and sum(weak_spread[k] > spread[k] for k in same) > len(same) / 2
    res = mrtui("export", "pairs", "--db", trained_log, "--out", tmp_path / "x.jsonl",
                "--bt-prior-games", "0")  # fmt: skip
    assert res.returncode == 2 and "bt_prior_games must be in [1e-9, 100]" in res.stderr
