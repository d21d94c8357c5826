"""The batch engine's reuse of KV cells, on the tiny random Qwen2 through real llama.cpp.

A follow-up (the second step of a structured answer: the first step's prompt and text, then
more) must find the cells of the sequence it continues, even when other work is queued, and a
new sequence must not take a slot whose cells a queued prompt could reuse while an empty slot
is free. ``Out.evaluated`` (prompt tokens actually decoded) shows which happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mrtui.backends.llamacpp_batch import BatchEngine, Out, Spec


@pytest.fixture(scope="module")
def llm(tiny_gguf: Path) -> Iterator[Any]:
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="needs llama-cpp-python: pip install 'mrtui[llama]'"
    )
    model = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=256, n_threads=1, verbose=False)
    yield model
    model.close()


def _engine(llm: Any, parallel: int) -> BatchEngine:
    return BatchEngine(llm.model, n_ctx=1024, n_batch=128, parallel=parallel, n_threads=1)


def _spec(key: str, prompt: list[int], max_tokens: int = 8) -> Spec:
    return Spec(key, tuple(prompt), max_tokens, 0.0, 1.0, 0, 1)


def _tokens(llm: Any, text: str) -> list[int]:
    return list(llm.tokenize(text.encode(), add_bos=False, special=False))


def _first(engine: BatchEngine, spec: Spec) -> tuple[list[int], Out]:
    """Run ``spec`` alone; the tokens its slot now holds (prompt and text but the last)."""
    engine.submit(spec)
    ((done, out),) = list(engine.run())
    assert done == spec and out.error is None and out.completion_tokens == spec.max_tokens
    (cells,) = [c for c in engine._cells if c]
    return cells, out


def _run_all(engine: BatchEngine) -> dict[str, Out]:
    outs = {spec.key: out for spec, out in engine.run()}
    assert all(o.error is None for o in outs.values())
    return outs


def test_a_follow_up_goes_first_and_reuses_the_finished_sequence(llm: Any) -> None:
    engine = _engine(llm, parallel=1)  # one slot: whatever runs next takes it
    try:
        first = _tokens(llm, "Grade this answer about the history of tea in China. " * 3)
        cells, out = _first(engine, _spec("a", first))
        assert out.evaluated == len(first)
        tail = _tokens(llm, " Score: ")
        other = _tokens(llm, "An unrelated question about rivers and mountains. " * 3)
        engine.submit(_spec("other", other))
        engine.submit(_spec("a#2", cells + tail, 2), follow_up=True)
        outs = _run_all(engine)
        assert outs["a#2"].evaluated == len(tail)  # only the new tokens were decoded
        assert outs["other"].evaluated == len(other)

        # The same queue without the follow-up mark: the other prompt takes the slot first.
        engine.reset()
        cells, _ = _first(engine, _spec("b", first))
        engine.submit(_spec("other2", other))
        engine.submit(_spec("b#2", cells + tail, 2))
        outs = _run_all(engine)
        assert outs["b#2"].evaluated == len(cells + tail)
    finally:
        engine.close()


def test_a_new_sequence_takes_an_empty_slot_and_leaves_reusable_cells(llm: Any) -> None:
    engine = _engine(llm, parallel=2)
    try:
        first = _tokens(llm, "Explain why the sky is blue in two sentences. " * 3)
        cells, _ = _first(engine, _spec("a", first))
        other = _tokens(llm, "Write a haiku about autumn leaves and rain. " * 3)
        engine.submit(_spec("other", other))
        engine.submit(_spec("again", cells + _tokens(llm, " More:")))
        outs = _run_all(engine)
        assert outs["again"].evaluated == len(_tokens(llm, " More:"))
    finally:
        engine.close()


def test_a_grammar_llama_cpp_cannot_parse_fails_its_spec_not_the_batch(llm: Any) -> None:
    engine = _engine(llm, parallel=2)
    try:
        prompt = _tokens(llm, "Say something about the weather. " * 2)
        bad = Spec("bad", tuple(prompt), 4, 0.0, 1.0, 0, 1, grammar="root ::= (")
        engine.submit(bad)
        engine.submit(_spec("good", prompt))
        outs = {spec.key: out for spec, out in engine.run()}
        assert outs["bad"].error is not None and "grammar" in outs["bad"].error
        assert outs["good"].error is None and outs["good"].completion_tokens == 8
    finally:
        engine.close()


def test_a_stop_string_cuts_the_text_where_it_begins(llm: Any) -> None:
    engine = _engine(llm, parallel=1)
    try:
        prompt = tuple(_tokens(llm, "Count: one two three four five six. " * 2))
        engine.submit(Spec("free", prompt, 24, 0.0, 1.0, 0, 1))
        ((_, free),) = list(engine.run())
        assert free.error is None and len(free.text) > 4
        stop = free.text[2:4]  # greedy decoding writes the same text again
        engine.reset()
        engine.submit(Spec("cut", prompt, 24, 0.0, 1.0, 0, 1, stop=(stop, "\x00never")))
        ((_, cut),) = list(engine.run())
        assert cut.finish_reason == "stop"
        assert cut.text == free.text[: free.text.index(stop)]
    finally:
        engine.close()


def test_logits_come_back_from_where_the_first_token_is_sampled(llm: Any, tiny_gguf: Path) -> None:
    """``Spec.logits`` returns the prompt's last position's logits (those of a separate
    ``logits_all`` instance); with ``max_tokens`` 0 nothing is sampled."""
    import llama_cpp
    import numpy as np

    prompt = tuple(_tokens(llm, "Grade this answer about the history of tea. Score: "))
    full = llama_cpp.Llama(
        model_path=str(tiny_gguf), n_ctx=256, n_threads=1, logits_all=True, verbose=False
    )
    try:
        full.eval(list(prompt))
        expected = np.asarray(full.scores[len(prompt) - 1])
    finally:
        full.close()
    engine = _engine(llm, parallel=2)
    try:
        engine.submit(Spec("only", prompt, 0, 0.0, 1.0, 0, 1, logits=True))
        engine.submit(Spec("and-text", prompt, 3, 0.0, 1.0, 0, 1, logits=True))
        engine.submit(_spec("plain", list(prompt), 3))
        outs = _run_all(engine)
    finally:
        engine.close()
    only, more = outs["only"], outs["and-text"]
    assert (only.text, only.completion_tokens, only.finish_reason) == ("", 0, "length")
    assert more.completion_tokens == 3 and outs["plain"].logits is None
    assert float(np.abs(expected).max()) > 0.1  # real logits, not a zeroed buffer
    for out in (only, more):
        assert out.logits.shape == expected.shape
        assert np.allclose(out.logits, expected, atol=2e-2)
