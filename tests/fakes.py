"""A deterministic in-process backend for fast tests of loop logic (never behind the demo).

It answers like a tiny model would: actor requests get texts of varying length, judge requests
end with a "Score: N" line derived from a hash (some deliberately unparseable), meta requests
end with a winner line. ``fail_ids`` makes chosen requests fail; ``crash_after`` raises after
that many results, to simulate a process dying mid-stage.

It keeps the whole ``InferenceBackend`` contract (tests/backends/test_contract.py runs on it)
the way the llama.cpp backend does: ``params.n`` samples per request with indices 0..n-1 and
seeds ``seed + index`` (a fresh seed, recorded, when the request has none); ``max_tokens`` and
``stop`` cut the text; ``choices`` returns exactly one choice (with ``choice_probs``, the
most likely of hash-derived probabilities, see :meth:`FakeBackend.choice_probs`);
``structure`` answers with one paragraph then the final line, as a grammar would force it; a
prompt that does not fit the context window fails its samples for good (``permanent``) and
the batch goes on. Its tokens
are whitespace-separated words: a message is a role marker plus its words, the generation
prompt is one more marker and the assistant prefix adds its words. At temperature 0 a sample
is greedy: it does not depend on the seed. Like llama.cpp it keeps one sequence cached, so
``prompt_tokens_evaluated`` counts only what the previous prompt did not share.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from mrtui.backends.base import (
    CHOICE_PROBS,
    BackendError,
    BackendInfo,
    Completion,
    Failure,
    InferenceBackend,
    Message,
    Request,
    Result,
    UnsupportedFeature,
)
from mrtui.backends.chat import too_long

# One token: a word with the whitespace after it (whitespace alone only if there is no word).
_TOKEN = re.compile(r"\s*\S+\s*|\s+")
WALL_S = 0.001  # the time every fake result reports, so logs built twice are equal


def _h(*parts: object) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def text_tokens(text: str) -> list[str]:
    """The fake tokenizer: ``"".join(text_tokens(t)) == t``, one token per word."""
    return _TOKEN.findall(text)


def prompt_tokens(messages: Sequence[Message], assistant_prefix: str | None = None) -> list[str]:
    """The fake chat template, as tokens: each message is its role marker and its words, then
    the generation prompt's marker and the assistant prefix's words."""
    toks: list[str] = []
    for m in messages:
        toks += [f"<|{m.role}|>", *m.content.split()]
    return [*toks, "<|assistant|>", *(assistant_prefix or "").split()]


class FakeBackend(InferenceBackend):
    """An ``InferenceBackend`` with canned, hash-derived answers (see the module docstring)."""

    def __init__(
        self,
        *,
        sha256: str = "f" * 64,
        unparseable_every: int = 0,
        fail_ids: Iterable[str] = (),
        crash_after: int | None = None,
        n_ctx: int = 4096,
        position_bias: float = 3.0,
        unsupported: Iterable[str] = (),
    ) -> None:
        self.sha256 = sha256
        self.position_bias = position_bias
        self.unsupported = set(unsupported)
        self.unparseable_every = unparseable_every
        self.fail_ids = set(fail_ids)
        self.crash_after = crash_after
        self.n_ctx = n_ctx
        self.calls: list[Request] = []  # every request generate() took, in order
        self.results = 0  # every result generate() yielded
        self.closed = False
        self._cached: list[str] = []  # the last call's prompt and output (its KV cache)

    def info(self) -> BackendInfo:
        return BackendInfo(
            "fake", "0", "fake-model", None, self.sha256, "fake", {"n_ctx": self.n_ctx}
        )

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        if self.closed:
            raise BackendError("this fake backend is closed; start a new one")
        return self._generate(requests)

    def close(self) -> None:
        self.closed = True

    # --- one request at a time, in the order given ---------------------------------------

    def _generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for req in requests:
            self._before_result()
            self.calls.append(req)
            if req.id in self.fail_ids:
                self.results += 1
                yield Failure(req.id, "simulated failure", WALL_S)
                continue
            base = req.params.seed
            if base is None:  # chosen here, so the seed used is still recorded
                base = random.SystemRandom().randrange(2**31)
            for index in range(req.params.n):
                if index:
                    self._before_result()
                self.results += 1
                yield self._sample(req, index, base + index)

    def _before_result(self) -> None:
        if self.crash_after is not None and self.results >= self.crash_after:
            raise KeyboardInterrupt("simulated crash")

    def _sample(self, req: Request, index: int, seed: int) -> Result:
        prompt = prompt_tokens(req.messages, req.assistant_prefix)
        refused = too_long(req, len(prompt), self.n_ctx, WALL_S, setting="n_ctx")
        if refused is not None:
            return refused
        shared = 0
        for a, b in zip(prompt, self._cached, strict=False):
            if a != b:
                break
            shared += 1
        # As llama.cpp: at least the last prompt token is evaluated, to get the next one.
        evaluated = len(prompt) - min(shared, len(prompt) - 1)
        params = req.params
        if req.choices is not None:
            if not req.choices or not all(req.choices):
                return Failure(req.id, "choices must be non-empty strings", WALL_S)
            # the choice decides the length (plus one step to end the turn), not max_tokens
            limit = max(len(text_tokens(c)) for c in req.choices) + 1
        else:
            limit = params.max_tokens
        limit = min(limit, self.n_ctx - len(prompt))  # the context window ends generation
        sample = replace(req, params=replace(params, n=1, seed=seed))
        full = text_tokens(self._answer(sample))
        generated = full[:limit]
        text = "".join(generated)
        # the model ends its turn after its last word, unless the limit comes first
        finish = "length" if len(full) >= limit else "stop"
        cuts = [(text.find(s), s) for s in params.stop if s and s in text]
        if cuts:
            cut, stop = min(cuts)
            # generation ends with the token that completes the stop string
            n_tokens, seen = 0, 0
            while seen < cut + len(stop):
                seen += len(generated[n_tokens])
                n_tokens += 1
            generated, text, finish = generated[:n_tokens], text[:cut], "stop"
        self._cached = prompt + generated
        if req.choice_probs and req.choices is not None:
            probs = self.choice_probs(sample)
            text = max(probs, key=lambda c: probs[c])
            return Completion(
                req.id, index, text, "stop", len(prompt), 1, evaluated, seed, WALL_S,
                choice_probs=probs, choice_mass=0.9,
            )  # fmt: skip
        if req.choices is not None and text not in req.choices:
            return Failure(
                req.id,
                f"constrained output {text!r} is not one of the choices {list(req.choices)!r}",
                WALL_S,
            )
        return Completion(
            req.id, index, text, finish, len(prompt), len(generated), evaluated, seed, WALL_S
        )

    def choice_probs(self, req: Request) -> dict[str, float]:
        """The fake model's probability of each choice: hash-derived weights of the prompt and
        the prefix it continues. Between the winners "A" and "B" it leans to the first shown by
        ``position_bias`` (a factor on A's weight), as small judges do."""
        assert req.choices is not None
        content = req.messages[-1].content
        weights = {c: 1 + _h(content, req.assistant_prefix, c) % 97 for c in req.choices}
        if set(req.choices) == {"A", "B"}:
            weights["A"] *= self.position_bias
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}

    def require(self, features: Iterable[str]) -> None:
        missing = sorted(set(features) - ({CHOICE_PROBS} - self.unsupported))
        if missing:
            raise UnsupportedFeature(f"the fake backend does not serve {', '.join(missing)}")

    def _answer(self, req: Request) -> str:
        """The whole text this fake model writes for one sample, ``req`` with ``n = 1`` and
        the sample's seed (before ``max_tokens`` and ``stop`` cut it). A greedy (temperature 0)
        sample does not depend on the seed but on the assistant prefix it continues."""
        content = req.messages[-1].content
        if req.params.temperature == 0:
            h = _h(content, req.assistant_prefix, None)
        else:
            h = _h(content, req.params.seed)
        if req.choices:
            return req.choices[h % len(req.choices)]
        if req.structure is not None:  # as a grammar would force it: one bounded paragraph
            spec = req.structure
            words = "It reads the answer closely and weighs each point of the scale in turn"
            body = (words * 40)[: max(spec.min_chars, min(spec.max_chars, 60 + h % 80)) - 2]
            return f"{spec.label}I{body}.\n{spec.lead}{spec.choices[h % len(spec.choices)]}"
        if "[Judgment A]" in content:
            return (
                f"Judgment {'AB'[h % 2]} reads the response better.\nWinner: Judgment {'AB'[h % 2]}"
            )
        if "[Response A]" in content:  # two responses compared (pairwise actor judging)
            return f"Response {'AB'[h % 2]} answers better.\nWinner: Response {'AB'[h % 2]}"
        if "[Response]" in content:
            if self.unparseable_every and h % self.unparseable_every == 0:
                return "I think this is decent."
            return f"Earns some points.\nScore: {h % 6}"
        return "answer " + "word " * (h % 40)
