"""role_costs and cost_spans on a log whose clock is set by hand: a run killed mid-judging and
resumed 93 s later, then an evaluation process. Every figure is worked out in the comments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from mrtui.store import EventLog, NewEvent, connect

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _at(offset: float) -> float:
    return (T0 + dt.timedelta(seconds=offset)).timestamp()


def _stage(kind: str, stage: str, it: int = 1) -> NewEvent:
    return NewEvent(kind, "r", {"stage": stage}, iteration=it)


def _unit(kind: str, key: str, it: int = 1, **payload: object) -> NewEvent:
    return NewEvent(kind, "r", {"prompt_tokens": 10, "completion_tokens": 4, **payload},
                    iteration=it, key=key)  # fmt: skip


def _session(command: str, started: float) -> NewEvent:
    payload = {"command": command, "started_at": _at(started), "pid": 1, "host": "h",
               "mrtui_version": "0"}  # fmt: skip
    return NewEvent("SessionStarted", "r", payload)


# (seconds after T0, event)
TIMELINE: list[tuple[float, NewEvent]] = [
    (0, _session("run", -2)),  # start-up from -2 to the first boundary (1): 3 s
    (1, NewEvent("IterationStarted", "r", {"settings": {}, "model": {}}, iteration=1, key="i1")),
    (2, _stage("StageStarted", "actor")),
    (3, _unit("ResponseGenerated", "a1")),
    (4, _unit("ResponseGenerated", "a2")),
    (5, _stage("StageFinished", "actor")),  # actor: 3 s
    (6, _stage("StageStarted", "judge")),
    (7, _unit("JudgementRecorded", "j1")),  # killed here: the judge span ends at 7 (1 s)
    (103, _session("run", 100)),  # idle 7..100 (93 s); start-up 100..104 (4 s)
    (104, _stage("StageStarted", "judge")),
    (105, _unit("JudgementRecorded", "j2")),
    (108, _stage("StageFinished", "judge")),  # judge: 1 + 4 = 5 s
    (108.5, _stage("StageStarted", "meta")),
    (110.5, _stage("StageFinished", "meta")),  # meta_judge: 2 s
    (111, NewEvent("TrainingStarted", "r", {"attempt": "t"}, iteration=1)),
    (115, NewEvent("TrainingStepLogged", "r", {"attempt": "t", "step": 1}, iteration=1)),
    (120, NewEvent("TrainingFinished", "r", {"attempt": "t"}, iteration=1, key="tr")),
    (122, NewEvent("CheckpointCreated", "r", {"for_iteration": 2}, iteration=1, key="ck")),
    (122, NewEvent("IterationFinished", "r", {"stages": {}, "trained": True}, iteration=1)),
    (201, _session("eval", 200)),  # an evaluation process: start-up 200..203 counts as eval
    (203, _stage("StageStarted", "ifeval/answer", 2)),
    (204, _unit("EvalSampleGenerated", "e1", 2)),
    (205, _unit("EvalSampleGenerated", "e2", 2, cached_from="e1")),  # a copy: no cost
    (206, _stage("StageFinished", "ifeval/answer", 2)),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("costs") / "log.duckdb"
    with EventLog(path) as log:
        log.append([e for _, e in TIMELINE])
    con = duckdb.connect(str(path))
    for seq, (offset, _) in enumerate(TIMELINE, start=1):
        stamp = T0 + dt.timedelta(seconds=offset)
        con.execute("UPDATE events SET created_at = ? WHERE seq = ?", [stamp, seq])
    con.close()
    return path


def _costs(db: Path) -> dict[tuple[int, str], tuple[int, float]]:
    with connect(db) as con:
        rows = con.execute("SELECT iteration, role, units, wall_s FROM role_costs").fetchall()
    return {(it, role): (units, round(wall, 3)) for it, role, units, wall in rows}


def test_each_role_gets_its_spans_and_idle_time_goes_nowhere(db: Path) -> None:
    assert _costs(db) == {
        (1, "startup"): (0, 7.0),  # 3 + 4
        (1, "actor"): (2, 3.0),
        (1, "judge"): (2, 5.0),  # the killed span (6..7) and the resumed one (104..108)
        (1, "meta_judge"): (0, 2.0),
        (1, "training"): (1, 11.0),  # 111..122: DPO and the export
        (1, "other"): (0, 3.0),  # 1..2, 5..6, 108..108.5 and 110.5..111
        (2, "evaluation"): (1, 6.0),  # start-up 200..203, the stage 203..206; the copy is free
    }
    # The iteration's rows add up to the time a process worked on it: from the first start
    # (-2) to the last event (122), less the idle 93 s.
    assert sum(w for (it, _), (_, w) in _costs(db).items() if it == 1) == 124 - 93


def test_cost_spans_show_the_kill_and_the_idle_time(db: Path) -> None:
    with connect(db) as con:
        rows = con.execute(
            "SELECT role, stage, closed, wall_s FROM cost_spans ORDER BY started_at"
        ).fetchall()
    assert ("judge", "judge", False, 1.0) in rows
    # the resume's 93 s, and the 78 s from the run's end to the evaluation process's start
    assert [r for r in rows if r[0] == "idle"] == [
        ("idle", None, True, 93.0),
        ("idle", None, True, 78.0),
    ]


def test_shares_add_up_per_iteration(db: Path) -> None:
    with connect(db) as con:
        rows = con.execute("SELECT iteration, sum(share) FROM role_costs GROUP BY 1").fetchall()
    assert all(abs(total - 1.0) < 1e-9 for _, total in rows)


def test_a_log_without_sessions_counts_a_kill_gap_as_idle(tmp_path: Path) -> None:
    """Logs written before SessionStarted: the gap after a killed span's last event, up to the
    next boundary, is idle."""
    timeline = [(o, e) for o, e in TIMELINE if e.event_type != "SessionStarted" and o < 200]
    path = tmp_path / "old.duckdb"
    with EventLog(path) as log:
        log.append([e for _, e in timeline])
    con = duckdb.connect(str(path))
    for seq, (offset, _) in enumerate(timeline, start=1):
        con.execute(
            "UPDATE events SET created_at = ? WHERE seq = ?",
            [T0 + dt.timedelta(seconds=offset), seq],
        )
    con.close()
    costs = _costs(path)
    assert costs[(1, "judge")] == (2, 5.0)
    assert costs[(1, "other")] == (0, 3.0)  # the 97 s from 7 to 104 are idle
    assert (1, "startup") not in costs
