"""Human labels (store/labels.py) and the views human_labels and judge_human_agreement, on
hand-built logs, checked against numbers worked out by hand."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mrtui.store import EventLog, WriterLocked, connect
from mrtui.store.labels import (
    Label,
    LabelError,
    agreement,
    default_author,
    format_measure,
    label_rows,
    read_labels_jsonl,
    record_labels,
)

from .logbuilder import RUN, LogBuilder

Z = 1.959963984540054


def q(db: Path, sql: str) -> list[dict[str, Any]]:
    with connect(db) as con:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def events(db: Path) -> int:
    with connect(db) as con:
        return int(con.execute("SELECT count(*) FROM events").fetchall()[0][0])


def wilson(successes: float, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out independently of the SQL macro."""
    p = successes / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """Prompt P: responses a..d with judge means 4, 2.5, 2.5, 5; prompt Q: e (1), f (3), g (2).
    Meta-verdicts on a (one each way) and a tie on b."""
    b = LogBuilder(tmp_path / "labels.duckdb").prompt("P").prompt("Q", "another question")
    b.response("P", "a", "A", [4, 4], 0)
    b.response("P", "b", "B", [2, 3], 1)
    b.response("P", "c", "C", [3, 2], 2)
    b.response("P", "d", "D", [5, None], 3)  # an unparsed judgement leaves the mean at 5
    b.response("Q", "e", "E", [1, 1], 0)
    b.response("Q", "f", "F", [3, 3], 1)
    b.response("Q", "g", "G", [2, 2], 2)
    b.verdict("a", 0, 1, "A")  # a.m01: j0 shown first wins
    b.verdict("a", 1, 0, "A")  # a.m10: j1 shown first wins
    b.verdict("b", 0, 1, None, parse_error="tie")  # b.m01: a tie
    return b.write()


LABELS = [
    Label("a", 5, "ann"),
    Label("b", 4, "ann"),  # superseded below
    Label("c", "3", "ann"),
    Label("d", 2, "ann", "longer but wrong"),
    Label("e", "good", "bob"),
    Label("f", "bad", "bob"),
    Label("g", 4, "bob"),
    Label("a.j0", "agree", "ann"),
    Label("a.j1", "disagree", "ann"),
    Label("b.j0", "agree", "ann"),
    Label("a.m01", "A", "cy"),  # the meta-judge picked j0 too
    Label("a.m10", "B", "cy"),  # the person says j0, the meta-judge j1
    Label("b.m01", "a", "cy"),  # lower case is read as A; the meta-judge tied
    Label("b", 1, "ann", "second look"),
]


def test_human_labels_holds_the_latest_label_of_each_unit(log: Path) -> None:
    assert record_labels(log, LABELS) == len(LABELS)
    rows = {r["target_key"]: r for r in q(log, "SELECT * FROM human_labels")}
    assert len(rows) == 13
    b = rows["b"]
    assert (b["label"], b["human_score"], b["note"], b["revisions"]) == ("1", 1.0, "second look", 2)
    assert (b["target"], b["prompt_key"], b["response_key"], b["run_id"]) == (
        "response",
        "P",
        "b",
        RUN,
    )
    assert rows["e"]["human_good"] is True and rows["f"]["human_good"] is False
    assert rows["e"]["human_score"] is None and rows["a"]["human_good"] is None
    assert rows["a.j1"]["agrees"] is False and rows["a.j1"]["response_key"] == "a"
    assert rows["a.j1"]["target"] == "judgement" and rows["a.j1"]["prompt_key"] == "P"
    assert rows["a.m10"]["better_key"] == "a.j0"  # B: the second shown, j0
    assert rows["b.m01"]["label"] == "A" and rows["b.m01"]["better_key"] == "b.j0"
    assert rows["a.m01"]["target"] == "verdict" and rows["a.m01"]["response_key"] == "a"
    assert rows["d"]["author"] == "ann" and rows["d"]["note"] == "longer but wrong"
    # nothing was rewritten: both labels of b are in the log
    labels_of_b = q(
        log,
        "SELECT text FROM events WHERE parent_key = 'b' AND "
        "event_type = 'HumanLabelRecorded' ORDER BY seq",
    )
    assert [r["text"] for r in labels_of_b] == [None, "second look"]


def test_agreement_matches_the_hand_computed_numbers(log: Path) -> None:
    record_labels(log, LABELS)
    rows = {r["measure"]: r for r in q(log, "SELECT * FROM judge_human_agreement")}
    assert set(rows) == {
        "judge_pairwise_accuracy",
        "judge_rank_correlation",
        "judgement_agreement",
        "meta_judge_agreement",
    }
    # the judge's means the view uses are response_scores' (it averages only labelled ones)
    means = q(log, "SELECT response_key, mean_score FROM response_scores ORDER BY response_key")
    assert [m["mean_score"] for m in means] == [4, 2.5, 2.5, 5, 1, 3, 2]
    # P (labels a5 b1 c3 d2; judge 4, 2.5, 2.5, 5): ab 1, ac 1, ad 0 (the judge disagrees),
    # bc 0.5 (a judge tie), bd 1, cd 0. Q: e good / f bad, judge 1 < 3: 0; g (a score) is
    # never set against good/bad. 3.5 of 7.
    pairwise = rows["judge_pairwise_accuracy"]
    assert pairwise["n"] == 7 and pairwise["value"] == pytest.approx(3.5 / 7)
    assert (pairwise["lo"], pairwise["hi"]) == pytest.approx(wilson(3.5, 7))
    # Spearman over the score labels a5 b1 c3 d2 g4 against the judge 4 2.5 2.5 5 2: midranks
    # human 5 1 3 2 4, judge 4 2.5 2.5 5 1; deviations from 3: (2,-2,0,-1,1), (1,-.5,-.5,2,-2);
    # r = -1 / sqrt(10 · 9.5).
    rank = rows["judge_rank_correlation"]
    r = -1 / math.sqrt(10 * 9.5)
    assert rank["n"] == 5 and rank["value"] == pytest.approx(r)
    half = Z / math.sqrt(5 - 3)
    assert rank["lo"] == pytest.approx(math.tanh(math.atanh(r) - half))
    assert rank["hi"] == pytest.approx(math.tanh(math.atanh(r) + half))
    judgements = rows["judgement_agreement"]
    assert judgements["n"] == 3 and judgements["value"] == pytest.approx(2 / 3)
    assert (judgements["lo"], judgements["hi"]) == pytest.approx(wilson(2, 3))
    # a.m01 agrees (1), a.m10 disagrees (0), b.m01 is a meta-judge tie (0.5)
    meta = rows["meta_judge_agreement"]
    assert meta["n"] == 3 and meta["value"] == pytest.approx(0.5)
    assert (meta["lo"], meta["hi"]) == pytest.approx(wilson(1.5, 3))
    assert all(r["run_id"] == RUN and r["iteration"] == 1 for r in rows.values())


def test_a_later_label_changes_the_agreement(log: Path) -> None:
    record_labels(log, [Label("a", 5), Label("d", 2)])
    [before] = q(
        log, "SELECT * FROM judge_human_agreement WHERE measure = 'judge_pairwise_accuracy'"
    )
    assert (before["n"], before["value"]) == (1, 0.0)  # the judge ranks d (5) over a (4)
    record_labels(log, [Label("d", 5), Label("a", 2)])  # a second thought: d is the better one
    [after] = q(
        log, "SELECT * FROM judge_human_agreement WHERE measure = 'judge_pairwise_accuracy'"
    )
    assert (after["n"], after["value"]) == (1, 1.0)
    [rank] = q(log, "SELECT * FROM judge_human_agreement WHERE measure = 'judge_rank_correlation'")
    assert rank["n"] == 2 and rank["value"] == pytest.approx(1.0)
    assert rank["lo"] is None and rank["hi"] is None  # n < 4: no interval


def test_no_labels_no_agreement(log: Path) -> None:
    assert q(log, "SELECT * FROM human_labels") == []
    assert q(log, "SELECT * FROM judge_human_agreement") == []
    with connect(log) as con:
        assert agreement(con) == {} and label_rows(con) == []


def test_the_wilson_macro_matches_the_formula(log: Path) -> None:
    [row] = q(log, "SELECT wilson_interval(3, 10) AS w, wilson_interval(0, 0) AS none")
    assert (row["w"]["lo"], row["w"]["hi"]) == pytest.approx(wilson(3, 10))
    assert row["none"] is None
    [edge] = q(log, "SELECT wilson_interval(5, 5) AS w")
    assert edge["w"]["hi"] == pytest.approx(1.0) and 0 < edge["w"]["lo"] < 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Label("nope", 3), "'nope' names no response, judgement or meta-verdict"),
        (Label("P", 3), "'P' names no response"),  # a prompt is not labelled
        (Label("a", 6), "6 is not a label for the response a; a response takes 0, 1, 2"),
        (Label("a", "agree"), "a response takes 0, 1, 2, 3, 4, 5, good, bad"),
        (Label("a.j0", 4), "a judgement takes agree, disagree"),
        (Label("a.m01", "good"), "a verdict takes A, B"),
        (Label("a", True), "is not a label for the response a"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_key_or_label_records_nothing(log: Path, bad: Label, message: str) -> None:
    before = events(log)
    with pytest.raises(LabelError, match=message.replace("(", r"\(")) as err:
        record_labels(log, [Label("a", 5), Label("b", "good"), bad])
    assert "\n" not in str(err.value)
    assert events(log) == before


def test_a_second_writer_is_refused_and_nothing_is_appended(log: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from mrtui.store import EventLog
                with EventLog({str(log)!r}):
                    print("holding", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(WriterLocked, match="being written by another mrtui process"):
            record_labels(log, [Label("a", 5)])
    finally:
        holder.communicate("", timeout=30)
    assert q(log, "SELECT * FROM human_labels") == []


def test_record_labels_through_a_writer_this_process_holds(log: Path) -> None:
    with EventLog(log) as writer:
        with pytest.raises(WriterLocked, match="written by this process; pass its EventLog"):
            record_labels(log, [Label("a", "good")])
        assert record_labels(log, [Label("a", "bad")], log=writer) == 1
        with pytest.raises(LabelError):
            record_labels(log, [Label("zzz", "bad")], log=writer)
    assert [r["label"] for r in q(log, "SELECT label FROM human_labels")] == ["bad"]


def test_default_author(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    monkeypatch.setenv("MRTUI_AUTHOR", "dana")
    assert default_author() == "dana"
    record_labels(log, [Label("a", 4)])
    assert q(log, "SELECT author FROM human_labels") == [{"author": "dana"}]
    monkeypatch.delenv("MRTUI_AUTHOR")
    assert default_author()  # the login name


def test_label_rows_are_the_jsonl_records(log: Path) -> None:
    record_labels(
        log, [Label("a", 4, "ann"), Label("a.j0", "agree", "bob", "fair"), Label("a", 3, "ann")]
    )
    with connect(log) as con:
        assert label_rows(con) == [
            {"key": "a.j0", "label": "agree", "author": "bob", "note": "fair"},
            {"key": "a", "label": 3, "author": "ann", "note": None},
        ]
        assert label_rows(con, "another run") == []


def test_read_labels_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text(
        '{"key": "a", "label": 4, "author": "ann", "note": null}\n'
        "\n"
        '{"key": "b", "label": 3.0, "extra": "ignored"}\n'
        '{"key": "c", "label": "good", "note": "ok ✓"}\n',
        encoding="utf-8",
    )
    assert read_labels_jsonl(path) == [
        Label("a", 4, "ann"),
        Label("b", 3),
        Label("c", "good", None, "ok ✓"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"key": "a", "label": 4', "not valid JSON"),
        ('["a", 4]', "expected a JSON object"),
        ('{"label": 4}', '"key" must be a unit key'),
        ('{"key": "a", "label": null}', '"label" must be 0-5'),
        ('{"key": "a", "label": true}', '"label" must be 0-5'),
        ('{"key": "a", "label": 4, "author": 7}', '"author" must be a string or null'),
    ],
)
def test_a_malformed_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"key": "a", "label": 4}\n' + line + "\n")
    with pytest.raises(LabelError, match=message) as err:
        read_labels_jsonl(path)
    assert str(err.value).startswith(f"{path} line 2: ")


def test_a_label_error_from_a_file_names_its_line(tmp_path: Path, log: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"key": "a", "label": 4}\n{"key": "a.j0", "label": "A"}\n')
    message = f"^{path} line 2: 'A' is not a label for the judgement a.j0"
    with pytest.raises(LabelError, match=message):
        record_labels(log, read_labels_jsonl(path))


def test_format_measure() -> None:
    share = {"n": 7, "value": 0.5, "lo": 0.188, "hi": 0.812}
    assert format_measure("judge_pairwise_accuracy", share) == "50% [19%, 81%], n=7"
    rank = {"n": 3, "value": 0.5, "lo": None, "hi": None}
    assert format_measure("judge_rank_correlation", rank) == "+0.50, n=3"
    assert format_measure("meta_judge_agreement", None) == "-"
