"""The contract every InferenceBackend must pass.

Each backend joins by adding a factory to ``FACTORIES``: it gets a function that returns the tiny
test model (called only by backends that load a model, so the others run without it) and returns
a started backend whose context window is well under ``TOO_LONG``'s length (a few thousand tokens
at most). The tests only assume what the protocol promises, not llama.cpp's behaviour. The fake
backend every loop test runs on (tests/fakes.py) is held to the same contract.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import FakeBackend
from llama_server import LlamaServer, ServedBackend, server_extra_installed

from mrtui.backends.base import (
    CHOICE_PROBS,
    BackendInfo,
    Completion,
    Failure,
    FinalLine,
    InferenceBackend,
    Message,
    Request,
    SamplingParams,
    UnsupportedFeature,
)
from mrtui.backends.choice_probs import most_likely
from mrtui.backends.constrain import final_line_regex

TOO_LONG = "lorem ipsum " * 10_000  # more tokens than any contract backend's context


def _llamacpp(model: Callable[[], Path]) -> InferenceBackend:
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python: pip install 'mrtui[llama]'")
    from mrtui.backends.registry import load_backend

    return load_backend("llama.cpp", str(model()), n_ctx=512, n_threads=1)


def _llamacpp_batched(model: Callable[[], Path]) -> InferenceBackend:
    """llama.cpp decoding four sequences at once (continuous batching)."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python: pip install 'mrtui[llama]'")
    from mrtui.backends.registry import load_backend

    return load_backend("llama.cpp", str(model()), n_ctx=512, n_threads=1, parallel=4)


VLLM_SKIP = "needs vllm and a CUDA GPU: pip install 'mrtui[vllm]' on a GPU machine"


def _vllm(model: Callable[[], Path]) -> InferenceBackend:
    """vLLM on a small HF model (MRTUI_VLLM_TEST_MODEL), where vLLM and a CUDA GPU are."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_SKIP)
    torch = pytest.importorskip("torch", reason=VLLM_SKIP)
    if not torch.cuda.is_available():
        pytest.skip(VLLM_SKIP)
    from mrtui.backends.registry import load_backend

    name = os.environ.get("MRTUI_VLLM_TEST_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    return load_backend(
        "vllm", name, max_model_len=2048, gpu_memory_utilization=0.5, enforce_eager=True
    )


TRANSFORMERS_SKIP = "needs torch and transformers: pip install 'mrtui[train]'"


def _transformers(model: Callable[[], Path]) -> InferenceBackend:
    """transformers on the tiny model converted to an HF folder (cached under MRTUI_CACHE_DIR),
    decoding up to four sequences together."""
    pytest.importorskip("torch", reason=TRANSFORMERS_SKIP)
    pytest.importorskip("transformers", reason=TRANSFORMERS_SKIP)
    from mrtui.backends.hf_models import materialize_hf
    from mrtui.backends.registry import load_backend

    folder = materialize_hf(model())
    return load_backend("transformers", str(folder), max_model_len=512, batch_size=4)


def _fake(model: Callable[[], Path]) -> InferenceBackend:
    return FakeBackend(n_ctx=512)


def _openai(model: Callable[[], Path]) -> InferenceBackend:
    """The OpenAI-compatible backend on a real llama_cpp.server process on loopback."""
    server_extra_installed()
    from mrtui.backends.registry import load_backend

    path = model()
    server = LlamaServer(path, Path(tempfile.mkdtemp(prefix="mrtui-server-")), n_ctx=512)
    try:
        backend = load_backend("openai", str(path), endpoints=[server.url], backoff_s=0.05)
    except BaseException:
        server.stop()
        raise
    return ServedBackend(backend, [server])


FACTORIES: dict[str, Callable[[Callable[[], Path]], InferenceBackend]] = {
    "fake": _fake,
    "llama.cpp": _llamacpp,
    "vllm": _vllm,
    "llama.cpp-batched": _llamacpp_batched,
    "openai": _openai,
    "transformers": _transformers,
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest) -> Iterator[InferenceBackend]:
    b = FACTORIES[request.param](lambda: request.getfixturevalue("tiny_gguf"))
    yield b
    b.close()


def ask(rid: str, text: str, **params: object) -> Request:
    return Request(rid, (Message("user", text),), SamplingParams(**params))  # type: ignore[arg-type]


def completions(results: list[Completion | Failure]) -> list[Completion]:
    bad = [r for r in results if isinstance(r, Failure)]
    assert not bad, bad
    return [r for r in results if isinstance(r, Completion)]


def test_is_an_inference_backend(backend: InferenceBackend) -> None:
    assert isinstance(backend, InferenceBackend)


def test_info_has_provenance(backend: InferenceBackend) -> None:
    info = backend.info()
    assert isinstance(info, BackendInfo)
    assert info.backend and info.backend_version and info.model_id
    assert info.chat_format
    json.dumps(info.to_dict())  # the loop stores it as JSON


def test_results_are_streamed(backend: InferenceBackend) -> None:
    it = backend.generate([ask("a", "Hi", max_tokens=2, seed=1)])
    assert isinstance(it, Iterator)
    first = next(it)
    assert first.request_id == "a"
    assert list(it) == []


def test_no_requests_no_results(backend: InferenceBackend) -> None:
    assert list(backend.generate([])) == []


def test_every_sample_comes_back_exactly_once(backend: InferenceBackend) -> None:
    reqs = [
        ask("one", "Name a fruit.", n=1, max_tokens=4, seed=1),
        ask("three", "Name a colour.", n=3, max_tokens=4, seed=2),
        ask("two", "Name a fruit.", n=2, max_tokens=4, seed=3),
    ]
    got = completions(list(backend.generate(reqs)))
    keys = Counter((c.request_id, c.index) for c in got)
    assert keys == Counter(
        [("one", 0), ("three", 0), ("three", 1), ("three", 2), ("two", 0), ("two", 1)]
    )


def test_samples_record_their_seeds(backend: InferenceBackend) -> None:
    got = completions(list(backend.generate([ask("s", "Count.", n=3, max_tokens=3, seed=40)])))
    assert sorted((c.index, c.seed) for c in got) == [(0, 40), (1, 41), (2, 42)]
    unseeded = completions(list(backend.generate([ask("u", "Count.", n=2, max_tokens=3)])))
    seeds = sorted((c.index, c.seed) for c in unseeded)
    assert all(isinstance(s, int) for _, s in seeds)  # a seed is chosen and recorded


def test_completion_fields(backend: InferenceBackend) -> None:
    (c,) = completions(list(backend.generate([ask("f", "Say something.", max_tokens=6, seed=5)])))
    assert c.finish_reason in ("stop", "length")
    assert c.prompt_tokens > 0
    assert 0 <= c.completion_tokens <= 6
    assert c.prompt_tokens_evaluated is None or 0 <= c.prompt_tokens_evaluated <= c.prompt_tokens
    assert c.wall_s >= 0


def test_a_failure_does_not_stop_the_batch(backend: InferenceBackend) -> None:
    reqs = [
        ask("before", "Hello.", max_tokens=3, seed=1),
        ask("too-long", TOO_LONG, max_tokens=3),
        ask("after", "Goodbye.", max_tokens=3, seed=1),
    ]
    results = list(backend.generate(reqs))
    by_id = {r.request_id: r for r in results}
    assert len(results) == 3
    assert isinstance(by_id["too-long"], Failure)
    assert by_id["too-long"].error
    assert isinstance(by_id["before"], Completion)
    assert isinstance(by_id["after"], Completion)


def test_a_prompt_longer_than_the_context_is_a_permanent_failure(
    backend: InferenceBackend,
) -> None:
    """The loop logs such a unit once as skipped instead of retrying it on every resume."""
    (result,) = backend.generate([ask("too-long", TOO_LONG, max_tokens=3)])
    assert isinstance(result, Failure) and result.permanent
    (ok,) = backend.generate([ask("short", "Hello.", max_tokens=3, seed=1)])
    assert isinstance(ok, Completion)


def test_max_tokens_is_respected(backend: InferenceBackend) -> None:
    got = completions(
        list(
            backend.generate(
                [ask(f"m{i}", "Write a story.", max_tokens=5, seed=i) for i in range(3)]
            )
        )
    )
    for c in got:
        assert c.completion_tokens <= 5
        if c.finish_reason == "length":
            assert c.completion_tokens == 5


def test_stop_is_respected(backend: InferenceBackend) -> None:
    prompt = "Write a long story about the sea."
    (free,) = completions(
        list(backend.generate([ask("free", prompt, max_tokens=40, temperature=0.0, seed=3)]))
    )
    text = free.text
    assert len(text) > 8, text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    cut = text.find(stop)
    if cut == 0:  # the stop must not match at the very start
        stop, cut = text[1:3], text.find(text[1:3])
    (stopped,) = completions(
        list(
            backend.generate(
                [ask("stopped", prompt, max_tokens=40, temperature=0.0, seed=3, stop=(stop,))]
            )
        )
    )
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert stopped.text == text[:cut]


def test_choices_return_one_choice_or_are_unsupported(backend: InferenceBackend) -> None:
    choices = ("0", "1", "2", "3", "4", "5")
    req = Request(
        "c",
        (Message("user", "Rate this answer from 0 to 5."),),
        SamplingParams(max_tokens=8, seed=1),
        assistant_prefix="Score: ",
        choices=choices,
    )
    try:
        results = list(backend.generate([req]))
    except UnsupportedFeature:
        return
    (c,) = completions(results)
    assert c.text in choices


def test_structure_gives_a_rationale_then_the_final_line(backend: InferenceBackend) -> None:
    """A FinalLine answer matches its regular expression and ends by itself: the rationale's
    length bound keeps it within max_tokens (a token is at least one byte)."""
    spec = FinalLine("Reasoning: ", 12, 60, "Score: ", ("0", "1", "2", "3", "4", "5"))
    longest = len(spec.label) + spec.max_chars + 1 + len(spec.lead) + 1
    req = Request(
        "s",
        (Message("user", "Grade this answer from 0 to 5: 'Paris is in France.'"),),
        SamplingParams(max_tokens=longest + 8, seed=4),
        structure=spec,
    )
    try:
        results = list(backend.generate([req]))
    except UnsupportedFeature:
        return
    (c,) = completions(results)
    assert c.finish_reason == "stop"
    assert re.fullmatch(final_line_regex(spec), c.text), c.text


def assert_a_distribution(c: Completion, choices: tuple[str, ...]) -> None:
    """``c`` carries a distribution over exactly ``choices`` and the mass it was made from."""
    assert c.choice_probs is not None and c.choice_mass is not None, c
    assert list(c.choice_probs) == list(choices)
    assert all(0 <= p <= 1 for p in c.choice_probs.values())
    assert sum(c.choice_probs.values()) == pytest.approx(1.0)
    assert 0 < c.choice_mass <= 1 + 1e-9


def test_require_refuses_what_is_not_served(backend: InferenceBackend) -> None:
    backend.require([])
    with pytest.raises(UnsupportedFeature, match="no-such-feature"):
        backend.require(["no-such-feature"])


def test_choice_probs_come_back_or_are_refused_up_front(backend: InferenceBackend) -> None:
    """With ``choice_probs`` the answer is the most likely choice, whatever the sampling
    settings say; a backend that cannot say so before the run, in one line."""
    choices = ("0", "1", "2", "3", "4", "5")
    req = Request(
        "p",
        (Message("user", "Rate this answer from 0 to 5: 'Paris is in France.'"),),
        SamplingParams(n=2, temperature=1.5, seed=1),
        assistant_prefix="Score: ",
        choices=choices,
        choice_probs=True,
    )
    try:
        backend.require([CHOICE_PROBS])
    except UnsupportedFeature as e:
        assert str(e) and "\n" not in str(e)
        try:
            results = list(backend.generate([req]))
        except UnsupportedFeature:
            return
        assert results and all(isinstance(r, Failure) and r.permanent for r in results)
        return
    got = completions(list(backend.generate([req])))
    assert sorted(c.index for c in got) == [0, 1]
    for c in got:
        assert_a_distribution(c, choices)
        assert c.text == most_likely(c.choice_probs or {})
        assert c.finish_reason == "stop"
    # the same position of the same prompt: equal up to rounding, which in llama.cpp's batched
    # decoder depends on what else shares the batch (seen: 1.5e-3 relative)
    assert got[0].choice_probs == pytest.approx(got[1].choice_probs, rel=1e-2, abs=1e-4)


def test_a_structured_answer_may_carry_its_final_line_distribution(
    backend: InferenceBackend,
) -> None:
    """Where a backend returns the distribution with a FinalLine answer, it is over exactly
    the choices, and the answer's own final line is one of them."""
    spec = FinalLine("Reasoning: ", 12, 60, "Score: ", ("0", "1", "2", "3", "4", "5"))
    req = Request(
        "sp",
        (Message("user", "Grade this answer from 0 to 5: 'Paris is in France.'"),),
        SamplingParams(max_tokens=120, seed=4),
        structure=spec,
        choice_probs=True,
    )
    try:
        results = list(backend.generate([req]))
    except UnsupportedFeature:
        return
    (c,) = completions(results)
    assert re.fullmatch(final_line_regex(spec), c.text), c.text
    if c.choice_probs is not None:
        assert_a_distribution(c, spec.choices)
    else:
        assert c.choice_mass is None
