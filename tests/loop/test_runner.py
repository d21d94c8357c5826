"""Loop logic on a deterministic fake backend: planning, resume, failures, fallbacks.

The same loop runs against real llama.cpp in tests/cli (end to end) and tests/backends."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.loop.runner import Runner
from mrtui.loop.settings import ConfigError, load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import EventLog, connect

sys.path.insert(0, str(Path(__file__).parents[1]))


def _prompts(tmp_path: Path, n: int = 4) -> Path:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": f"Question {i}?", "id": i}) for i in range(n)))
    return p


def _run(db: Path, backend: FakeBackend, **cli: Any) -> list[Any]:
    settings = load_config(None, {"train": False} | cli)
    with EventLog(db) as log:
        runner = Runner(
            log,
            settings,
            backend_factory=lambda s, m: backend,
            resolver=lambda m: ModelIdentity(m, "f" * 64),
        )
        return runner.run()


def _count(db: Path, sql: str) -> Any:
    with connect(db) as con:
        return con.execute(sql).fetchall()[0][0]


def test_a_full_iteration_logs_every_unit_once(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    reports = _run(db, FakeBackend(), prompts=str(_prompts(tmp_path)), k=3, n=3)
    assert [(r.stage, r.planned, r.done) for r in reports][:2] == [
        ("actor", 12, 12),
        ("judge", 36, 36),
    ]
    assert _count(db, "SELECT count(*) FROM responses") == 12
    assert _count(db, "SELECT count(*) FROM judgements") == 36
    # meta: every ordered pair of valid judgements of each target response
    planned = _count(db, "SELECT sum(valid_count * (valid_count - 1)) FROM meta_targets")
    assert _count(db, "SELECT count(*) FROM meta_verdicts") == planned == reports[2].planned
    assert _count(db, "SELECT count(*) FROM events WHERE event_type = 'IterationFinished'") == 1
    assert _count(db, "SELECT count(DISTINCT key) = count(key) FROM events")


def test_judgements_of_one_response_are_planned_back_to_back(tmp_path: Path) -> None:
    backend = FakeBackend()
    _run(tmp_path / "log.duckdb", backend, prompts=str(_prompts(tmp_path)), k=2, n=3)
    judge_calls = [
        c.messages[0].content
        for c in backend.calls
        if "[Response]" in c.messages[0].content and "[Judgment A]" not in c.messages[0].content
    ]
    runs = sum(1 for a, b in itertools.pairwise(judge_calls) if a != b) + 1
    assert runs == 8  # 8 responses, each one contiguous block of 3 identical prompts


def test_rerun_skips_everything_already_logged(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path))
    _run(db, FakeBackend(), prompts=prompts, k=2, n=2)
    events = _count(db, "SELECT count(*) FROM events WHERE key IS NOT NULL")
    again = FakeBackend()
    reports = _run(db, again, prompts=prompts, k=2, n=2)
    assert again.calls == [] and all(r.done == 0 and r.skipped == r.planned for r in reports)
    assert _count(db, "SELECT count(*) FROM events WHERE key IS NOT NULL") == events


def test_a_crash_mid_stage_loses_only_work_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        _run(db, FakeBackend(crash_after=13), prompts=prompts, k=3, n=2)
    assert _count(db, "SELECT count(*) FROM responses") == 12
    assert _count(db, "SELECT count(*) FROM judgements") == 1
    backend = FakeBackend()
    _run(db, backend, prompts=prompts, k=3, n=2)
    assert not any("[Response]" not in c.messages[0].content for c in backend.calls)
    assert _count(db, "SELECT count(*) FROM judgements") == 24
    clean = tmp_path / "clean.duckdb"
    _run(clean, FakeBackend(), prompts=prompts, k=3, n=2)
    with connect(db) as a, connect(clean) as b:
        sql = "SELECT key, text FROM events WHERE key IS NOT NULL ORDER BY key"
        assert a.execute(sql).fetchall() == b.execute(sql).fetchall()


def test_failed_requests_are_logged_and_retried_on_resume(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path, 2))
    probe = FakeBackend()
    _run(tmp_path / "probe.duckdb", probe, prompts=prompts, k=2, n=2)
    victim = probe.calls[0].id
    reports = _run(db, FakeBackend(fail_ids={victim}), prompts=prompts, k=2, n=2)
    assert reports[0].failed == 1 and "simulated failure" in reports[0].failures[0]
    assert _count(db, "SELECT count(*) FROM failures") == 1
    assert _count(db, "SELECT count(*) FROM events WHERE event_type='IterationFinished'") == 0
    _run(db, FakeBackend(), prompts=prompts, k=2, n=2)
    assert _count(db, f"SELECT count(*) FROM responses WHERE response_key = '{victim}'") == 1
    assert _count(db, "SELECT count(*) FROM events WHERE event_type='IterationFinished'") == 1


def test_unparseable_judgements_are_kept_and_can_fall_back(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path))
    _run(db, FakeBackend(unparseable_every=3), prompts=prompts, k=2, n=3)
    bad = _count(db, "SELECT count(*) FROM judgements WHERE NOT valid")
    assert bad > 0
    assert _count(db, "SELECT count(*) FROM judgements WHERE parse_error LIKE 'no %'") == bad
    db2 = tmp_path / "fb.duckdb"
    _run(db2, FakeBackend(unparseable_every=3), prompts=prompts, k=2, n=3, judge_fallback=True)
    with connect(db2) as con:
        rows = con.execute("SELECT score, payload FROM judgements WHERE fallback_used").fetchall()
    assert rows and _count(db2, "SELECT count(*) FROM judgements WHERE NOT valid") == 0
    for score, payload in rows:
        fb = json.loads(payload)["fallback"]
        assert score in range(6) and fb["first_parse_error"].startswith("no ")
        assert fb["text"] == str(int(score))


def test_changing_generation_settings_mid_iteration_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path, 1))
    _run(db, FakeBackend(), prompts=prompts, k=2, n=2)
    with pytest.raises(ConfigError, match=r"judge_temperature=0.8 \(now 0.3\)"):
        _run(db, FakeBackend(), prompts=prompts, k=2, n=2, judge_temperature=0.3)
    # Pair-derivation settings only change views: allowed, and nothing is regenerated.
    backend = FakeBackend()
    _run(db, backend, prompts=prompts, k=2, n=2, rho=0.3)
    assert backend.calls == []
    with connect(db) as con:
        assert con.execute("SELECT rho FROM iteration_settings").fetchall() == [(0.3,)]


def test_another_model_in_the_same_run_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path, 1))
    _run(db, FakeBackend(), prompts=prompts, k=1, n=1)
    settings = load_config(None, {"prompts": prompts, "k": 1, "n": 1, "train": False})
    with EventLog(db) as log, pytest.raises(ConfigError, match="--run NEW_NAME"):
        Runner(
            log,
            settings,
            backend_factory=lambda s, m: FakeBackend(),
            resolver=lambda m: ModelIdentity(m, "e" * 64),
        ).run()


def test_config_file_and_flags_merge(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "x.gguf"\n[defaults]\nk = 5\nrho = 0.1\n[iteration.2]\nrho = 0.3\n')
    s = load_config(cfg, {"k": 2})
    assert s.model == "x.gguf" and s.defaults.k == 2 and s.for_iteration(2).rho == 0.3
    cfg.write_text("[defaults]\nkk = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(cfg, {})
    cfg.write_text("[defaults]\nrho = 1.5\n")
    with pytest.raises(ConfigError, match="rho must be in"):
        load_config(cfg, {})
