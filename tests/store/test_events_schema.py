"""The event records in store/events.py are the one definition of what an event holds: the
views read only their fields, the table's typed columns are the ones they declare, and every
record survives a trip through the log."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from pathlib import Path

import pytest

from mrtui.store import EventLog, connect
from mrtui.store import events as ev
from mrtui.store.db import _statements, view_sql

_PAYLOAD_REF = re.compile(r"payload\s*->>?\s*'\$\.([a-z_0-9]+)")
_FROM_JSON = re.compile(r"from_json\(\s*payload\s*,\s*'(\{.*?\})'\s*\)", re.DOTALL)
_TYPES = re.compile(r"event_type\s*=\s*'([A-Za-z]+)'")
_SQL_TYPE = {int: "INTEGER", float: "DOUBLE", str: "VARCHAR", bool: "BOOLEAN"}


def _statements_of_views() -> list[str]:
    return [stmt for _, sql in view_sql() for stmt in _statements(sql)]


def test_every_payload_field_a_view_reads_is_a_record_field() -> None:
    checked = 0
    for stmt in _statements_of_views():
        types = set(_TYPES.findall(stmt)) or set(ev.RECORDS)
        unknown = set(types) - set(ev.RECORDS)
        assert not unknown, f"views name unknown event types {unknown}"
        fields = set().union(*(ev.record_fields(t) for t in types))
        names = _PAYLOAD_REF.findall(stmt)
        for struct in _FROM_JSON.findall(stmt):
            names += list(json.loads(struct))
        for name in names:
            assert name in fields, f"a view reads payload.{name}, no record of {types} has it"
            checked += 1
    assert checked > 30


def _base_type(annotation: object) -> type:
    hint = eval(annotation, vars(ev)) if isinstance(annotation, str) else annotation
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint  # type: ignore[return-value]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0]


@pytest.mark.parametrize("event_type", sorted(ev.RECORDS))
def test_typed_columns_of_a_record_exist_with_matching_types(event_type: str) -> None:
    cls = ev.RECORDS[event_type]
    fields = ev.record_fields(event_type)
    for src, column in cls.COLUMNS.items():
        assert column in ev.TYPED_COLUMNS
        if src == "parent_key":
            assert ev.TYPED_COLUMNS[column] == "VARCHAR"
            continue
        if "." in src:  # a key of a dict field
            outer = src.split(".", 1)[0]
            assert outer in fields, f"{event_type}.{outer} is not a field"
            assert typing.get_origin(_base_type(fields[outer])) is dict, (event_type, src)
            continue
        assert src in fields, f"{event_type}.{src} is not a field"
        base = _base_type(fields[src])
        origin = typing.get_origin(base) or base
        if origin is dict and ev.TYPED_COLUMNS[column] == "JSON":  # a dict kept as JSON
            continue
        if origin is list:  # list[str]: a VARCHAR[] column
            assert typing.get_args(base) == (str,), (event_type, src)
            assert ev.TYPED_COLUMNS[column] == "VARCHAR[]", (event_type, src)
            continue
        if origin is dict:  # dict[str, float]: a MAP column
            assert typing.get_args(base) == (str, float), (event_type, src)
            assert ev.TYPED_COLUMNS[column] == "MAP(VARCHAR, DOUBLE)", (event_type, src)
            continue
        sql = _SQL_TYPE[base]
        want = ev.TYPED_COLUMNS[column]
        assert sql == want or (sql, want) == ("INTEGER", "DOUBLE"), (event_type, src, sql, want)


def test_the_events_table_has_exactly_the_declared_typed_columns(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    EventLog(db).close()
    with connect(db) as con:
        described = {r[0]: r[1] for r in con.execute("DESCRIBE events").fetchall()}
    envelope = {"seq", "event_type", "event_version", "run_id", "iteration", "key"}
    envelope |= {"parent_key", "created_at", "text", "payload"}
    assert set(described) - envelope == set(ev.TYPED_COLUMNS)
    for column, sql_type in ev.TYPED_COLUMNS.items():
        assert described[column] == sql_type


def _sample(cls: type[ev.EventRecord]) -> ev.EventRecord:
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        base = _base_type(f.type)
        origin = typing.get_origin(base) or base
        values[f.name] = {
            int: 3,
            float: 2.0,
            str: f"{f.name}-value",
            bool: True,
            dict: {"x": 1},
            list: ["a"],
        }[origin]
    return cls(**values)


@pytest.mark.parametrize("event_type", sorted(ev.RECORDS))
def test_every_record_round_trips_through_the_log(event_type: str, tmp_path: Path) -> None:
    record = _sample(ev.RECORDS[event_type])
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append([record.event("r", iteration=1, key="k:0", parent_key="p", text="t")])
    with connect(db) as con:
        payload, version, *typed = con.execute(
            f"SELECT payload, event_version, {', '.join(ev.TYPED_COLUMNS)} FROM events"
        ).fetchall()[0]
    assert ev.parse(ev.RECORDS[event_type], payload) == record
    assert version == record.VERSION
    declared = dict(zip(ev.TYPED_COLUMNS, typed, strict=True))
    for src, column in type(record).COLUMNS.items():
        if src == "parent_key":
            want = "p"
        elif "." in src:
            outer, inner = src.split(".", 1)
            want = getattr(record, outer).get(inner)
        else:
            want = getattr(record, src)
        got = declared[column]
        if ev.TYPED_COLUMNS[column] == "JSON":
            got = json.loads(got)
        assert got == want, (column, got, want)
    assert declared["text_chars"] == len("t")
    undeclared = set(ev.TYPED_COLUMNS) - set(type(record).COLUMNS.values()) - {"text_chars"}
    assert all(declared[c] is None for c in undeclared)


def test_text_chars_counts_what_duckdb_length_counts(tmp_path: Path) -> None:
    """text_chars is computed in Python at append time and by the migration in SQL."""
    texts = ["plain", "ünïcödé ✓", "emoji 👍🏽 and a flag 🇫🇷", "combining e\u0301", ""]
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append([ev.NewEvent("StageStarted", "r", {}, text=t) for t in texts])
    with connect(db) as con:
        rows = con.execute("SELECT text_chars, length(text) FROM events ORDER BY seq").fetchall()
    assert [a for a, _ in rows] == [b for _, b in rows] == [len(t) for t in texts]
