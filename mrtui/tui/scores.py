"""How the screens write a judgement's score and a meta-verdict's probability, in both scoring
modes. No Textual imports.

A sampled score (``judge_scoring = 'sampled'``) is the number the judgement's final line named,
shown as before ("3"). An expected score (``'expected'``) is Σ s·p(s) over the judge's
probability of each score 0..5, shown as a decimal ("3.42") with that distribution as a
one-line bar (one block per score, its height the probability) or as numbers.
"""

from __future__ import annotations

import math

from .model import JudgementInfo

SCORES = tuple(str(s) for s in range(6))
BLOCKS = "▁▂▃▄▅▆▇█"  # eighths: a probability p draws ceil(8p) eighths (p = 0 draws a space)


def is_expected(j: JudgementInfo) -> bool:
    return j.scoring == "expected" and j.score is not None


def score_cell(j: JudgementInfo, bar: bool = False) -> str:
    """The score for a table cell: "✗" when unparsed, "3" sampled, "3.42" expected (with
    ``bar``, followed by its distribution's bar)."""
    if j.score is None:
        return "✗"
    if not is_expected(j):
        return f"{j.score:.0f}"
    return f"{j.score:.2f}" + (f" {dist_bar(j.choice_probs)}" if bar and j.choice_probs else "")


def dist_bar(probs: dict[str, float] | None) -> str:
    """Scores 0..5 as six blocks whose heights are their probabilities (absolute, not scaled
    to the largest, so a flat distribution looks flat and low)."""
    out = []
    for s in SCORES:
        p = (probs or {}).get(s) or 0.0
        out.append(" " if p <= 0 else BLOCKS[min(len(BLOCKS), max(1, math.ceil(8 * p))) - 1])
    return "".join(out)


def dist_numbers(probs: dict[str, float] | None) -> str:
    """Each score's probability: "0:0.01 1:0.02 2:0.10 3:0.35 4:0.40 5:0.12"."""
    return " ".join(f"{s}:{(probs or {}).get(s) or 0.0:.2f}" for s in SCORES)


def named(j: JudgementInfo) -> str:
    """What an expected-scored judgement's own text named."""
    if j.sampled_score is None:
        return "its text named no score"
    return f"its text named {j.sampled_score:.0f}"


def score_head(j: JudgementInfo) -> str:
    """One phrase: "unparsed", "score 3", or "expected score 3.42 (its text named 4)"."""
    if j.score is None:
        return "unparsed"
    if not is_expected(j):
        return f"score {j.score:.0f}"
    return f"expected score {j.score:.2f} ({named(j)})"


def dist_line(j: JudgementInfo) -> str:
    """The distribution of an expected score: bar, numbers and the mass the probabilities had
    before normalising; "" for a sampled score."""
    if not is_expected(j) or not j.choice_probs:
        return ""
    mass = "" if j.choice_mass is None else f" · mass {j.choice_mass:.2f}"
    return f"p(0..5) ▕{dist_bar(j.choice_probs)}▏ {dist_numbers(j.choice_probs)}{mass}"


def prob(p: float | None) -> str:
    """A probability as "0.62"; "-" when absent."""
    return "-" if p is None else f"{p:.2f}"
