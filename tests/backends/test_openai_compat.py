"""The OpenAI-compatible backend on two real ``llama_cpp.server`` processes on loopback.

A whole loop iteration spread over both servers; one server killed (-9) in the middle of the
judge stage, after which the run finishes on the other with every planned unit exactly once;
the API key used throughout never reaches the log. The servers run one thread each: run this
file alone on small machines (``flock /tmp/mrtui-llama.lock pytest ...``)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_server import LlamaServer, server_extra_installed

from mrtui.backends.base import BackendError, Completion, Message, Request, SamplingParams
from mrtui.loop.progress import Note, ProgressMessage, UnitsDone
from mrtui.loop.settings import IterationSettings, RunSettings
from mrtui.store import connect

KEY = "mrtui-test-key-5f0c2b7e9d"
KEY_ENV = "MRTUI_TEST_OPENAI_KEY"
PROMPTS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Write a haiku about rain.",
]
UNIT_EVENTS = ("ResponseGenerated", "JudgementRecorded", "MetaVerdictRecorded")


@pytest.fixture(scope="module")
def api_key() -> Iterator[str]:
    before = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = KEY
    yield KEY
    if before is None:
        os.environ.pop(KEY_ENV, None)
    else:
        os.environ[KEY_ENV] = before


@pytest.fixture(scope="module")
def server_a(
    tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory, api_key: str
) -> Iterator[LlamaServer]:
    server_extra_installed()
    with LlamaServer(tiny_gguf, tmp_path_factory.mktemp("servers"), api_key=api_key) as s:
        yield s


@pytest.fixture(scope="module")
def server_b(
    tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory, api_key: str
) -> Iterator[LlamaServer]:
    server_extra_installed()
    with LlamaServer(tiny_gguf, tmp_path_factory.mktemp("servers"), api_key=api_key) as s:
        yield s


def _settings(tmp_path: Path, model: Path, endpoints: list[str]) -> RunSettings:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return RunSettings(
        prompts=str(prompts),
        model=str(model),
        backend="openai",
        backend_options={
            "endpoints": endpoints,
            "api_key_env": KEY_ENV,
            "concurrency": 2,
            "backoff_s": 0.05,
            "timeout_s": 60,
        },
        defaults=IterationSettings(
            k=2,
            n=2,
            train=False,
            actor_max_tokens=8,
            judge_max_tokens=24,
            meta_max_tokens=24,
            min_rationale_words=0,
        ),
    )


def _units(db: Path) -> list[tuple[Any, ...]]:
    """(event_type, key, endpoint, served_model) of every unit event, in log order."""
    with connect(db) as con:
        return con.execute(
            "SELECT event_type, key, payload->>'$.endpoint', payload->>'$.served_model' "
            "FROM events WHERE event_type IN ('ResponseGenerated', 'JudgementRecorded', "
            "'MetaVerdictRecorded') ORDER BY seq"
        ).fetchall()


def _assert_complete(db: Path, reports: list[Any]) -> None:
    """Every planned unit is in the log exactly once, and nothing failed."""
    units = _units(db)
    doubled = [k for k, n in Counter(k for _, k, _, _ in units).items() if n > 1]
    assert not doubled
    planned = {r.stage: r.planned for r in reports}
    logged = Counter(t for t, *_ in units)
    assert planned["actor"] == len(PROMPTS) * 2 == logged["ResponseGenerated"]
    assert planned["judge"] == len(PROMPTS) * 2 * 2 == logged["JudgementRecorded"]
    assert planned.get("meta", 0) == logged["MetaVerdictRecorded"]
    assert all(r.failed == 0 and r.done == r.planned - r.skipped for r in reports), reports
    with connect(db) as con:
        counts = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
    assert "RequestFailed" not in counts and counts["IterationFinished"] == 1


def _assert_key_not_in_log(db: Path) -> None:
    with connect(db) as con:
        rows = con.execute("SELECT * FROM events").fetchall()
    assert rows
    assert KEY not in repr(rows)
    assert KEY.encode() not in db.read_bytes()


def test_a_full_iteration_is_spread_over_both_servers(
    server_a: LlamaServer, server_b: LlamaServer, tiny_gguf: Path, tmp_path: Path
) -> None:
    from mrtui.loop.session import RunSession

    db = tmp_path / "run.duckdb"
    settings = _settings(tmp_path, tiny_gguf, [server_a.url, server_b.url])
    result = RunSession(db, settings).run()
    _assert_complete(db, result.reports)
    units = _units(db)
    served = Counter(endpoint for _, _, endpoint, _ in units)
    assert set(served) == {server_a.url, server_b.url}, served
    assert all(model == str(tiny_gguf) for *_, model in units)
    with connect(db) as con:
        (backend,) = con.execute(
            "SELECT DISTINCT payload->>'$.backend' FROM events "
            "WHERE event_type = 'ResponseGenerated'"
        ).fetchone()
        (options,) = con.execute(
            "SELECT payload->>'$.backend_options' FROM events WHERE event_type = 'RunConfigured'"
        ).fetchone()
    assert backend == "openai"
    assert json.loads(options)["endpoints"] == [server_a.url, server_b.url]
    _assert_key_not_in_log(db)


def test_a_server_killed_mid_stage_leaves_the_run_to_the_other(
    server_a: LlamaServer, tiny_gguf: Path, tmp_path: Path, api_key: str
) -> None:
    from mrtui.loop.session import RunSession
    from mrtui.tui.running import RunProgress

    doomed = LlamaServer(tiny_gguf, tmp_path, api_key=api_key)
    seen: list[ProgressMessage] = []
    folded = RunProgress()
    folded.start()
    judged = {"n": 0}

    def progress(message: ProgressMessage) -> None:
        seen.append(message)
        folded.apply(message)
        if isinstance(message, UnitsDone) and message.stage == "judge":
            judged["n"] += 1
            if judged["n"] == 2:  # some judgements are in the log: kill it mid-stage
                doomed.kill()

    db = tmp_path / "run.duckdb"
    try:
        settings = _settings(tmp_path, tiny_gguf, [server_a.url, doomed.url])
        result = RunSession(db, settings, progress=progress).run()
    finally:
        doomed.stop()
    assert judged["n"] >= 2 and doomed.proc.returncode == -9
    _assert_complete(db, result.reports)
    judgements = [e for t, _, e, _ in _units(db) if t == "JudgementRecorded"]
    after = judgements[2:]
    # results the killed server had finished just before may still come in (2 workers)
    assert after.count(doomed.url) <= 2
    assert after.count(server_a.url) >= len(after) - 2
    with connect(db) as con:
        failed = con.execute(
            "SELECT iteration, payload->>'$.stage', payload->>'$.endpoint', "
            "payload->>'$.backend' FROM events WHERE event_type = 'EndpointFailed'"
        ).fetchall()
    assert failed == [(1, "judge", doomed.url, "openai")]
    alerts = [m.text for m in seen if isinstance(m, Note) and m.alert]
    assert any(doomed.url in a and "down" in a for a in alerts), alerts
    assert doomed.url in folded.state and "down" in folded.state  # the TUI's status line
    _assert_key_not_in_log(db)


def test_the_servers_refuse_a_missing_key_and_the_backend_says_which(
    server_a: LlamaServer, tiny_gguf: Path
) -> None:
    from mrtui.backends.registry import load_backend

    with pytest.raises(BackendError, match=r"\$MRTUI_NO_SUCH_KEY is not set"):
        load_backend(
            "openai", str(tiny_gguf), endpoints=[server_a.url], api_key_env="MRTUI_NO_SUCH_KEY"
        )


def test_requests_are_spread_and_each_comes_back_once(
    server_a: LlamaServer, server_b: LlamaServer, tiny_gguf: Path
) -> None:
    from mrtui.backends.registry import load_backend

    backend = load_backend(
        "openai-compat",
        str(tiny_gguf),
        endpoints=[server_a.url, server_b.url],
        api_key_env=KEY_ENV,
        concurrency=2,
    )
    try:
        info = backend.info()
        assert info.model_sha256 is None and info.chat_format == "server:llama-cpp-python"
        assert set(info.extra["flavors"].values()) == {"llama-cpp-python"}
        reqs = [
            Request(
                f"r{i}",
                (Message("user", f"Count to {i}."),),
                SamplingParams(n=2, seed=i, max_tokens=4),
            )
            for i in range(6)
        ]
        got = list(backend.generate(reqs))
        assert all(isinstance(c, Completion) for c in got)
        keys = Counter((c.request_id, c.index, c.seed) for c in got if isinstance(c, Completion))
        assert keys == Counter((f"r{i}", j, i + j) for i in range(6) for j in range(2))
        endpoints = Counter(c.endpoint for c in got if isinstance(c, Completion))
        assert set(endpoints) == {server_a.url, server_b.url}
        health = backend.endpoint_health()  # type: ignore[attr-defined]
        assert sum(h["served"] for h in health.values()) == 12
    finally:
        backend.close()


def test_greedy_samples_and_low_temperatures_on_a_real_server(
    server_a: LlamaServer, tiny_gguf: Path
) -> None:
    """llama_cpp.server takes temperature 0 (greedy) and any temperature above it as they
    are: greedy samples go one request each, seeded seed + i, and a temperature below vLLM's
    0.01 floor is served, not refused."""
    from mrtui.backends.registry import load_backend

    backend = load_backend(
        "openai", str(tiny_gguf), endpoints=[server_a.url], api_key_env=KEY_ENV, concurrency=1
    )
    try:
        greedy = SamplingParams(n=3, temperature=0.0, seed=21, max_tokens=4)
        cool = SamplingParams(temperature=0.005, seed=5, max_tokens=4)
        got = list(
            backend.generate(
                [
                    Request("g", (Message("user", "Say hi."),), greedy),
                    Request("c", (Message("user", "Say hi."),), cool),
                ]
            )
        )
        assert all(isinstance(r, Completion) for r in got), got
        keys = sorted((c.request_id, c.index, c.seed) for c in got if isinstance(c, Completion))
        assert keys == [("c", 0, 5), ("g", 0, 21), ("g", 1, 22), ("g", 2, 23)]
        assert all(c.finish_reason in ("stop", "length") for c in got if isinstance(c, Completion))
    finally:
        backend.close()


def test_mrtui_run_with_two_endpoints(
    server_a: LlamaServer, server_b: LlamaServer, tiny_gguf: Path, tmp_path: Path
) -> None:
    """The command line: --endpoint twice implies --backend openai; the key comes from
    $OPENAI_API_KEY and is printed nowhere."""
    from cli.helpers import mrtui

    settings = _settings(tmp_path, tiny_gguf, [])
    db = tmp_path / "cli.duckdb"
    out = mrtui(
        *("run", "--db", db, "--model", tiny_gguf, "--prompts", str(settings.prompts)),
        *("--endpoint", server_a.url, "--endpoint", server_b.url, "--k", "2", "--n", "1"),
        *("--set", "train=false", "--set", "actor_max_tokens=4", "--set", "judge_max_tokens=8"),
        env={"OPENAI_API_KEY": KEY},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert KEY not in out.stdout + out.stderr
    with connect(db) as con:
        (backend, options) = con.execute(
            "SELECT payload->>'$.backend', payload->>'$.backend_options' FROM events "
            "WHERE event_type = 'RunConfigured'"
        ).fetchone()
    assert backend == "openai"
    assert json.loads(options) == {"endpoints": [server_a.url, server_b.url]}
    assert Counter(t for t, *_ in _units(db))["JudgementRecorded"] == len(PROMPTS) * 2
    _assert_key_not_in_log(db)
