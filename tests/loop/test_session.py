"""The one run session: typed progress, a cancel token that stops after the unit in flight,
and units that can never succeed logged once as skipped instead of retried forever."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends.base import Request, Result
from mrtui.loop.progress import CancelToken, ProgressMessage, StageBegan, StageEnded, UnitsDone
from mrtui.loop.report import status
from mrtui.loop.session import RunSession
from mrtui.loop.settings import load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import connect


class CancellingBackend(FakeBackend):
    """Asks the run to stop once it has yielded ``after`` results."""

    def __init__(self, token: CancelToken, after: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.token, self.after = token, after

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for result in super().generate(requests):
            yield result
            if self.results >= self.after:
                self.token.cancel()


def _prompts(tmp_path: Path, texts: list[str]) -> Path:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": t}) for t in texts))
    return p


def _session(db: Path, prompts: Path, backend: FakeBackend, **kw: Any) -> RunSession:
    settings = load_config(None, {"prompts": str(prompts), "k": 3, "n": 2, "train": False})
    return RunSession(
        db,
        settings,
        backend_factory=lambda s, m: backend,
        resolver=lambda m: ModelIdentity(m, "f" * 64),
        **kw,
    )


def _count(db: Path, sql: str) -> Any:
    with connect(db) as con:
        return con.execute(sql).fetchall()[0][0]


def test_cancel_stops_after_the_unit_in_flight_and_a_rerun_finishes(tmp_path: Path) -> None:
    db, prompts = tmp_path / "log.duckdb", _prompts(tmp_path, ["a?", "b?", "c?", "d?"])
    token, seen = CancelToken(), []
    result = _session(
        db, prompts, CancellingBackend(token, after=5), cancel=token, progress=seen.append
    ).run()
    assert result.stopped
    # the 6th unit was in flight when the token was set: it is kept, nothing after it runs
    assert _count(db, "SELECT count(*) FROM responses") == 6
    assert _count(db, "SELECT count(*) FROM events WHERE event_type = 'IterationFinished'") == 0
    assert _count(db, "SELECT bool_or((payload->>'$.stopped')::BOOLEAN) FROM events "
                  "WHERE event_type = 'StageFinished'")  # fmt: skip
    began: list[ProgressMessage] = [m for m in seen if isinstance(m, StageBegan)]
    assert began == [StageBegan(1, "actor", total=12, done=0)]
    ended = [m for m in seen if isinstance(m, StageEnded)]
    assert len(ended) == 1 and ended[0].stopped and ended[0].done == 6
    assert sum(m.n for m in seen if isinstance(m, UnitsDone)) == 6

    again = _session(db, prompts, FakeBackend()).run()
    assert not again.stopped and not again.failed
    assert again.reports[0].skipped == 6 and again.reports[0].done == 6
    assert _count(db, "SELECT count(*) FROM responses") == 12
    assert _count(db, "SELECT count(*) FROM judgements") == 24
    assert _count(db, "SELECT count(DISTINCT key) = count(key) FROM events")
    assert _count(db, "SELECT count(*) FROM events WHERE event_type = 'IterationFinished'") == 1


def test_a_prompt_longer_than_the_context_is_skipped_for_good(tmp_path: Path) -> None:
    long = "word " * 2000  # judge prompts (rubric + a short answer) stay well under 1024
    db, prompts = tmp_path / "log.duckdb", _prompts(tmp_path, ["short?", long])
    first = _session(db, prompts, FakeBackend(n_ctx=1024)).run()
    assert not first.failed  # a skip is not a failure: the iteration finishes
    assert first.reports[0].unit_skips == 3
    with connect(db) as con:
        skipped = con.execute("SELECT stage, reason, prompt_key FROM skipped_units").fetchall()
        assert len(skipped) == 3 and all(s[0] == "actor" and "context window" in s[1]
                                         for s in skipped)  # fmt: skip
        assert con.execute("SELECT count(*) FROM failures").fetchall()[0][0] == 0
        it = status(con)["runs"][0]["iterations"][0]
    assert it["skipped_units"] == 3 and it["open_failures"] == 0 and it["finished"]
    before = _count(db, "SELECT count(*) FROM events")
    backend = FakeBackend(n_ctx=1024)
    again = _session(db, prompts, backend).run()
    assert backend.calls == []  # nothing retried: every unit is done or skipped
    assert again.reports[0].skipped == 6
    added = _count(db, f"SELECT list(DISTINCT event_type) FROM events WHERE seq > {before}")
    assert set(added) <= {"SessionStarted", "StageStarted", "StageFinished", "TemplateRegistered"}


def test_commands_on_a_missing_log_refuse_without_creating_one(tmp_path: Path) -> None:
    from mrtui.evaluation.settings import EvalSettings
    from mrtui.loop.settings import ConfigError

    db = tmp_path / "none.duckdb"
    session = RunSession(db, run_id="main")
    with pytest.raises(ConfigError, match="no event log at"):
        session.train(1)
    with pytest.raises(ConfigError, match="no event log at"):
        session.evaluate(None, EvalSettings())
    assert list(tmp_path.iterdir()) == []
