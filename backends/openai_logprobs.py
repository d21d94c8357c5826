"""Choice probabilities from OpenAI-compatible servers: the request, the answer, the check.

A request with ``choice_probs`` and ``choices`` goes to the server without a constraint (no
``grammar``, guided choice or JSON schema: a constraint can change the logprobs a server
reports, and a JSON schema would put the choice inside JSON). It asks for one greedy token and
its top logprobs (``logprobs: true, top_logprobs: K`` on ``/chat/completions``). The answer's
first position lists the K most likely next tokens, and
:func:`~mrtui.backends.choice_probs.from_candidates` turns them into the choice distribution
(a choice outside those K counts 0). The completions endpoint's format (``logprobs: K``, one
``{text: logprob}`` per position) is read too, in case a server answers a chat request in it.

What the servers give (K is the backend's ``top_logprobs``, 20 by default):

- vLLM (``vllm serve``): the model's own logprobs (before temperature and penalties), K up to
  its ``--max-logprobs`` (20 by default).
- llama.cpp's ``llama-server``: the probabilities before sampling, over the whole vocabulary.
- llama-cpp-python's server: the model's logprobs when it keeps every position's logits
  (``--logits_all``, its default). It lists tokens by their text, so two tokens spelt alike
  are one entry.
- hosted APIs: OpenAI's chat models allow K up to 20; some models and APIs return none.

A judge's choice continues its answer (``assistant_prefix``), which only vLLM and llama-server
can do, so :meth:`~mrtui.backends.openai_compat.OpenAICompatBackend.require` refuses the other
servers, and a server that lists no top logprobs, before a run starts. Without a prefix, a
choices request is served by any server that lists top logprobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .choice_probs import ChoiceProbs, from_candidates, none_listed

DEFAULT_TOP_LOGPROBS = 20  # OpenAI's limit and vLLM's default --max-logprobs
SAMPLED = 'judge_scoring = "sampled" and meta_scoring = "sampled"'  # no choice probabilities
_PROBE_MESSAGE = "Answer with one word: yes or no?"


def request_fields(top_logprobs: int) -> dict[str, Any]:
    """The body fields of a choice-probability request: one greedy token and the
    ``top_logprobs`` most likely tokens at its position."""
    return {
        "max_tokens": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "logprobs": True,
        "top_logprobs": top_logprobs,
    }


def probe_body(model: str, top_logprobs: int) -> dict[str, Any]:
    """A tiny chat request that asks a server for top logprobs (the check of ``require``)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": _PROBE_MESSAGE}],
        "stream": False,
        "seed": 0,
        **request_fields(top_logprobs),
    }


def first_position(choice: Mapping[str, Any]) -> list[tuple[str, float]] | None:
    """The (token text, logprob) candidates that one answer choice lists for its first
    generated token, or None when it lists none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping):
        return None
    content = logprobs.get("content")
    if isinstance(content, list):  # chat completions: one entry per generated token
        first = content[0] if content else None
        top = first.get("top_logprobs") if isinstance(first, Mapping) else None
        if not isinstance(top, list):
            return None
        out = [
            (text, float(entry["logprob"]))
            for entry in top
            if isinstance(entry, Mapping)
            and isinstance(entry.get("logprob"), int | float)
            and (text := _token_text(entry)) is not None
        ]
        return out or None
    tops = logprobs.get("top_logprobs")  # completions: one {text: logprob} per position
    if isinstance(tops, list) and tops and isinstance(tops[0], Mapping):
        listed = [
            (str(text), float(lp)) for text, lp in tops[0].items() if isinstance(lp, int | float)
        ]
        return listed or None
    return None


def _token_text(entry: Mapping[str, Any]) -> str | None:
    token = entry.get("token")
    if isinstance(token, str):
        return token
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw).decode("utf-8", errors="replace")
    return None


def no_logprobs(url: str) -> str:
    """What to say about a server whose answer lists no top logprobs."""
    return (
        f"the server at {url} returns no top_logprobs, which choice probabilities need; use "
        f"{SAMPLED}, or a server that returns them (llama.cpp's server, vLLM)"
    )


def no_prefill(url: str, flavor: str) -> str:
    """What to say about a server that cannot continue an answer to its final line."""
    return (
        f"the server at {url} ({flavor}) cannot continue a partial assistant turn, which "
        f"choice probabilities at a judge's final line need; use vLLM or llama-server, or "
        f"{SAMPLED}"
    )


def refused_logprobs(url: str, top_logprobs: int, status: int, message: str) -> str:
    """What to say about a server that refuses a request for top logprobs."""
    return (
        f"the server at {url} refuses a request for top_logprobs={top_logprobs} (HTTP {status}: "
        f"{message}); set the backend's top_logprobs option to what it allows, or use {SAMPLED}"
    )


def read_choice_probs(
    choices: Sequence[str], choice: Mapping[str, Any], url: str
) -> ChoiceProbs | str:
    """The choice distribution at the first position of one answer choice, or why there is
    none (no top logprobs, or none of the choices among them)."""
    candidates = first_position(choice)
    if candidates is None:
        return no_logprobs(url)
    got = from_candidates(choices, candidates)
    return got if got is not None else none_listed(choices, candidates, f"at {url}")
