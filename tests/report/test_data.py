"""The report reads what the TUI reads: its battle rows equal those built from
``LogSource.focus`` (one connection per prompt, as the TUI does), in both weight scopes, and
its health is ``mrtui status``'s."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrtui.htmlreport.data import _battle_rows, gather
from mrtui.loop.report import status
from mrtui.store import connect
from mrtui.tui.source import LogSource


@pytest.mark.parametrize("log", ["report_log", "two_run_log", "expected_log"])
def test_battle_rows_are_those_of_the_tuis_reads(log: str, request: pytest.FixtureRequest) -> None:
    db: Path = request.getfixturevalue(log)
    data = gather(db)
    labels = {x["target_key"]: x for run in data.runs for x in run.labels}
    want = []
    for run in data.runs:
        source = LogSource(db, run.run_id)
        for p in source.prompts(limit=1000):
            want += _battle_rows(run.run_id, source.focus(p.prompt_key), labels)
    assert data.battles == want
    scopes = {r["battle"]["scope"] for r in want if r["battle"]}
    assert scopes == ({"response", "iteration"} if log == "two_run_log" else {"response"})
    verdicts = [v for r in want if r["battle"] for v in r["battle"]["verdicts"]]
    assert verdicts and any(v["split"] for v in verdicts)
    # P(first better) is there exactly under expected meta scoring
    assert all((v["p_first"] is not None) == (log == "expected_log") for v in verdicts)


def test_one_run_and_the_health_of_mrtui_status(two_run_log: Path) -> None:
    data = gather(two_run_log, "wide", max_prompts=2)
    assert [r.run_id for r in data.runs] == ["wide"]
    assert {b["run"] for b in data.battles} == {"wide"}
    assert len({b["prompt"] for b in data.battles}) == 2
    (run,) = data.runs
    assert (run.prompts_total, run.prompts_shown) == (6, 2)
    with connect(two_run_log) as con:
        (want,) = status(con, "wide")["runs"]
    assert run.iterations == want["iterations"]
    assert {it: h.counts for it, h in run.health.items()} == {
        i["iteration"]: {k: i[k] for k in run.health[i["iteration"]].counts}
        for i in want["iterations"]
    }
