"""The OpenAI-compatible backend against scripted servers (httpx's mock transport): what it
sends to each flavor of server, how it reads the answers, retries, failover and key hygiene.
The real thing (llama_cpp.server processes) is tests/backends/test_openai_compat.py."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="needs httpx: pip install 'mrtui[openai]'")

from mrtui.backends import openai_compat  # noqa: E402
from mrtui.backends.base import (  # noqa: E402
    CHOICE_PROBS,
    BackendError,
    Completion,
    Failure,
    FinalLine,
    Message,
    Request,
    SamplingParams,
    UnsupportedFeature,
)
from mrtui.backends.constrain import final_line_regex  # noqa: E402
from mrtui.backends.openai_compat import OpenAICompatBackend, normalize_endpoint  # noqa: E402

SPEC = FinalLine("Reasoning: ", 12, 60, "Score: ", ("0", "1", "2", "3", "4", "5"))
KEY = "sk-test-0123456789abcdef"


class Server:
    """A scripted OpenAI-compatible server: ``owned_by`` picks its flavor; ``answer`` makes
    each chat response (or raises an httpx error, or returns an httpx.Response)."""

    def __init__(
        self,
        owned_by: str = "vllm",
        models: tuple[str, ...] = ("served-model",),
        answer: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.owned_by = owned_by
        self.models = models
        self.answer = answer or self.echo
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @staticmethod
    def echo(body: dict[str, Any]) -> dict[str, Any]:
        n = int(body.get("n", 1))
        return {
            "model": body["model"],
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": f"seed {body['seed']} #{i}"},
                    "finish_reason": "length",
                    "token_ids": [1, 2, 3],
                }
                for i in range(n)
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3 * n},
        }

    def handle(self, request: Any) -> Any:
        with self.lock:
            self.headers.append(dict(request.headers))
        if request.url.path.endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": self.owned_by} for m in self.models]
            return httpx.Response(200, json={"object": "list", "data": data})
        if request.url.path.endswith("/props"):
            return httpx.Response(404, json={"detail": "Not Found"})
        body = json.loads(request.content)
        with self.lock:
            self.bodies.append(body)
        out = self.answer(body)
        return out if isinstance(out, httpx.Response) else httpx.Response(200, json=out)


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Server]:
    """host -> scripted server; every client the backend makes talks to them."""
    table: dict[str, Server] = {}

    def make(**kwargs: Any) -> Any:
        def route(request: Any) -> Any:
            return table[request.url.host].handle(request)

        return httpx.Client(transport=httpx.MockTransport(route), **kwargs)

    monkeypatch.setattr(openai_compat, "_make_client", make)
    return table


def ask(rid: str, **params: Any) -> Request:
    return Request(rid, (Message("user", "Hello"),), SamplingParams(**params))


def backend(*hosts: str, **options: Any) -> OpenAICompatBackend:
    options.setdefault("backoff_s", 0.0)
    options.setdefault("concurrency", 2)
    return OpenAICompatBackend("m", endpoints=[f"http://{h}:8000" for h in hosts], **options)


def test_endpoints_are_normalized_and_credentials_refused() -> None:
    assert normalize_endpoint("http://h:8000/") == ("http://h:8000", "http://h:8000/v1")
    assert normalize_endpoint("https://api.example.com/v1") == (
        "https://api.example.com/v1",
        "https://api.example.com/v1",
    )
    with pytest.raises(BackendError, match="credentials"):
        normalize_endpoint("http://user:secret@h:8000")
    with pytest.raises(BackendError, match="query"):
        normalize_endpoint("http://h:8000/v1?key=secret")
    with pytest.raises(BackendError, match="http"):
        normalize_endpoint("h:8000")


def test_vllm_gets_n_in_one_request_and_its_seeds_are_seed_plus_index(
    servers: dict[str, Server],
) -> None:
    servers["a"] = Server("vllm")
    b = backend("a")
    assert b.flavor_of("http://a:8000") == "vllm"
    got = [r for r in b.generate([ask("r", n=3, seed=40, max_tokens=4)])]
    assert all(isinstance(c, Completion) for c in got)
    assert sorted((c.index, c.seed, c.completion_tokens) for c in got) == [  # type: ignore[union-attr]
        (0, 40, 3),
        (1, 41, 3),
        (2, 42, 3),
    ]
    (body,) = servers["a"].bodies
    assert body["n"] == 3 and body["seed"] == 40 and body["model"] == "served-model"
    assert body["top_k"] == -1 and body["min_p"] == 0 and body["repetition_penalty"] == 1
    c = got[0]
    assert isinstance(c, Completion)
    assert c.endpoint == "http://a:8000" and c.served_model == "served-model"


def strict_vllm(body: dict[str, Any]) -> Any:
    """vLLM 0.33's chat endpoint on sampling it refuses: greedy with n > 1 is HTTP 400."""
    n = int(body.get("n", 1))
    if body["temperature"] == 0 and n > 1:
        message = f"n must be 1 when using greedy sampling, got {n}."
        return httpx.Response(400, json={"error": {"message": message, "code": 400}})
    return Server.echo(body)


def test_greedy_samples_go_to_vllm_one_by_one(servers: dict[str, Server]) -> None:
    """vLLM refuses greedy sampling with n > 1: its samples go as n requests of one sample,
    seeded seed + i, as on every other server; sampled requests still take one request."""
    servers["a"] = Server("vllm", answer=strict_vllm)
    b = backend("a")
    got = list(b.generate([ask("g", n=3, seed=5, temperature=0.0, max_tokens=4)]))
    assert all(isinstance(c, Completion) for c in got), got
    assert sorted((c.index, c.seed) for c in got if isinstance(c, Completion)) == [
        (0, 5),
        (1, 6),
        (2, 7),
    ]
    bodies = servers["a"].bodies
    assert sorted(body["seed"] for body in bodies) == [5, 6, 7]
    assert all("n" not in body and body["temperature"] == 0 for body in bodies)
    servers["a"].bodies.clear()
    got = list(b.generate([ask("s", n=3, seed=5, temperature=0.7, max_tokens=4)]))
    assert len(got) == 3 and [body["n"] for body in servers["a"].bodies] == [3]


@pytest.mark.parametrize(
    ("status", "message", "permanent"),
    [
        (400, "n must be 1 when using greedy sampling, got 3.", True),
        (422, "Input should be less than or equal to 2", True),
        (413, "Payload Too Large", True),
        (404, "The model `m` does not exist.", False),
        (403, "Forbidden", False),
    ],
)
def test_a_request_the_server_calls_invalid_is_a_permanent_failure_sent_once(
    servers: dict[str, Server], status: int, message: str, permanent: bool
) -> None:
    """A 400-class answer that says the request is invalid would fail the same way on every
    rerun: it is skipped for good (and not retried now). A refused key or an unknown model
    can be fixed without changing the request: a rerun tries it again."""
    servers["a"] = Server(
        "vllm", answer=lambda body: httpx.Response(status, json={"error": {"message": message}})
    )
    (f,) = backend("a", retries=3).generate([ask("r", seed=1)])
    assert isinstance(f, Failure) and f.permanent is permanent
    assert f"HTTP {status}: {message}" in f.error and f.endpoint == "http://a:8000"
    assert len(servers["a"].bodies) == 1


def test_temperatures_vllm_would_raise_are_refused_before_anything_is_sent(
    servers: dict[str, Server],
) -> None:
    """vLLM raises a temperature in (0, 0.01) to 0.01, and the log records the one asked
    for: such a request never reaches a vLLM server; llama.cpp's servers take it as it is."""
    servers["a"] = Server("vllm")
    b = backend("a")
    with pytest.raises(
        UnsupportedFeature, match=r"request r \(a vLLM server\): temperature 0\.005"
    ):
        b.generate([ask("ok", seed=1), ask("r", seed=2, temperature=0.005)])
    assert servers["a"].bodies == []
    list(b.generate([ask("edge", seed=3, temperature=0.01), ask("zero", seed=4, temperature=0)]))
    assert sorted(body["temperature"] for body in servers["a"].bodies) == [0, 0.01]

    servers["l"] = Server("llamacpp")
    (c,) = backend("l").generate([ask("r", seed=2, temperature=0.005)])
    assert isinstance(c, Completion)
    assert servers["l"].bodies[0]["temperature"] == 0.005


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("eos", "stop"),
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        (None, "length"),
        ("abort", "retry"),
        ("error", "retry"),
        ("repetition", "skip"),
        ("content_filter", "skip"),
    ],
)
def test_finish_reasons_other_than_stop_and_length_are_failures_naming_them(
    servers: dict[str, Server], reason: str | None, outcome: str
) -> None:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        out = Server.echo(body)
        for choice in out["choices"]:
            choice["finish_reason"] = reason
        return out

    servers["a"] = Server("vllm", answer=answer)
    (r,) = backend("a").generate([ask("r", seed=1)])
    if outcome in ("stop", "length"):
        assert isinstance(r, Completion) and r.finish_reason == outcome
        return
    assert isinstance(r, Failure) and r.permanent is (outcome == "skip")
    assert f"ended sample 0 with finish reason {reason!r}, not 'stop' or 'length'" in r.error
    assert r.endpoint == "http://a:8000"


def test_vllm_constraints_and_assistant_prefix(servers: dict[str, Server]) -> None:
    servers["a"] = Server("vllm")
    b = backend("a")
    choice = Request(
        "c",
        (Message("user", "Rate."),),
        SamplingParams(max_tokens=8, seed=1),
        assistant_prefix="Score: ",
        choices=("1", "2"),
    )
    structured = Request("s", (Message("user", "Grade."),), SamplingParams(seed=2), structure=SPEC)
    list(b.generate([choice, structured]))
    bodies = {b["seed"]: b for b in servers["a"].bodies}
    assert bodies[1]["structured_outputs"] == {"choice": ["1", "2"]}
    assert bodies[1]["messages"][-1] == {"role": "assistant", "content": "Score: "}
    assert bodies[1]["continue_final_message"] is True
    assert bodies[1]["add_generation_prompt"] is False
    assert bodies[1]["max_tokens"] == 2
    assert bodies[2]["structured_outputs"] == {"regex": final_line_regex(SPEC)}


def test_llama_server_gets_a_grammar_and_one_request_per_sample(
    servers: dict[str, Server],
) -> None:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        out = Server.echo(body)
        del out["choices"][0]["token_ids"]
        out["timings"] = {"prompt_n": 2}
        return out

    servers["a"] = Server("llamacpp", answer=answer)
    b = backend("a")
    got = list(b.generate([ask("r", n=2, seed=7, max_tokens=4)]))
    assert sorted((c.index, c.seed) for c in got if isinstance(c, Completion)) == [(0, 7), (1, 8)]
    assert all(isinstance(c, Completion) and c.prompt_tokens_evaluated == 2 for c in got)
    assert sorted(body["seed"] for body in servers["a"].bodies) == [7, 8]
    assert all("n" not in body for body in servers["a"].bodies)
    structured = Request("s", (Message("user", "Grade."),), SamplingParams(seed=2), structure=SPEC)
    list(b.generate([structured]))
    assert servers["a"].bodies[-1]["grammar"].startswith('root ::= "Reasoning: "')
    assert servers["a"].bodies[-1]["top_k"] == 0


def test_llama_cpp_python_server_cannot_continue_an_assistant_turn(
    servers: dict[str, Server],
) -> None:
    servers["a"] = Server("me")
    b = backend("a")
    req = Request("c", (Message("user", "Rate."),), assistant_prefix="Score: ", choices=("1",))
    with pytest.raises(UnsupportedFeature, match="assistant_prefix"):
        b.generate([req])
    assert servers["a"].bodies == []


def test_a_hosted_api_gets_a_json_schema_and_the_answer_is_put_back_in_format(
    servers: dict[str, Server],
) -> None:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        out = Server.echo(body)
        content = {"rationale": "It is right about Paris.", "value": "4"}
        if body["response_format"]["json_schema"]["name"] == "choice":
            content = {"value": "B"}
        out["choices"][0]["message"]["content"] = json.dumps(content)
        out["choices"][0]["finish_reason"] = "stop"
        return out

    servers["a"] = Server("openai", models=("gpt-x", "m"), answer=answer)
    b = backend("a")
    structured = Request("s", (Message("user", "Grade."),), SamplingParams(seed=2), structure=SPEC)
    choice = Request("c", (Message("user", "A or B?"),), SamplingParams(seed=3), choices=("A", "B"))
    got = {r.request_id: r for r in b.generate([structured, choice])}
    s, c = got["s"], got["c"]
    assert isinstance(s, Completion) and isinstance(c, Completion)
    assert s.text == "Reasoning: It is right about Paris.\nScore: 4"
    assert re.fullmatch(final_line_regex(SPEC), s.text)
    assert c.text == "B"
    schema = servers["a"].bodies[0]["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) <= {"rationale", "value"}
    assert all("grammar" not in body and "top_k" not in body for body in servers["a"].bodies)


def test_server_errors_are_retried_with_backoff(servers: dict[str, Server]) -> None:
    calls = Counter[str]()

    def flaky(body: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            return httpx.Response(503, json={"error": {"message": "busy"}})
        return Server.echo(body)

    servers["a"] = Server("vllm", answer=flaky)
    (c,) = backend("a").generate([ask("r", seed=1, max_tokens=3)])
    assert isinstance(c, Completion) and calls["n"] == 3


def test_a_request_that_keeps_failing_becomes_a_failure_to_retry_later(
    servers: dict[str, Server],
) -> None:
    servers["a"] = Server("vllm", answer=lambda body: httpx.Response(500, text="boom"))
    results = list(backend("a", retries=2).generate([ask("r", seed=1), ask("q", seed=2)]))
    assert [type(r) for r in results] == [Failure, Failure]
    assert all(not r.permanent and "boom" in r.error for r in results if isinstance(r, Failure))
    assert len(servers["a"].bodies) == 6  # one try and two retries each


def test_a_prompt_too_long_for_the_server_is_a_permanent_failure(
    servers: dict[str, Server],
) -> None:
    message = "Input length (9000) exceeds model's maximum context length (4096)."
    servers["a"] = Server("vllm", answer=lambda body: httpx.Response(400, json={"error": message}))
    (f,) = backend("a").generate([ask("r", seed=1)])
    assert isinstance(f, Failure) and f.permanent and "4096" in f.error


def test_requests_of_a_dead_endpoint_go_to_the_others_exactly_once(
    servers: dict[str, Server],
) -> None:
    def dead(body: dict[str, Any]) -> Any:
        raise httpx.ConnectError("connection refused")

    def slow(body: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.01)  # so that b's workers take requests too
        return Server.echo(body)

    servers["a"] = Server("vllm", answer=slow)
    servers["b"] = Server("vllm")
    b = backend("a", "b", dead_after=2)
    servers["b"].answer = dead  # dies after the start
    reqs = [ask(f"r{i}", seed=i, max_tokens=2) for i in range(20)]
    got = list(b.generate(reqs))
    assert Counter(r.request_id for r in got) == Counter(f"r{i}" for i in range(20))
    assert all(isinstance(r, Completion) and r.endpoint == "http://a:8000" for r in got)
    health = b.endpoint_health()
    assert health["http://b:8000"]["alive"] is False
    assert health["http://a:8000"]["served"] == 20
    (event,) = b.endpoint_events()
    assert event.endpoint == "http://b:8000" and event.state == "down"
    assert "ConnectError" in (event.error or "")
    assert b.endpoint_events() == []  # drained


def test_with_every_endpoint_down_requests_fail_for_a_rerun(servers: dict[str, Server]) -> None:
    def dead(body: dict[str, Any]) -> Any:
        raise httpx.ConnectError("connection refused")

    servers["a"] = Server("vllm")
    b = backend("a", dead_after=1)
    servers["a"].answer = dead
    got = list(b.generate([ask(f"r{i}", seed=i, n=2) for i in range(3)]))
    assert len(got) == 6  # one failure per sample
    assert all(isinstance(r, Failure) and not r.permanent for r in got)
    assert all("no endpoint is up" in r.error for r in got if isinstance(r, Failure))


def test_the_api_key_is_sent_but_never_shown(
    servers: dict[str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MRTUI_TEST_KEY", KEY)
    servers["a"] = Server(
        "openai",
        models=("m",),
        answer=lambda body: httpx.Response(400, json={"error": {"message": f"bad key {KEY}"}}),
    )
    b = backend("a", api_key_env="MRTUI_TEST_KEY")
    assert servers["a"].headers[0]["authorization"] == f"Bearer {KEY}"
    (f,) = b.generate([ask("r", seed=1)])
    assert isinstance(f, Failure) and KEY not in f.error and "***" in f.error
    assert KEY not in json.dumps(b.info().to_dict())


def test_a_refused_key_stops_the_start_with_what_to_do(
    servers: dict[str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MRTUI_TEST_KEY", raising=False)

    class Locked(Server):
        def handle(self, request: Any) -> Any:
            return httpx.Response(401, json={"error": "Invalid API key"})

    servers["a"] = Locked()
    with pytest.raises(BackendError, match=r"\$MRTUI_TEST_KEY is not set"):
        backend("a", api_key_env="MRTUI_TEST_KEY")


def test_a_server_of_another_gguf_is_refused(servers: dict[str, Server], tmp_path: Any) -> None:
    model = tmp_path / "m2.gguf"
    model.write_bytes(b"GGUF")
    servers["a"] = Server("me", models=("/models/m1.gguf",))
    with pytest.raises(BackendError, match=r"not .*m2\.gguf"):
        OpenAICompatBackend(str(model), endpoints="http://a:8000")
    servers["a"] = Server("me", models=("/elsewhere/m2.gguf",))  # the same file name: fine
    b = OpenAICompatBackend(str(model), endpoints="http://a:8000")
    assert b.info().extra["served_models"] == {"http://a:8000": "/elsewhere/m2.gguf"}


def test_no_endpoint_answering_at_start_is_an_error(servers: dict[str, Server]) -> None:
    class Down(Server):
        def handle(self, request: Any) -> Any:
            raise httpx.ConnectError("connection refused")

    servers["a"] = Down()
    with pytest.raises(BackendError, match="no endpoint answered"):
        backend("a")


def test_the_module_imports_no_http_client() -> None:
    import subprocess
    import sys

    code = "import sys, mrtui.backends.openai_compat; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_endpoint_with_the_in_process_backend_is_a_usage_error(tmp_path: Any) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            *(sys.executable, "-m", "mrtui", "run", "--db", str(tmp_path / "x.duckdb")),
            *("--backend", "llama.cpp", "--endpoint", "http://127.0.0.1:9"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "--endpoint names a server; use it with --backend openai" in out.stderr
    assert not (tmp_path / "x.duckdb").exists()


# --- choice probabilities ----------------------------------------------------------------------


def with_top_logprobs(top: list[tuple[str, float]] | None) -> Callable[[dict[str, Any]], Any]:
    """A server whose answers list ``top`` as the first token's top logprobs (chat format),
    or no logprobs at all (None); the content is the first listed token."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        out = Server.echo(body)
        choice = out["choices"][0]
        choice["finish_reason"] = "length"
        choice["token_ids"] = [1]
        if top is None:
            return out
        choice["message"]["content"] = top[0][0]
        listed = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
        first = {"token": top[0][0], "logprob": top[0][1], "top_logprobs": listed}
        choice["logprobs"] = {"content": [first]}
        return out

    return answer


SCORES = ("0", "1", "2", "3", "4", "5")
TOP = [(" 3", -0.5), ("4", -1.5), ("3", -2.0), ("Hello", -3.0), (" 1", -4.0)]


def judge(rid: str = "j", prefix: str | None = "Score:", **params: Any) -> Request:
    return Request(
        rid,
        (Message("user", "Rate it."),),
        SamplingParams(**params),
        assistant_prefix=prefix,
        choices=SCORES,
        choice_probs=True,
    )


@pytest.mark.parametrize("owned_by", ["vllm", "llamacpp"])
def test_a_choice_probability_request_asks_for_one_unconstrained_token_and_its_top_logprobs(
    servers: dict[str, Server], owned_by: str
) -> None:
    """No grammar, guided choice or JSON schema (a constraint could change the logprobs): one
    greedy token, whatever the request's sampling, with the configured top_logprobs; the
    prefix is continued as for any request."""
    servers["a"] = Server(owned_by, answer=with_top_logprobs(TOP))
    (c,) = backend("a", top_logprobs=7).generate(
        [judge(seed=9, temperature=0.9, max_tokens=300, stop=("\n",))]
    )
    assert isinstance(c, Completion), c
    (body,) = servers["a"].bodies
    assert body["max_tokens"] == 1 and body["temperature"] == 0 and body["top_p"] == 1
    assert body["logprobs"] is True and body["top_logprobs"] == 7 and body["seed"] == 9
    assert not {"grammar", "structured_outputs", "response_format", "stop", "n"} & set(body)
    assert body["messages"][-1] == {"role": "assistant", "content": "Score:"}
    assert body["continue_final_message"] is True


def test_the_answer_is_the_most_likely_choice_with_the_distribution_over_the_choices(
    servers: dict[str, Server],
) -> None:
    """' 3' and '3' both count for 3; 'Hello' is no choice; a choice not listed counts 0;
    the mass is the choices' total probability before normalising."""
    servers["a"] = Server("vllm", answer=with_top_logprobs(TOP))
    (c,) = backend("a").generate([judge(seed=1)])
    assert isinstance(c, Completion), c
    p3, p4, p1 = math.exp(-0.5) + math.exp(-2.0), math.exp(-1.5), math.exp(-4.0)
    mass = p3 + p4 + p1
    assert c.text == "3" and c.finish_reason == "stop" and c.seed == 1
    assert c.choice_probs is not None and list(c.choice_probs) == list(SCORES)
    assert c.choice_probs["3"] == pytest.approx(p3 / mass)
    assert c.choice_probs["4"] == pytest.approx(p4 / mass)
    assert c.choice_probs["0"] == 0 and c.choice_probs["5"] == 0
    assert sum(c.choice_probs.values()) == pytest.approx(1)
    assert c.choice_mass == pytest.approx(mass)
    assert c.completion_tokens == 1 and c.endpoint == "http://a:8000"


def test_ordinary_requests_carry_no_choice_probabilities(servers: dict[str, Server]) -> None:
    """Without choice_probs a choices request stays constrained; a structure with
    choice_probs is served constrained too, its probabilities left to a follow-up."""
    servers["a"] = Server("vllm", answer=with_top_logprobs([("2", -0.1)]))
    plain = Request("p", (Message("user", "Rate."),), SamplingParams(seed=1), choices=SCORES)
    structured = Request(
        "s", (Message("user", "Grade."),), SamplingParams(seed=2), structure=SPEC, choice_probs=True
    )
    got = {r.request_id: r for r in backend("a").generate([plain, structured])}
    assert all(isinstance(r, Completion) and r.choice_probs is None for r in got.values())
    assert all("logprobs" not in body for body in servers["a"].bodies)
    assert {next(iter(body["structured_outputs"])) for body in servers["a"].bodies} == {
        "choice",
        "regex",
    }


def test_samples_and_low_temperatures_go_one_greedy_token_each_even_to_vllm(
    servers: dict[str, Server],
) -> None:
    """Sampling settings do not apply: a temperature vLLM would raise is not refused, and n
    samples are n one-token requests seeded seed + i."""
    servers["a"] = Server("vllm", answer=with_top_logprobs(TOP))
    got = list(backend("a").generate([judge(n=2, seed=5, temperature=0.005)]))
    assert sorted((c.index, c.seed, c.text) for c in got if isinstance(c, Completion)) == [
        (0, 5, "3"),
        (1, 6, "3"),
    ]
    assert sorted(body["seed"] for body in servers["a"].bodies) == [5, 6]
    assert all("n" not in body and body["temperature"] == 0 for body in servers["a"].bodies)


@pytest.mark.parametrize(
    ("top", "says"),
    [
        ([("Hello", -0.1), ("The", -2.0)], r"none of the choices .* among the 2 most likely"),
        (None, r"the server at http://a:8000 returns no top_logprobs"),
    ],
)
def test_an_answer_without_a_choice_among_its_top_logprobs_is_a_failure_to_retry(
    servers: dict[str, Server], top: list[tuple[str, float]] | None, says: str
) -> None:
    servers["a"] = Server("llamacpp", answer=with_top_logprobs(top))
    (f,) = backend("a").generate([judge(seed=1)])
    assert isinstance(f, Failure) and not f.permanent and f.endpoint == "http://a:8000"
    assert re.search(says, f.error), f.error


def test_a_server_that_cannot_continue_the_answer_refuses_choice_probabilities_at_it(
    servers: dict[str, Server],
) -> None:
    """llama_cpp.server cannot continue an assistant turn: choice probabilities at a judge's
    final line are refused before anything is sent; without a prefix they are served."""
    servers["a"] = Server("me", answer=with_top_logprobs(TOP))
    b = backend("a")
    with pytest.raises(UnsupportedFeature, match="choice probabilities at a judge's final line"):
        b.generate([judge(seed=1)])
    assert servers["a"].bodies == []
    (c,) = b.generate([judge(prefix=None, seed=1)])
    assert isinstance(c, Completion) and c.text == "3"


def test_the_completions_format_of_top_logprobs_is_read_too() -> None:
    from mrtui.backends.openai_logprobs import first_position, read_choice_probs

    choice = {"logprobs": {"tokens": ["A"], "top_logprobs": [{"A": -0.2, " B": -1.8, "x": -3}]}}
    assert first_position(choice) == [("A", -0.2), (" B", -1.8), ("x", -3.0)]
    probs, mass = read_choice_probs(("A", "B"), choice, "http://a:8000")  # type: ignore[misc]
    assert probs["A"] == pytest.approx(math.exp(-0.2) / mass)
    assert mass == pytest.approx(math.exp(-0.2) + math.exp(-1.8))
    by_bytes = {"logprobs": {"content": [{"top_logprobs": [{"bytes": [66], "logprob": -0.1}]}]}}
    assert first_position(by_bytes) == [("B", -0.1)]
    for empty in ({}, {"logprobs": None}, {"logprobs": {"content": []}}):
        assert first_position(empty) is None


@pytest.mark.parametrize("owned_by", ["me", "openai"])
def test_require_refuses_a_server_that_cannot_continue_the_judges_answer(
    servers: dict[str, Server], owned_by: str
) -> None:
    """A judge's choice continues its answer: llama_cpp.server and hosted APIs, which cannot
    continue an assistant turn, are refused before a run starts, without asking them."""
    servers["a"] = Server("vllm", answer=with_top_logprobs(TOP))
    servers["h"] = Server(owned_by, models=("m",), answer=with_top_logprobs(TOP))
    b = backend("a", "h")
    flavor = b.flavor_of("http://h:8000")
    with pytest.raises(
        UnsupportedFeature,
        match=rf"^the server at http://h:8000 \({flavor}\) cannot continue a partial assistant "
        r"turn, which choice probabilities at a judge's final line need; use vLLM or "
        r"llama-server, or judge_scoring = \"sampled\" and meta_scoring = \"sampled\"$",
    ):
        b.require([CHOICE_PROBS])
    assert servers["h"].bodies == []


def test_require_asks_each_endpoint_once(servers: dict[str, Server]) -> None:
    servers["a"] = Server("vllm", answer=with_top_logprobs(TOP))
    servers["b"] = Server("llamacpp", answer=with_top_logprobs(TOP))
    b = backend("a", "b", top_logprobs=5)
    b.require([CHOICE_PROBS])
    b.require([CHOICE_PROBS])
    for host in ("a", "b"):
        (probe,) = servers[host].bodies
        assert probe["max_tokens"] == 1 and probe["logprobs"] is True
        assert probe["top_logprobs"] == 5
    b.require([])
    with pytest.raises(UnsupportedFeature, match="does not know the feature 'telepathy'"):
        b.require(["telepathy"])


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (
            with_top_logprobs(None),
            r"^the server at http://h:8000 returns no top_logprobs, which choice probabilities "
            r"need; use judge_scoring = \"sampled\"",
        ),
        (
            lambda body: httpx.Response(
                400, json={"error": {"message": "top_logprobs must be at most 5"}}
            ),
            r"refuses a request for top_logprobs=20 \(HTTP 400: top_logprobs must be at most "
            r"5\); set the backend's top_logprobs option",
        ),
    ],
)
def test_require_refuses_a_server_that_gives_no_top_logprobs(
    servers: dict[str, Server], answer: Callable[[dict[str, Any]], Any], says: str
) -> None:
    servers["h"] = Server("llamacpp", models=("m",), answer=answer)
    b = backend("h")
    for _ in range(2):  # the answer is remembered
        with pytest.raises(UnsupportedFeature, match=says):
            b.require([CHOICE_PROBS])
    assert len(servers["h"].bodies) == 1
