"""Choice probabilities, defined once for every backend.

A judge's final line ends with one of a few choices (a score ``0``..``5``, a winner ``A`` or
``B``). Where the choice is written, the model has a next-token distribution; the probability
of choice c is the probability of the tokens whose text, stripped of surrounding whitespace,
is c (``"3"`` and ``" 3"`` both count for 3), renormalised over the choices. The total before
renormalising is the *mass*: how sure the model was that a choice comes there at all.

Local backends see the whole vocabulary (llama.cpp's logits, transformers' scores) and use
:func:`matching_tokens` once per choice tuple, then :func:`from_logits` per position. Servers
see only their top logprobs (``top_logprobs``, at most the server's limit); a choice outside
them counts as 0, and :func:`from_candidates` reports the mass of those listed. The definition
is exact when every choice is one token, as scores and A/B are in common vocabularies; a
longer choice is scored by its first token, so choices must differ in their first token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

ChoiceProbs = tuple[dict[str, float], float]  # (normalised probabilities, mass)


def _normalised(choices: Sequence[str], totals: Mapping[str, float]) -> ChoiceProbs | None:
    mass = sum(totals.get(c, 0.0) for c in choices)
    if not mass > 0 or not math.isfinite(mass):
        return None
    return {c: totals.get(c, 0.0) / mass for c in choices}, mass


def from_candidates(
    choices: Sequence[str], candidates: Iterable[tuple[str, float]]
) -> ChoiceProbs | None:
    """The choice distribution from (token text, logprob) candidates at one position (a
    server's top logprobs), or None when none of them is a choice."""
    wanted = set(choices)
    totals: dict[str, float] = {}
    for text, logprob in candidates:
        key = text.strip()
        if key in wanted and logprob is not None and math.isfinite(logprob):
            totals[key] = totals.get(key, 0.0) + math.exp(logprob)
    return _normalised(choices, totals)


def matching_tokens(pieces: Sequence[str], choices: Sequence[str]) -> dict[str, list[int]]:
    """For each choice, the ids of the vocabulary entries (``pieces[i]`` is token i's text)
    that count for it. Raises ValueError when a choice has no token of its own."""
    wanted: dict[str, list[int]] = {c: [] for c in choices}
    for i, piece in enumerate(pieces):
        ids = wanted.get(piece.strip())
        if ids is not None and piece.strip():
            ids.append(i)
    missing = [c for c, ids in wanted.items() if not ids]
    if missing:
        raise ValueError(
            f"no token of the vocabulary spells the choice(s) {missing!r}; choice "
            "probabilities need choices of one token each"
        )
    return wanted


def from_logits(logits: Any, ids: Mapping[str, Sequence[int]]) -> ChoiceProbs | None:
    """The choice distribution from one position's raw logits (a 1-D float array over the
    vocabulary) and :func:`matching_tokens`' ids."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    top = float(z.max())
    log_norm = top + math.log(float(np.exp(z - top).sum()))
    totals = {c: float(np.exp(z[list(t)] - log_norm).sum()) for c, t in ids.items()}
    return _normalised(list(ids), totals)


def none_listed(choices: Sequence[str], candidates: Sequence[tuple[str, float]], where: str) -> str:
    """Why a server's top logprobs give no distribution: none of ``choices`` is among them
    (``where`` names the server, e.g. "at URL")."""
    top = ", ".join(repr(t) for t, _ in sorted(candidates, key=lambda c: -c[1])[:5])
    return (
        f"none of the choices {list(choices)} is among the {len(candidates)} most likely next "
        f"tokens {where} (the first: {top}), so their probabilities are unknown"
    )


class VocabularyChoices:
    """A local backend's choice tokens: the vocabulary's texts read once (on first use, from
    ``pieces``), and :func:`matching_tokens` once per choice tuple."""

    def __init__(self, pieces: Callable[[], Sequence[str]]) -> None:
        self._read = pieces
        self._pieces: Sequence[str] | None = None
        self._ids: dict[tuple[str, ...], dict[str, list[int]]] = {}

    def ids(self, choices: tuple[str, ...]) -> dict[str, list[int]]:
        """The tokens that count for each choice; ValueError when a choice has none."""
        if choices not in self._ids:
            if self._pieces is None:
                self._pieces = self._read()
            self._ids[choices] = matching_tokens(self._pieces, choices)
        return self._ids[choices]

    def distribution(self, choices: tuple[str, ...], logits: Any) -> ChoiceProbs | None:
        """The choices' distribution in ``logits`` (None without logits or when no token
        spells a choice)."""
        if logits is None:
            return None
        try:
            ids = self.ids(choices)
        except ValueError:
            return None
        return from_logits(logits, ids)


def most_likely(probs: Mapping[str, float]) -> str:
    """The most likely choice (the first listed among equals)."""
    return max(probs, key=lambda c: probs[c])
