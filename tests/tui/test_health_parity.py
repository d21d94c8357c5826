"""`mrtui status` and the TUI show the same run health: both read `mrtui.store.health`, the CLI
over the whole log at once, the TUI adding up new events as they arrive."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from cli.helpers import mrtui

from mrtui.store import connect
from mrtui.store.health import COUNTERS, RATES
from mrtui.tui.source import LogSource

from .conftest import RUN_ID


def _close(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)  # type: ignore[arg-type]


def test_cli_status_and_tui_health_agree_on_every_number(tui_log: Path, tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    shutil.copyfile(tui_log, db)
    with connect(db) as con:
        top = con.execute("SELECT max(seq) FROM events").fetchall()[0][0]
    source = LogSource(db, RUN_ID)
    # The TUI reads incrementally: first a log cut at half its events, then the rest.
    with connect(db) as con:
        from mrtui.store import health as store_health

        half = store_health.read(con, 0, top // 2)
    source._health = {k: v for k, v in half.items()}
    source._health_seq = top // 2
    tui = source.health()

    out = mrtui("status", "--db", db, "--json", "--run", RUN_ID)
    assert out.returncode == 0, out.stderr
    cli = {i["iteration"]: i for i in json.loads(out.stdout)["runs"][0]["iterations"]}

    assert set(tui) == set(cli) == {1, 2}
    for it, h in tui.items():
        for name in COUNTERS:
            assert _close(h.counts[name], cli[it][name]), (it, name)
        for name in RATES:
            assert _close(h.rate(name), cli[it][name]), (it, name)
        assert h.scores == cli[it]["scores"]
    # the log exercises the numbers: unparsed judgements, ties, both positions winning
    total = {name: sum(cli[it][name] for it in cli) for name in COUNTERS}
    assert total["judgements"] > total["valid_judgements"] > 0
    assert total["first_wins"] > 0 and total["second_wins"] > 0
    assert total["verdict_ties"] > 0
