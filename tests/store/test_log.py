"""The event log writer and readers against real DuckDB files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from mrtui.store import (
    SCHEMA_VERSION,
    DuplicateUnit,
    EventLog,
    LogBusy,
    LogNotFound,
    NewEvent,
    SchemaMismatch,
    StoreError,
    WriterLocked,
    connect,
)


def _ev(key: str | None, i: int = 0, text: str = "t") -> NewEvent:
    return NewEvent(
        "ResponseGenerated",
        "r",
        {"sample_index": i},
        iteration=1,
        key=key,
        parent_key="p",
        text=text,
    )


def test_append_assigns_increasing_seq_and_keeps_payload(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append([_ev("a", 0), _ev("b", 1)])
        log.flush()
        log.append([_ev(None, 2, text="x\x1b[31m")])
    with connect(db) as con:
        rows = con.execute("SELECT seq, key, payload, text FROM events ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    assert [r[1] for r in rows] == ["a", "b", None]
    assert json.loads(rows[2][2]) == {"sample_index": 2}
    assert rows[2][3] == "x\x1b[31m"


def test_migrations_are_recorded_and_reapplied_idempotently(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    EventLog(db).close()
    EventLog(db).close()
    with connect(db) as con:
        rows = con.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows == [
        (1, "0001_events.sql"),
        (2, "0002_typed_columns.sql"),
        (3, "0003_rationale_words.sql"),
        (4, "0004_scoring_columns.sql"),
        (5, "0005_settings_columns.sql"),
    ]
    assert SCHEMA_VERSION == 5


def test_migration_3_fills_rationale_words_from_payloads(tmp_path: Path) -> None:
    """A schema-2 log whose v2 judgements carry rationale_words only in the payload."""
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append(
            [
                NewEvent("JudgementRecorded", "r", {"rationale_words": 7, "score": 4}, key="j1"),
                NewEvent("JudgementRecorded", "r", {"score": 3}, key="j2"),  # v1: none
                NewEvent("MetaVerdictRecorded", "r", {"rationale_words": 0}, key="m1"),
            ]
        )
    _back_to_schema(db, 2)  # as an older mrtui left it (no schema-5 columns to clear here)
    EventLog(db).close()  # a writer migrates
    with connect(db) as con:
        rows = con.execute("SELECT key, rationale_words FROM events ORDER BY seq").fetchall()
    assert rows == [("j1", 7), ("j2", None), ("m1", 0)]


# The typed columns each migration added, to take a log back to an older schema.
_ADDED_COLUMNS = {
    3: ("rationale_words",),
    4: ("scoring", "choice_mass", "sampled_score", "choice_probs", "p_first"),
    5: ("settings", "model_id", "segments"),
}


def _back_to_schema(db: Path, version: int) -> None:
    con = duckdb.connect(str(db))
    for added, columns in sorted(_ADDED_COLUMNS.items(), reverse=True):
        if added > version:
            for column in columns:
                con.execute(f"ALTER TABLE events DROP COLUMN {column}")
    if version < 5:  # schema 5 also filled two schema-2 columns for these events
        con.execute("UPDATE events SET model_sha256 = NULL WHERE event_type = 'IterationStarted'")
        con.execute(
            "UPDATE events SET template_sha256 = NULL WHERE event_type = 'TemplateRegistered'"
        )
    con.execute("DELETE FROM schema_migrations WHERE version > ?", [version])
    con.close()


def test_migration_4_fills_the_scoring_columns_as_an_append_does(tmp_path: Path) -> None:
    """A schema-3 log with expected and sampled scoring: the migration fills the columns with
    what appending the same events writes."""
    probs = {"1": 0.25, "0": 0.5, "5": 0.25}  # not in key order: the column sorts them
    expected = {"scoring": "expected", "choice_mass": 0.9}
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append(
            [
                NewEvent(
                    "JudgementRecorded",
                    "r",
                    {**expected, "score": 1.25, "sampled_score": 0, "choice_probs": probs},
                    key="j1",
                ),
                NewEvent("JudgementRecorded", "r", {"score": 3}, key="j2"),  # sampled
                NewEvent("MetaVerdictRecorded", "r", {**expected, "p_first": 0.7}, key="m1"),
                NewEvent("ResponsesCompared", "r", {**expected, "p_first": 0.2}, key="c1"),
                NewEvent("ResponsesCompared", "r", {"winner": "A"}, key="c2"),
                NewEvent("StageStarted", "r", {"p_first": 0.5, "scoring": "x"}),  # no unit
            ]
        )
    cols = "key, scoring, choice_mass, sampled_score, choice_probs, p_first"
    query = f"SELECT {cols}, map_keys(choice_probs) FROM events ORDER BY seq"
    with connect(db) as con:
        appended = con.execute(query).fetchall()
    _back_to_schema(db, 3)
    EventLog(db).close()  # a writer migrates
    with connect(db) as con:
        migrated = con.execute(query).fetchall()
        assert con.execute("SELECT max(version) FROM schema_migrations").fetchall() == [(5,)]
    assert migrated == appended
    assert appended[0] == ("j1", "expected", 0.9, 0.0, probs, None, ["0", "1", "5"])
    assert appended[1] == ("j2", None, None, None, None, None, None)
    assert appended[2] == ("m1", "expected", 0.9, None, None, 0.7, None)
    assert appended[3][5] == 0.2 and appended[4][1:6] == (None,) * 5
    assert appended[5][1:6] == (None,) * 5


def test_migration_5_fills_the_settings_columns_as_an_append_does(tmp_path: Path) -> None:
    """A schema-4 log: iteration settings and template segments come back in the typed
    columns (and the views) as appending the same events writes them."""
    from mrtui.store.events import IterationStarted, TemplateRegistered

    settings = {"rho": 0.25, "tiny": 5e-05, "huge": 1e300, "weights_scope": "iteration"}
    model = {"model_id": "m", "model_sha256": "abc", "backend": "llama.cpp"}
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append(
            [
                IterationStarted(settings=settings, model=model).event("r", iteration=1),
                TemplateRegistered(
                    name="judge", role="judge", sha256="t1", segments=["Q: ", "{question}"]
                ).event("r", text="Q: {question}"),
                NewEvent("StageStarted", "r", {"settings": {"x": 1}, "segments": ["s"]}),
            ]
        )
    query = (
        "SELECT settings->'$', model_id, model_sha256, template_sha256, segments "
        "FROM events ORDER BY seq"
    )
    views = "SELECT * FROM iteration_settings; SELECT * FROM templates"
    with connect(db) as con:
        appended = con.execute(query).fetchall()
        before = [con.execute(v).fetchall() for v in views.split("; ")]
    _back_to_schema(db, 4)
    EventLog(db).close()  # a writer migrates
    with connect(db) as con:
        migrated = con.execute(query).fetchall()
        after = [con.execute(v).fetchall() for v in views.split("; ")]
    assert migrated == appended
    assert after == before
    assert json.loads(appended[0][0]) == settings
    assert appended[0][1:3] == ("m", "abc")
    assert appended[1][3:] == ("t1", ["Q: ", "{question}"])
    assert appended[2] == (None,) * 5
    assert before[0][0][4:6] == (0.25, None)  # rho, max_chosen_chars
    assert before[1] == [("r", "judge", "t1", "Q: {question}", ["Q: ", "{question}"])]


def test_duplicate_unit_keys_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append([_ev("a")])
        with pytest.raises(DuplicateUnit):
            log.append([_ev("a")])
        with pytest.raises(DuplicateUnit):
            log.append([_ev("b"), _ev("b")])
    with EventLog(db) as log:  # and after reopening, from the file
        with pytest.raises(DuplicateUnit):
            log.append([_ev("a")])
        log.append([_ev("c")])
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 2


def test_second_writer_gets_a_one_line_error_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    with EventLog(db), pytest.raises(WriterLocked) as err:
        EventLog(db)
    msg = str(err.value)
    assert "\n" not in msg and f"pid {os.getpid()}" in msg and "stop it" in msg
    EventLog(db).close()  # released on close


def test_readers_can_read_while_a_writer_is_open(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    with EventLog(db, flush_interval=0.05) as log:
        log.append([_ev("a")])
        log.flush()
        with connect(db) as con:
            assert con.execute("SELECT count(*) FROM responses").fetchall()[0][0] == 1
        log.append([_ev("b", 1)])  # the writer goes on after the reader closes
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 2


HOLD = textwrap.dedent("""
    import duckdb, sys, time
    con = duckdb.connect(sys.argv[1])
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_reader_waits_briefly_then_says_who_holds_the_file(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    EventLog(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LogBusy) as err, connect(db, timeout=0.3):
            pass
        assert f"PID {holder.pid}" in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_writer_flush_waits_for_a_reader_to_let_go(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    EventLog(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), "1.0"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with EventLog(db, busy_timeout=30) as log:  # opening waits for the holder to exit
        log.append([_ev("a")])
    holder.wait()
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 1


def test_missing_and_foreign_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LogNotFound, match="mrtui run --db"), connect(tmp_path / "none.duckdb"):
        pass
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database at all " * 100)
    with pytest.raises(StoreError), connect(bad):
        pass


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    EventLog(db).close()
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_migrations VALUES (99, '0099_future.sql', now())")
    con.close()
    with pytest.raises(SchemaMismatch, match="newer mrtui"), connect(db):
        pass


def test_views_are_stored_in_the_file_for_plain_duckdb_clients(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append([_ev("a")])
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM responses").fetchall()[0][0] == 1
        names = {
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
    finally:
        con.close()
    assert {
        "responses",
        "judgements",
        "meta_verdicts",
        "response_scores",
        "actor_pairs",
        "judge_battles",
        "judgement_elo",
        "judge_pairs",
        "preference_pairs",
    } <= names


CRASH = textwrap.dedent("""
    import os, sys
    from mrtui.store import EventLog, NewEvent
    log = EventLog(sys.argv[1], flush_interval=0.01)
    for i in range(200):
        log.append([NewEvent("ResponseGenerated", "r", {"i": i}, iteration=1, key=f"k{i}",
                             text="x" * 500) for _ in range(1)])
        if i % 20 == 0:
            log.flush()
    os._exit(9)  # die without closing: no final flush, no lock release
""")


def test_a_process_dying_mid_run_leaves_a_whole_readable_log(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    proc = subprocess.run([sys.executable, "-c", CRASH, str(db)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    with connect(db) as con:
        keys = [r[0] for r in con.execute("SELECT key FROM events ORDER BY seq").fetchall()]
    assert keys == [f"k{i}" for i in range(len(keys))]  # a prefix, in order, no gaps
    assert len(keys) >= 181
    with EventLog(db) as log:  # the kernel released the writer lock; resume works
        log.append([NewEvent("ResponseGenerated", "r", {}, iteration=1, key="after")])


def test_slow_appends_reach_the_file_at_once_and_fast_ones_are_batched(
    tmp_path: Path,
) -> None:
    import time

    def count() -> int:
        with connect(db) as con:
            return con.execute("SELECT count(*) FROM events").fetchall()[0][0]

    db = tmp_path / "log.duckdb"
    log = EventLog(db, flush_interval=5.0)
    try:
        log.append([_ev("a")])  # nothing flushed for a while: written right away
        deadline = time.monotonic() + 3
        while count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count() == 1
        log.append([_ev("b", 1)])  # right after a flush: waits for the next batch
        time.sleep(0.3)
        assert count() == 1
    finally:
        log.close()  # and close writes what is buffered
    assert count() == 2
