"""The transformers backend on the tiny random Qwen2 (as an HF folder): batching, seeds, stop
strings, choices scored by the model, and FinalLine answers that always fit their format.
The contract suite (test_contract.py) covers the rest."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mrtui.backends.base import (
    BackendError,
    Completion,
    Failure,
    FinalLine,
    Message,
    Request,
    SamplingParams,
)
from mrtui.backends.constrain import final_line_regex

torch = pytest.importorskip("torch", reason="needs torch: pip install 'mrtui[train]'")
pytest.importorskip("transformers", reason="needs transformers: pip install 'mrtui[train]'")

from mrtui.backends.transformers_backend import TransformersBackend  # noqa: E402
from mrtui.backends.transformers_engine import (  # noqa: E402
    DecodeSpec,
    Engine,
    RationaleRule,
    close_rationale,
)

PROMPTS = ("Hi", "Name a fruit.", "Write a long story about the sea, please.", "Count to ten.")


@pytest.fixture(scope="module")
def folder(tiny_gguf: Path) -> Path:
    from mrtui.backends.hf_models import materialize_hf

    return materialize_hf(tiny_gguf)


@pytest.fixture(scope="module")
def backend(folder: Path) -> Iterator[TransformersBackend]:
    b = TransformersBackend(str(folder), max_model_len=512, batch_size=8, device="cpu")
    yield b
    b.close()


def ask(rid: str, text: str, **params: Any) -> Request:
    return Request(rid, (Message("user", text),), SamplingParams(**params))


def texts(backend: TransformersBackend, reqs: list[Request]) -> dict[tuple[str, int], str]:
    results = list(backend.generate(reqs))
    assert all(isinstance(r, Completion) for r in results), results
    return {(r.request_id, r.index): r.text for r in results if isinstance(r, Completion)}


def test_registered_as_an_hf_backend() -> None:
    from mrtui.backends.registry import available_backends, model_format

    assert available_backends()["transformers"].endswith(":TransformersBackend")
    assert model_format("transformers") == "hf"


def test_info_names_the_model_and_its_identity(
    backend: TransformersBackend, folder: Path, tiny_gguf: Path
) -> None:
    from mrtui.backends.models import file_sha256

    info = backend.info()
    assert (info.backend, info.chat_format) == ("transformers", "tokenizer")
    assert info.model_path == str(folder)
    assert info.model_sha256 == file_sha256(tiny_gguf)  # a GGUF's dequantised copy is that model
    assert info.extra["device"] == "cpu" and info.extra["dtype"] == "float32"


def test_batching_gives_the_same_greedy_text_as_one_at_a_time(
    backend: TransformersBackend,
) -> None:
    reqs = [ask(f"r{i}", p, max_tokens=12, temperature=0.0) for i, p in enumerate(PROMPTS)]
    together = texts(backend, reqs)
    alone = {k: v for r in reqs for k, v in texts(backend, [r]).items()}
    assert together == alone
    assert len(set(together.values())) > 1  # the prompts were told apart


def test_each_sample_is_reproducible_from_its_seed(backend: TransformersBackend) -> None:
    three = texts(backend, [ask("s", "Tell me a joke.", n=3, max_tokens=8, seed=40)])
    again = texts(backend, [ask("s", "Tell me a joke.", n=3, max_tokens=8, seed=40)])
    assert three == again
    assert len(set(three.values())) == 3  # each sample its own seed
    # sample i of a request seeded s is the request seeded s + i, whatever runs beside it
    single = texts(
        backend,
        [
            ask("x", "Other work.", max_tokens=8, seed=1),
            ask("s", "Tell me a joke.", max_tokens=8, seed=42),
            ask("y", "More.", max_tokens=8, seed=2, n=2),
        ],
    )
    assert single[("s", 0)] == three[("s", 2)]


def test_stop_strings_cut_before_the_first_stop(backend: TransformersBackend) -> None:
    prompt = "Write a long story about the sea."
    (free,) = texts(backend, [ask("f", prompt, max_tokens=30, temperature=0.0)]).values()
    later, earlier = free[len(free) // 2 :][:3], free[len(free) // 4 :][:3]
    (stopped,) = backend.generate(
        [ask("st", prompt, max_tokens=30, temperature=0.0, stop=(later, earlier))]
    )
    assert isinstance(stopped, Completion) and stopped.finish_reason == "stop"
    assert stopped.text == free[: min(free.find(later), free.find(earlier))]


def test_max_tokens_ends_with_length_and_eos_with_stop(backend: TransformersBackend) -> None:
    (c,) = backend.generate([ask("m", "Go on.", max_tokens=5, temperature=0.0)])
    assert isinstance(c, Completion)
    assert (c.finish_reason, c.completion_tokens) == ("length", 5)
    engine = backend._live()
    prompt = tuple(backend._prompt.tokens((Message("user", "Go on."),)))
    (out,) = engine.decode([DecodeSpec(prompt, 5, 0.0, 1.0, 0)])
    first = engine.tokenizer.encode(out.text, add_special_tokens=False)[0]
    eos_engine = Engine(torch, engine.model, engine.tokenizer, 512, eos_ids={first})
    (ended,) = eos_engine.decode([DecodeSpec(prompt, 5, 0.0, 1.0, 0)])
    assert (ended.text, ended.tokens, ended.finish_reason) == ("", 0, "stop")


def teacher_forced(backend: TransformersBackend, prompt: list[int], choice: str) -> float:
    """log P(choice | prompt), one unpadded forward pass over prompt + choice."""
    model = backend._live().model
    tail = list(backend._plain(choice))
    ids = torch.tensor([prompt + tail])
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(tail))


def test_choices_pick_the_choice_the_model_scores_highest(backend: TransformersBackend) -> None:
    choices = ("yes", "no", "maybe later", "Paris is a city in France", "7")
    messages = (Message("user", "Is the sea blue?"),)
    req = Request("c", messages, SamplingParams(temperature=0.0), "Answer: ", choices)
    prompt = backend._prompt.tokens(messages, "Answer: ")
    expected = {c: teacher_forced(backend, prompt, c) for c in choices}
    probs = backend._choice_probabilities(req)
    assert sum(probs.values()) == pytest.approx(1.0)
    best = max(expected, key=lambda c: expected[c])
    assert max(probs, key=lambda c: probs[c]) == best
    for a in choices:  # the same log-probabilities, up to normalisation
        ratio = probs[a] / probs[best]
        assert ratio == pytest.approx(2.718281828459045 ** (expected[a] - expected[best]), rel=1e-3)
    (c,) = backend.generate([req])
    assert isinstance(c, Completion) and (c.text, c.finish_reason) == (best, "stop")


def test_sampled_choices_follow_their_seeds(backend: TransformersBackend) -> None:
    choices = ("A", "B", "C", "D")
    req = Request(
        "c",
        (Message("user", "Pick."),),
        SamplingParams(n=12, temperature=1.0, seed=3),
        None,
        choices,
    )
    first = texts(backend, [req])
    assert first == texts(backend, [req])
    assert set(first.values()) <= set(choices)


SPECS = [
    FinalLine("Reasoning: ", 12, 60, "Score: ", ("0", "1", "2", "3", "4", "5")),
    FinalLine("Why: ", 3, 20, "Winner: ", ("Judgment A", "Judgment B"), forbid_digits=True),
    FinalLine("", 40, 120, "Verdict: ", ("yes", "no"), forbid_digits=True),
]


@pytest.mark.parametrize("spec", SPECS, ids=["score", "winner", "long"])
def test_structure_always_matches_its_format(backend: TransformersBackend, spec: FinalLine) -> None:
    reqs = [
        Request(
            f"s{i}",
            (Message("user", "Grade this answer: 'Paris is in France.'"),),
            SamplingParams(n=2, temperature=temp, max_tokens=max_tokens, seed=i),
            structure=spec,
        )
        for i, (temp, max_tokens) in enumerate([(0.0, 300), (0.8, 300), (1.5, 300), (0.8, 4)])
    ]
    results = list(backend.generate(reqs))
    assert len(results) == 8
    for r in results:
        assert isinstance(r, Completion), r
        assert r.finish_reason == "stop"
        assert re.fullmatch(final_line_regex(spec), r.text), r.text


def test_a_rationale_ends_where_the_model_breaks_the_line_after_a_sentence(
    backend: TransformersBackend,
) -> None:
    spec = FinalLine("Reasoning: ", 8, 60, "Score: ", ("1", "2"))
    rule = RationaleRule(spec, backend._token_table())
    (dot_newline,) = backend._plain(".\n")
    (newline,) = backend._plain("\n")
    rule.text = "It is right"
    assert rule.ending(dot_newline) == "It is right."
    assert rule.ending(newline) is None  # no sentence end yet: drawn again
    rule.text = "It is right. "
    assert rule.ending(newline) == "It is right."
    assert rule.marker == "Score:"
    assert close_rationale(spec, "It is right. And so") == "It is right."
    assert close_rationale(spec, "Short") == "Short..."
    assert close_rationale(spec, "A" * 80) == "A" * 59 + "."


def test_a_failing_step_fails_only_its_request(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = backend._live()
    real = engine.decode

    def decode(specs: list[DecodeSpec]) -> Any:
        if any(s.max_tokens == 13 for s in specs):
            raise RuntimeError("boom")
        return real(specs)

    monkeypatch.setattr(engine, "decode", decode)
    reqs = [
        ask("ok1", "Hi", max_tokens=3),
        ask("bad", "Hi", max_tokens=13),
        ask("ok2", "Yo", max_tokens=3),
    ]
    by_id = {r.request_id: r for r in backend.generate(reqs)}
    assert isinstance(by_id["bad"], Failure) and "boom" in by_id["bad"].error
    assert not by_id["bad"].permanent
    assert isinstance(by_id["ok1"], Completion) and isinstance(by_id["ok2"], Completion)


def test_a_sample_whose_steps_raise_fails_alone(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise RuntimeError("no table")

    monkeypatch.setattr(backend, "_token_table", broken)
    spec = FinalLine("Why: ", 3, 20, "Score: ", ("1", "2"))
    reqs = [
        ask("ok", "Hi", max_tokens=3),
        Request("bad", (Message("user", "Grade."),), structure=spec),
    ]
    by_id = {r.request_id: r for r in backend.generate(reqs)}
    assert isinstance(by_id["bad"], Failure) and "no table" in by_id["bad"].error
    assert isinstance(by_id["ok"], Completion)


def test_a_plain_folder_is_known_by_its_content_hash_and_closes(
    folder: Path, tmp_path: Path
) -> None:
    from mrtui.backends.hf_models import SOURCE_FILE, folder_sha256

    for f in folder.iterdir():  # the same model, not marked as a GGUF's copy
        if f.name != SOURCE_FILE:
            (tmp_path / f.name).symlink_to(f)
    b = TransformersBackend(str(tmp_path), max_model_len=64)
    assert b.info().model_sha256 == folder_sha256(tmp_path)
    b.close()
    b.close()  # twice is fine
    with pytest.raises(BackendError, match="closed"):
        b.generate([ask("a", "Hi", max_tokens=2)])


def test_bad_settings_are_refused_before_loading() -> None:
    with pytest.raises(BackendError, match="chat_format"):
        TransformersBackend("nowhere", chat_format="nope")
    with pytest.raises(BackendError, match="n_ctx"):
        TransformersBackend("nowhere", n_ctx=10, max_model_len=20)
    with pytest.raises(BackendError, match="dtype"):
        TransformersBackend("nowhere", dtype="int3")


# --- choice probabilities ------------------------------------------------------------------

TEN = tuple(str(i) for i in range(10))
ADDITION = (Message("user", "What is 2 + 3? Answer with one digit."),)


def next_token_probs(
    backend: TransformersBackend, prompt: list[int], choices: tuple[str, ...]
) -> tuple[dict[str, float], float]:
    """The choice distribution computed another way: one unpadded forward pass, a softmax,
    and every token's text from the tokenizer."""
    model, tokenizer = backend._live().model, backend._tokenizer
    with torch.inference_mode():
        z = model(input_ids=torch.tensor([prompt])).logits[0, -1].double()
    p = torch.softmax(z, -1).tolist()
    totals = {c: 0.0 for c in choices}
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i]).strip()
        if text in totals:
            totals[text] += p[i]
    mass = sum(totals.values())
    return {c: t / mass for c, t in totals.items()}, mass


def assert_close(got: Completion, expected: tuple[dict[str, float], float]) -> None:
    probs, mass = expected
    assert got.choice_probs is not None and got.choice_mass is not None
    assert list(got.choice_probs) == list(probs)
    for c, p in probs.items():
        assert got.choice_probs[c] == pytest.approx(p, abs=1e-4), c
    assert got.choice_mass == pytest.approx(mass, rel=1e-3)


def test_choice_probs_are_the_next_token_distribution_after_the_prompt(
    backend: TransformersBackend,
) -> None:
    """Left-padded next to a longer prompt or alone, the distribution is the one a plain
    forward pass gives, counting " 5" for "5" too (not the teacher-forced "5" alone)."""
    prompt = backend._prompt.tokens(ADDITION, "The answer is ")
    expected = next_token_probs(backend, prompt, TEN)
    assert max(expected[0].values()) - min(expected[0].values()) > 0.1  # far from uniform
    params = SamplingParams(n=2, temperature=1.0, seed=3)
    req = Request("p", ADDITION, params, "The answer is ", TEN, choice_probs=True)
    other = ask("long", "Write a long story about the sea, please, with many details.")
    for batch in ([req], [req, other]):
        got = [r for r in backend.generate(batch) if r.request_id == "p"]
        assert len(got) == 2
        for c in got:
            assert isinstance(c, Completion)
            assert_close(c, expected)
            assert c.text == max(expected[0], key=lambda k: expected[0][k])
            assert (c.finish_reason, c.completion_tokens) == ("stop", 1)


def test_choice_probs_need_choices_of_one_token(backend: TransformersBackend) -> None:
    choices = ("Judgment A", "Judgment B")
    req = Request("m", ADDITION, SamplingParams(), None, choices, choice_probs=True)
    (r,) = backend.generate([req])
    assert isinstance(r, Failure) and r.permanent and "Judgment A" in r.error


def test_a_final_line_carries_the_distribution_at_its_choice(backend: TransformersBackend) -> None:
    spec = SPECS[0]
    messages = (Message("user", "Grade this answer: 'Paris is in France.'"),)
    req = Request("s", messages, SamplingParams(max_tokens=200, seed=2), structure=spec)
    (plain,) = backend.generate([req])
    assert isinstance(plain, Completion) and plain.choice_probs is None
    asked = Request("s", messages, req.params, structure=spec, choice_probs=True)
    (c,) = backend.generate([asked])
    assert isinstance(c, Completion) and c.text == plain.text  # the same answer, and more
    rationale = c.text[len(spec.label) : c.text.index("\n")]
    head = list(backend._prompt.tokens(messages)) + list(backend._plain(spec.label))
    body = list(backend._plain(rationale + "\n" + spec.lead))
    assert_close(c, next_token_probs(backend, head + body, spec.choices))


def test_choice_probs_agree_with_llama_cpp_on_the_same_model(
    backend: TransformersBackend, tiny_gguf: Path
) -> None:
    """One definition for every backend: the GGUF on llama.cpp (f16 weights) and its HF
    conversion here give the same distribution, up to the weights' rounding."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python: pip install 'mrtui[llama]'")
    from mrtui.backends.llamacpp import LlamaCppBackend

    req = Request("p", ADDITION, SamplingParams(), "The answer is ", TEN, choice_probs=True)
    (here,) = backend.generate([req])
    with LlamaCppBackend(str(tiny_gguf), n_ctx=512, n_threads=1) as llama:
        (there,) = llama.generate([req])
    assert isinstance(here, Completion) and isinstance(there, Completion)
    assert here.choice_probs == pytest.approx(there.choice_probs, abs=2e-3)
    assert here.choice_mass == pytest.approx(there.choice_mass, rel=2e-2)


@pytest.mark.slow
def test_qwen_puts_most_of_its_probability_on_the_right_answer(qwen_gguf: Path) -> None:
    """A question whose answer is known: 2 + 3 is 5."""
    from mrtui.backends.hf_models import materialize_hf

    req = Request("q", ADDITION, SamplingParams(), "The answer is ", TEN, choice_probs=True)
    with TransformersBackend(str(materialize_hf(qwen_gguf)), max_model_len=512) as b:
        (c,) = b.generate([req])
    assert isinstance(c, Completion) and c.text == "5", c
    assert c.choice_probs is not None and c.choice_probs["5"] > 0.5
    assert c.choice_mass is not None and c.choice_mass > 0.5
