"""`mrtui labels import` / `export` and the agreement in `mrtui status`, through the real entry
point on real DuckDB logs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from store.logbuilder import RUN, LogBuilder

from mrtui.store import NewEvent, connect

from .helpers import mrtui


@pytest.fixture
def log(tmp_path: Path) -> Path:
    b = LogBuilder(tmp_path / "log.duckdb")
    b.events.insert(0, NewEvent("RunConfigured", RUN, {"model": "m", "backend": "fake"}))
    b.prompt("P")
    b.response("P", "a", "A", [4, 4], 0)
    b.response("P", "b", "B", [2, 2], 1)
    b.response("P", "c", "C", [5, 5], 2)
    b.verdict("a", 0, 1, "A")
    return b.write()


def count(db: Path, sql: str = "SELECT count(*) FROM events") -> int:
    with connect(db) as con:
        return int(con.execute(sql).fetchall()[0][0])


def write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def test_export_import_export_round_trips(log: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.duckdb"
    shutil.copy(log, copy)  # unlabelled
    labels = write(
        tmp_path / "in.jsonl",
        [
            {"key": "a", "label": 2, "author": "ann", "note": None},
            {"key": "b", "label": "bad", "author": "bob", "note": "off topic — «quoted»"},
            {"key": "a.j0", "label": "agree", "author": "ann", "note": "fair"},
            {"key": "a.m01", "label": "B", "author": "cy", "note": None},
            {"key": "a", "label": 5, "author": "ann", "note": "on a second look"},
        ],
    )
    out = mrtui("labels", "import", "--db", log, labels)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"recorded 5 labels in {log}"

    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    out = mrtui("labels", "export", "--db", log, "--out", first)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote 4 labels to {first}"
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert records == [
        {"key": "b", "label": "bad", "author": "bob", "note": "off topic — «quoted»"},
        {"key": "a.j0", "label": "agree", "author": "ann", "note": "fair"},
        {"key": "a.m01", "label": "B", "author": "cy", "note": None},
        {"key": "a", "label": 5, "author": "ann", "note": "on a second look"},
    ]

    out = mrtui("labels", "import", "--db", copy, first)
    assert out.returncode == 0, out.stderr
    out = mrtui("labels", "export", "--db", copy, "--out", second, "--run", RUN)
    assert out.returncode == 0, out.stderr
    assert second.read_text() == first.read_text()
    out = mrtui("labels", "export", "--db", copy, "--out", second, "--run", "other")
    assert out.returncode == 0 and second.read_text() == ""


def test_author_defaults_to_mrtui_author(log: Path, tmp_path: Path) -> None:
    labels = write(tmp_path / "in.jsonl", [{"key": "c", "label": "good"}])
    out = mrtui("labels", "import", "--db", log, labels, env={"MRTUI_AUTHOR": "eve"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"recorded 1 label in {log}"
    assert count(log, "SELECT count(*) FROM human_labels WHERE author = 'eve'") == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"key": "a", "label": 4', " line 2: not valid JSON"),
        ('{"key": "nope", "label": 4}', " line 2: 'nope' names no response, judgement or"),
        ('{"key": "a.j0", "label": 4}', " line 2: 4 is not a label for the judgement a.j0"),
    ],
)
def test_a_bad_line_is_one_error_line_and_records_nothing(
    log: Path, tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": "a", "label": 4}\n' + line + "\n")
    before = count(log)
    out = mrtui("labels", "import", "--db", log, path)
    assert out.returncode == 1
    assert out.stderr.startswith("Error: ") and message in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert count(log) == before


def test_status_shows_the_agreement_once_labels_exist(log: Path, tmp_path: Path) -> None:
    plain = mrtui("status", "--db", log)
    assert plain.returncode == 0, plain.stderr
    assert "judge vs human" not in plain.stdout and "meta-judge vs human" not in plain.stdout
    data = json.loads(mrtui("status", "--db", log, "--json").stdout)
    assert "human_agreement" not in data["runs"][0]["iterations"][0]

    # a 5 > c 1 against the judge's 4 < 5: wrong; a 5 > b 0 with 4 > 2: right
    labels = [{"key": "a", "label": 5}, {"key": "b", "label": 0}, {"key": "c", "label": 1}]
    labels.append({"key": "a.m01", "label": "A"})
    mrtui("labels", "import", "--db", log, write(tmp_path / "l.jsonl", labels))
    table = mrtui("status", "--db", log)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    # and b 0 < c 1 with 2 < 5: right; 2 of 3, Wilson [21%, 94%]
    assert re.search(r"judge vs human, pairwise accuracy\s+│ 67% \[21%, 94%\], n=3", text), text
    assert re.search(r"judge vs human, rank correlation\s+│ \+0.50, n=3", text), text
    assert re.search(r"judgements the human agrees with\s+│ -", text), text
    assert re.search(r"meta-judge vs human\s+│ 100% \[21%, 100%\], n=1", text), text

    data = json.loads(mrtui("status", "--db", log, "--json").stdout)
    agreement = data["runs"][0]["iterations"][0]["human_agreement"]
    assert set(agreement) == {
        "judge_pairwise_accuracy",
        "judge_rank_correlation",
        "meta_judge_agreement",
    }
    assert agreement["judge_pairwise_accuracy"]["n"] == 3
    assert agreement["judge_pairwise_accuracy"]["value"] == pytest.approx(2 / 3)
    assert agreement["judge_rank_correlation"]["value"] == pytest.approx(0.5)
