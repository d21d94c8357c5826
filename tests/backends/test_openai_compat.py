"""The OpenAI-compatible backend on two real ``llama_cpp.server`` processes on loopback.

A whole loop iteration spread over both servers; one server killed (-9) in the middle of the
judge stage, after which the run finishes on the other with every planned unit exactly once;
the API key used throughout never reaches the log. The servers run one thread each: run this
file alone on small machines (``flock /tmp/mrtui-llama.lock pytest ...``)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_server import LlamaServer, server_extra_installed

from mrtui.backends.base import (
    CHOICE_PROBS,
    BackendError,
    Completion,
    Message,
    Request,
    SamplingParams,
    UnsupportedFeature,
)
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


# --- choice probabilities on a real server ------------------------------------------------------

SCORES = ("0", "1", "2", "3", "4", "5")
RATE = (
    Message("system", "You grade answers. Reply with a single digit from 0 to 5 and nothing else."),
    Message(
        "user",
        "Question: What is the capital of France?\nAnswer: Paris is the capital of France.\n"
        "How good is the answer, from 0 (useless) to 5 (perfect)?",
    ),
)


@pytest.fixture(scope="module")
def qwen_server(qwen_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama_cpp.server on the packaged Qwen 0.5B: a real model puts the scores among its top
    logprobs (the tiny random one need not)."""
    server_extra_installed()
    with LlamaServer(qwen_gguf, tmp_path_factory.mktemp("qwen-server"), n_ctx=512) as s:
        yield s


def _in_process_choice_probs(
    model: Path, messages: tuple[Message, ...], choices: tuple[str, ...]
) -> tuple[dict[str, float], float]:
    """The choice distribution computed here from the whole vocabulary: the prompt rendered
    as llama_cpp.server renders it (the GGUF's template), evaluated in-process, the softmax
    of its last position's logits (backends/choice_probs.py's definition)."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from mrtui.backends.choice_probs import from_logits, matching_tokens

    llm = Llama(str(model), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    try:
        eos, bos = llm.token_eos(), llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        )
        rendered = formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        tokens = llm.tokenize(
            rendered.prompt.encode(), add_bos=not rendered.added_special, special=True
        )
        llm.eval(tokens)
        pieces = [
            llm.detokenize([i]).decode("utf-8", errors="replace") for i in range(llm.n_vocab())
        ]
        got = from_logits(llm.scores[len(tokens) - 1], matching_tokens(pieces, choices))
    finally:
        llm.close()
    assert got is not None
    return got


def test_choice_probabilities_on_a_real_server_agree_with_the_model(
    qwen_server: LlamaServer, qwen_gguf: Path
) -> None:
    """A choices request with choice_probs: the probabilities of exactly the choices, summing
    to 1, the most likely as the text, and the same numbers as the model's own softmax over
    the whole vocabulary at that position (they agreed to 1e-8 on 2026-12-07), and as
    mrtui's in-process llama.cpp backend. Without a prefix: llama_cpp.server cannot continue
    an assistant turn."""
    from mrtui.backends.choice_probs import most_likely
    from mrtui.backends.registry import load_backend

    backend = load_backend("openai", str(qwen_gguf), endpoints=[qwen_server.url], concurrency=1)
    try:
        params = SamplingParams(temperature=0.8, seed=3, max_tokens=64)  # they do not apply
        req = Request("j", RATE, params, choices=SCORES, choice_probs=True)
        (c,) = backend.generate([req])
    finally:
        backend.close()
    assert isinstance(c, Completion), c
    assert c.choice_probs is not None and c.choice_mass is not None
    assert list(c.choice_probs) == list(SCORES)
    assert sum(c.choice_probs.values()) == pytest.approx(1)
    assert c.text == most_likely(c.choice_probs) and c.finish_reason == "stop"
    assert 0 < c.choice_mass <= 1 + 1e-6
    expected, mass = _in_process_choice_probs(qwen_gguf, RATE, SCORES)
    for s in SCORES:
        assert c.choice_probs[s] == pytest.approx(expected[s], abs=1e-3), s
    assert c.choice_mass == pytest.approx(mass, abs=1e-3)
    local = load_backend("llama.cpp", str(qwen_gguf), n_ctx=512, n_threads=1)
    try:
        (ours,) = local.generate([req])  # mrtui's own llama.cpp backend, same request
    finally:
        local.close()
    assert isinstance(ours, Completion) and ours.choice_probs is not None, ours
    assert ours.text == c.text
    for s in SCORES:
        assert c.choice_probs[s] == pytest.approx(ours.choice_probs[s], abs=1e-2), s


class _NoLogprobsServer:
    """A vLLM-like server on loopback that answers chat requests without logprobs."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    self._send({"data": [{"id": "m", "owned_by": "vllm"}]})
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                message = {"role": "assistant", "content": "yes"}
                choice = {"index": 0, "message": message, "finish_reason": "length"}
                self._send({"model": "m", "choices": [choice], "usage": {"prompt_tokens": 3}})

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_require_asks_a_real_server_and_refuses_one_without_logprobs(
    server_a: LlamaServer, tiny_gguf: Path
) -> None:
    """llama_cpp.server lists top logprobs: taken for llama-server (which can continue an
    answer), it passes the check; as itself it is refused, since it cannot continue the
    judge's answer to its final line. A server that lists none is refused, in one line."""
    from mrtui.backends.registry import load_backend

    for flavor, refusal in (("llama.cpp", None), ("auto", "cannot continue")):
        served = load_backend(
            "openai", str(tiny_gguf), endpoints=[server_a.url], api_key_env=KEY_ENV, flavor=flavor
        )
        try:
            if refusal is None:
                served.require([CHOICE_PROBS])
            else:
                with pytest.raises(UnsupportedFeature, match=refusal):
                    served.require([CHOICE_PROBS])
        finally:
            served.close()
    stub = _NoLogprobsServer()
    try:
        bare = load_backend("openai", "m", endpoints=[stub.url], api_key_env="")
        with pytest.raises(
            UnsupportedFeature,
            match=rf"^the server at {re.escape(stub.url)} returns no top_logprobs, which "
            r"choice probabilities need; use judge_scoring = \"sampled\"",
        ):
            bare.require([CHOICE_PROBS])
        bare.close()
    finally:
        stub.close()
