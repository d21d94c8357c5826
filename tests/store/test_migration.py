"""A log written by schema 1 (mrtui at 41bed23, see fixtures/make_v1_log.py) is upgraded when a
writer opens it and then gives the same rows in every view as that mrtui did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrtui.store import EventLog, SchemaMismatch, connect
from mrtui.store.events import TYPED_COLUMNS
from store.fixtures.dump_views import VIEWS, dump

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def v1_log(tmp_path: Path) -> Path:
    db = tmp_path / "v1.duckdb"
    shutil.copyfile(FIXTURES / "v1_log.duckdb", db)
    return db


def test_a_reader_of_a_schema_1_log_is_told_to_migrate(v1_log: Path) -> None:
    with (
        pytest.raises(SchemaMismatch, match=r"has schema 1 .* run `mrtui migrate --db"),
        connect(v1_log),
    ):
        pass


def test_migrating_keeps_every_view_row_of_schema_1(v1_log: Path) -> None:
    EventLog(v1_log).close()  # a writer opening the log migrates it
    expected = json.loads((FIXTURES / "v1_views.json").read_text())
    with connect(v1_log) as con:
        assert con.execute("SELECT max(version) FROM schema_migrations").fetchall() == [(5,)]
        got = json.loads(json.dumps(dump(con, VIEWS), default=str))
    for view in VIEWS:
        want = expected[view]
        cols = want["columns"]
        assert got[view]["columns"][: len(cols)] == cols, view  # new columns only at the end
        rows = [{c: r[c] for c in cols} for r in got[view]["rows"]]
        rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
        assert rows == want["rows"], view
        assert len(rows) > 0, view  # the fixture has rows in every view


def test_migration_fills_the_typed_columns_from_the_payloads(v1_log: Path) -> None:
    EventLog(v1_log).close()
    with connect(v1_log) as con:
        mismatches = con.execute(
            "SELECT count(*) FROM events WHERE event_type = 'JudgementRecorded' AND ("
            "score IS DISTINCT FROM (payload->>'$.score')::DOUBLE "
            "OR item_index IS DISTINCT FROM (payload->>'$.judge_index')::INTEGER "
            "OR prompt_key IS DISTINCT FROM payload->>'$.prompt_key' "
            "OR fallback_used IS DISTINCT FROM (payload->>'$.fallback_used')::BOOLEAN)"
        ).fetchall()[0][0]
        filled = con.execute(
            "SELECT count(*) FILTER (WHERE first_key IS NOT NULL), count(*) "
            "FROM events WHERE event_type = 'MetaVerdictRecorded'"
        ).fetchall()[0]
        columns = {r[0] for r in con.execute("DESCRIBE events").fetchall()}
    assert mismatches == 0
    assert filled[0] == filled[1] > 0
    assert set(TYPED_COLUMNS) <= columns


def test_a_migrated_log_takes_new_events(v1_log: Path, tmp_path: Path) -> None:
    from mrtui.store import NewEvent

    with EventLog(v1_log) as log:
        before = log.query("SELECT max(seq) FROM events", views=False)[0][0]
        log.append([NewEvent("StageStarted", "fixture", {"stage": "actor"}, iteration=3)])
    with connect(v1_log) as con:
        assert con.execute("SELECT max(seq) FROM events").fetchall()[0][0] == before + 1
