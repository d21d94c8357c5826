"""Word n-gram overlap with the evaluation sets (the usual contamination check).

The rule: both texts are case-folded and split into words (runs of letters, digits and
underscores; punctuation and spacing are ignored). A training prompt overlaps an evaluation
set when it shares at least one run of ``n`` consecutive words (default 8) with any user turn
of any prompt in that set. A text shorter than ``n`` words counts as one run of all its words,
so a short prompt overlaps only a short evaluation prompt with exactly the same words.
Grams made only of numbers ("1 2 3 4 5 6 7 8", rows of a table) are left out of the
evaluation side: they say nothing about where a prompt came from.

Every n-gram of the evaluation prompts goes into one hash table per set (and one for all
sets); checking a prompt costs one lookup per n-gram of it, whatever the number of
evaluation prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .evalsets import EvalPrompt

DEFAULT_N = 8
_WORD = re.compile(r"\w+")

Gram = tuple[str, ...]


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def ngrams(text: str, n: int) -> list[Gram]:
    """The word n-grams of a text in order; a text under n words is one gram of all of them."""
    ws = words(text)
    if len(ws) < n:
        return [tuple(ws)] if ws else []
    return list(zip(*(ws[k:] for k in range(n)), strict=False))


@dataclass(frozen=True)
class Hit:
    """Why a prompt overlaps a set: the evaluation prompt it shares most grams with, the first
    of those grams, and how many of the prompt's grams the set holds."""

    eval_set: str
    eval_id: str
    shared: str
    shared_grams: int
    grams: int


class OverlapIndex:
    def __init__(self, eval_sets: Mapping[str, Iterable[EvalPrompt]], n: int = DEFAULT_N) -> None:
        if n < 1:
            raise ValueError("the n-gram length must be at least 1")
        self.n = n
        self.sizes: dict[str, int] = {}
        self._by_set: dict[str, dict[Gram, str]] = {}
        for name, prompts in eval_sets.items():
            table: dict[Gram, str] = {}
            count = 0
            for p in prompts:
                count += 1
                for turn in p.turns:
                    for gram in ngrams(turn, n):
                        if not all(w.isdigit() for w in gram):
                            table.setdefault(gram, p.id)
            self._by_set[name] = table
            self.sizes[name] = count
        self._all: set[Gram] = set().union(*self._by_set.values())

    @property
    def sets(self) -> list[str]:
        return list(self._by_set)

    def hits(self, text: str) -> list[Hit]:
        """One Hit per evaluation set the text overlaps; empty when it overlaps none."""
        grams = ngrams(text, self.n)
        if self._all.isdisjoint(grams):
            return []
        found = []
        for name, table in self._by_set.items():
            owners = [table[g] for g in grams if g in table]
            if owners:
                best = Counter(owners).most_common(1)[0][0]
                first = next(g for g in grams if table.get(g) == best)
                found.append(Hit(name, best, " ".join(first), len(owners), len(grams)))
        return found
