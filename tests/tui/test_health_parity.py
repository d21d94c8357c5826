"""`mrtui status` and the TUI show the same run health: both read `mrtui.store.health`, the CLI
over the whole log at once, the TUI adding up new events as they arrive. The pair counters
(position consistency) need the verdicts before a cut too, so the TUI is started at many cuts,
some between the two orders of a pair."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from cli.helpers import mrtui

from mrtui.store import EventLog, NewEvent, connect
from mrtui.store import health as store_health
from mrtui.store.health import COUNTERS, RATES, Health
from mrtui.tui.source import LogSource

from .conftest import RUN_ID


def _close(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)  # type: ignore[arg-type]


def _cli(db: Path) -> dict[int, dict[str, Any]]:
    out = mrtui("status", "--db", db, "--json", "--run", RUN_ID)
    assert out.returncode == 0, out.stderr
    return {i["iteration"]: i for i in json.loads(out.stdout)["runs"][0]["iterations"]}


def _same(tui: dict[int, Health], cli: dict[int, dict[str, Any]]) -> None:
    assert set(tui) == set(cli) == {1, 2}
    for it, h in tui.items():
        for name in COUNTERS:
            assert _close(h.counts[name], cli[it][name]), (it, name)
        for name in RATES:
            assert _close(h.rate(name), cli[it][name]), (it, name)
        assert h.scores == cli[it]["scores"]
        assert h.alarms() == [a["name"] for a in cli[it]["alarms"]]


def _started_at(db: Path, cut: int) -> LogSource:
    """A TUI source that has counted the events up to ``cut`` and reads the rest next."""
    source = LogSource(db, RUN_ID)
    with connect(db) as con:
        source._health = store_health.read(con, 0, cut)
    source._health_seq = cut
    return source


def _judgements_with_words(db: Path) -> list[NewEvent]:
    """40 judgements of iteration 2 with counted rationales, 30 of them under 3 words (over
    20% of iteration 2's counted rationales even if all its 72 logged ones have counts)."""
    with connect(db) as con:
        rkey = con.execute(
            "SELECT response_key FROM responses WHERE run_id = ? AND iteration = 2 LIMIT 1",
            [RUN_ID],
        ).fetchall()[0][0]
    return [
        NewEvent(
            "JudgementRecorded",
            RUN_ID,
            {"score": 3, "parse_error": None, "fallback_used": False, "rationale_words": w},
            iteration=2,
            key=f"judgement:words-{i}",
            parent_key=rkey,
            text="Score: 3",
        )
        for i, w in enumerate([0, 1, 2] * 10 + [3, 4, 5, 30, 3, 7, 12, 9, 8, 3])
    ]


def test_cli_status_and_tui_health_agree_on_every_number(tui_log: Path, tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    shutil.copyfile(tui_log, db)
    with connect(db) as con:
        top = con.execute("SELECT max(seq) FROM events").fetchall()[0][0]
        verdicts = [
            r[0]
            for r in con.execute(
                "SELECT seq FROM events WHERE event_type = 'MetaVerdictRecorded' ORDER BY seq"
            ).fetchall()
        ]
    cli = _cli(db)
    # cuts everywhere, and right before and after verdicts (between a pair's two orders)
    cuts = sorted({*range(0, top, 17), top // 2, *verdicts[::5], *(v - 1 for v in verdicts[::7])})
    for cut in cuts:
        _same(_started_at(db, cut).health(), cli)

    # the log exercises the numbers: unparsed judgements, ties, both positions winning, pairs
    # the meta-judge judged consistently and pairs it did not
    total = {name: sum(cli[it][name] for it in cli) for name in COUNTERS}
    assert total["judgements"] > total["valid_judgements"] > 0
    assert total["first_wins"] > 0 and total["second_wins"] > 0
    assert total["verdict_ties"] > 0
    assert total["verdict_pairs"] > total["consistent_pairs"] > 0

    # new events on a TUI that already counted the log: judgements with counted rationales
    source = LogSource(db, RUN_ID)
    source.health()
    with EventLog(db) as log:
        log.append(_judgements_with_words(db))
    tui = source.health()
    cli = _cli(db)
    _same(tui, cli)
    assert cli[2]["rationales_counted"] >= 40 and cli[2]["judgements_without_rationale"] >= 30
    assert "no_rationale" in tui[2].alarms()
