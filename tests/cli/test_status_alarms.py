"""Health alarms in `mrtui status` (table, --json, --help) and in the summary `mrtui run` and
`mrtui demo` print, on a hand-built log with known numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from store.logbuilder import RUN, LogBuilder

from mrtui.cli.run_cmd import print_summary
from mrtui.store import NewEvent
from mrtui.store.health import ALARMS

from .helpers import mrtui


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """12 judgements: 9 of 12 valid scores are 5, 6 of 12 rationales under 3 words; 6 pairs
    judged both ways, 4 of them position-consistent."""
    b = LogBuilder(tmp_path / "alarms.duckdb")
    b.events.insert(0, NewEvent("RunConfigured", RUN, {"model": "m", "backend": "fake"}))
    b.prompt("P")
    b.response("P", "a", "x", [5, 5, 5, 1], 0, words=[0, 1, 9, 9])
    b.response("P", "b", "yy", [5, 5, 5, 2], 1, words=[2, 0, 8, 8])
    b.response("P", "c", "zzz", [5, 5, 5, 4], 2, words=[1, 2, 5, 5])
    for r in "ab":
        b.verdict(r, 0, 3, "A").verdict(r, 3, 0, "B")  # j0 wins both ways
        b.verdict(r, 1, 3, "B").verdict(r, 3, 1, "A")  # j3 wins both ways
        b.verdict(r, 2, 3, "A").verdict(r, 3, 2, "A")  # the first shown wins both times
    return b.write()


def test_status_marks_and_explains_the_alarms_that_are_on(log: Path) -> None:
    out = mrtui("status", "--db", log, "--json")
    assert out.returncode == 0, out.stderr
    [it] = json.loads(out.stdout)["runs"][0]["iterations"]
    assert it["share_of_fives"] == pytest.approx(9 / 12)
    assert it["no_rationale_share"] == pytest.approx(6 / 12)
    assert it["verdict_pairs"] == 6 and it["position_consistency"] == pytest.approx(4 / 6)
    alarms = {a["name"]: a for a in it["alarms"]}
    assert set(alarms) == {"always_five", "no_rationale"}
    assert alarms["always_five"]["message"] == "share of 5s 75% > 50%"
    assert alarms["no_rationale"]["advice"] == ALARMS["no_rationale"].advice

    table = mrtui("status", "--db", log)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert re.search(r"share of 5s\s+│ 75% ALARM \(> 50%\)", text)
    assert re.search(r"judgements without a rationale\s+│ 50% ALARM \(> 20%\)", text)
    assert re.search(r"meta position consistency\s+│ 67% of 6 pairs", text)
    assert f"ALARM run {RUN} iteration 1: share of 5s 75% > 50%;" in text
    assert f"ALARM run {RUN} iteration 1: judgements without a rationale 50% > 20%;" in text
    assert "position consistency 67%" not in text  # that one is fine


def test_status_help_lists_every_alarm_with_its_threshold() -> None:
    out = mrtui("status", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for alarm in ALARMS.values():
        assert alarm.describe() in text


def test_run_summary_shows_the_new_rates_and_the_alarms(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    print_summary(log, RUN)
    text = capsys.readouterr().out
    assert re.search(r"share of 5s\s+│ 75% ALARM \(> 50%\)", text)
    assert re.search(r"meta position consistency\s+│ 67%", text)
    assert f"ALARM run {RUN} iteration 1: share of 5s 75% > 50%;" in text
