"""Prompt templates and the parsers for what the judge and meta-judge answer.

Templates are user messages with named placeholders (``{prompt}``, ``{question}``,
``{response}``, ``{judgement_a}``, ``{judgement_b}``). They are split into segments once, and
filling replaces placeholder segments only, so braces inside user or model text are never
interpreted. The same segments are stored in the log, where the ``preference_pairs`` view
fills them the same way in SQL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from mrtui.store.events import TIE

PLACEHOLDERS = (
    "prompt",
    "question",
    "response",
    "judgement_a",
    "judgement_b",
    "response_a",
    "response_b",
    "reference",
)
_SPLIT = re.compile(r"(\{(?:" + "|".join(PLACEHOLDERS) + r")\})")
BUILTIN = (
    "actor",
    "judge",
    "meta_judge",
    "eval_answer",
    "eval_pairwise",
    "eval_grade",
    "eval_grade_ref",
)


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @cached_property
    def segments(self) -> list[str]:
        return [s for s in _SPLIT.split(self.text) if s]

    @property
    def fields(self) -> set[str]:
        return {s[1:-1] for s in self.segments if _SPLIT.fullmatch(s)}

    def render(self, **values: str) -> str:
        missing = self.fields - values.keys()
        if missing:
            raise TemplateError(f"template {self.name!r} needs {sorted(missing)}")
        return "".join(values[s[1:-1]] if _SPLIT.fullmatch(s) else s for s in self.segments)


def load_template(
    name_or_path: str, *, role: str | None = None, required: set[str] | None = None
) -> Template:
    """A built-in template by name (actor, judge, meta_judge) or a text file by path."""
    if name_or_path in BUILTIN:
        text = resources.files("mrtui.assets").joinpath("templates", f"{name_or_path}.txt")
        template = Template(name_or_path, text.read_text(encoding="utf-8").rstrip("\n"))
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise TemplateError(
                f"template {name_or_path!r} not found; use one of "
                f"{', '.join(BUILTIN)} or a path to a text file"
            )
        template = Template(path.stem, path.read_text(encoding="utf-8").rstrip("\n"))
    if required and not required <= template.fields:
        raise TemplateError(
            f"{role or 'template'} template {name_or_path!r} must contain "
            + ", ".join("{" + f + "}" for f in sorted(required))
        )
    return template


# ---------------------------------------------------------------------------------------
# Parsing model answers. Both parsers read the LAST matching line the model wrote, so a
# response under review that itself says "Score: 5" cannot decide the judgement: the judge's
# own closing line comes after anything it quotes.

# A score line: optional markup and a lead-in word ("Final", "Total", "Overall"), "Score",
# ":" or "=", the value (optionally bracketed or bold), an optional scale ("/5", "out of 5",
# "(out of 5)") and an optional "points".
_SCORE_LINE = re.compile(
    r"^[\s>*_#`-]*(?:(?:final|total|overall)\s+)?score[\s*_`]*[:=][\s*_`<\[(]*"
    r"(?P<value>[-+]?\d+(?:\.\d+)?)[\s*_`>\])]*"
    r"(?:\(?\s*(?:/|out\s+of)\s*(?P<scale>\d+)\s*\)?)?"
    r"(?:\s*(?:points?|pts)\b)?[\s*_`.!)]*$",
    re.IGNORECASE,
)
# The winner line may carry a lead-in ("Final answer: Winner: Judgment A") or markup. The
# noun names what is compared: judgments (the meta-judge) or responses (evaluation's judge).
_WINNER_FORM = r"winner[\s*_`]*[:=][\s*_`\"']*(?:{noun}\s*)?(?P<who>[AB]|tie)\b[\s*_`\"'.!]*$"
_WINNER_LINE = re.compile(_WINNER_FORM.format(noun="judge?ment"), re.IGNORECASE)
RESPONSE_WINNER_LINE = re.compile(_WINNER_FORM.format(noun="response"), re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    value: str | int | float | None
    error: str | None


def parse_score(text: str, *, low: int = 0, high: int = 5, decimals: bool = False) -> Parsed:
    """The judge's final ``Score: N`` line, as a number in [low, high], or why it failed.

    Accepted forms include ``Score: 4``, ``**Score:** 4``, ``Score: 4/5``, ``Final score: 4
    (out of 5)`` and ``Score: [4] points``; ``Score: 4.5`` only with ``decimals``."""
    line = final_line_index(text, _SCORE_LINE)
    if line is None:
        return Parsed(None, "no 'Score: <n>' line")
    m = _SCORE_LINE.search(text.splitlines()[line].strip())
    assert m is not None
    raw = m.group("value")
    scale = m.group("scale")
    if scale is not None and int(scale) != high:
        return Parsed(None, f"score given out of {scale}, not out of {high}")
    value: float = float(raw)
    if value != int(value) and not decimals:
        return Parsed(None, f"score {raw} is not a whole number of points")
    if not low <= value <= high:
        return Parsed(None, f"score {raw} is outside {low}..{high}")
    return Parsed(int(value) if value == int(value) else value, None)


def parse_winner(text: str, line_form: re.Pattern[str] = _WINNER_LINE) -> Parsed:
    """'A' or 'B' from the meta-judge's final ``Winner: Judgment X`` line (or, with
    ``RESPONSE_WINNER_LINE``, ``Winner: Response X``), or why not."""
    line = final_line_index(text, line_form)
    if line is None:
        noun = "Judgment" if line_form is _WINNER_LINE else "Response"
        return Parsed(None, f"no 'Winner: {noun} A|B' line")
    m = line_form.search(text.splitlines()[line].strip())
    assert m is not None
    who = m.group("who").upper()
    if who == "TIE":
        return Parsed(None, TIE)
    return Parsed(who, None)


def final_line_index(text: str, pattern: re.Pattern[str]) -> int | None:
    """Index of the last line that is a final line of ``pattern``'s form, if any."""
    for i, line in reversed(list(enumerate(text.splitlines()))):
        if pattern.search(line.strip()):
            return i
    return None


# ---------------------------------------------------------------------------------------
# Rationales. A judgement's rationale is what it writes before its final line. Its words
# are counted without a leading "Reasoning:" label and without lines copied from the prompt
# the judge was shown (a 0.5B judge sometimes hands the rubric back), so a bare "Score: 4",
# a stray "0" rescued by the fallback, or a copied rubric all count as no rationale.

RATIONALE_LABEL = "Reasoning: "  # what structured judging makes every rationale start with
_WORD = re.compile(r"\w*[^\W\d_]\w*")  # a word has at least one letter
_COPIED_MIN_CHARS = 20  # shorter lines ("Reasoning:", "1.") are not counted as copies


def _final_form(kind: str) -> re.Pattern[str]:
    return {"score": _SCORE_LINE, "winner": _WINNER_LINE, "response-winner": RESPONSE_WINNER_LINE}[
        kind
    ]


def before_final_line(text: str, kind: str) -> str:
    """``text`` without its final line (and what follows it), ``kind`` as for
    :func:`rationale_words`; all of it when it has no final line."""
    final = final_line_index(text, _final_form(kind))
    return text if final is None else "\n".join(text.splitlines()[:final])


def rationale_words(text: str, prompt: str, kind: str) -> int:
    """Words of the rationale before the final line (``kind``: 'score', 'winner' (between
    judgments) or 'response-winner')."""
    lines = text.splitlines()
    final = final_line_index(text, _final_form(kind))
    kept = [
        line
        for line in (lines if final is None else lines[:final])
        if not (len(line.strip()) >= _COPIED_MIN_CHARS and line.strip() in prompt)
    ]
    body = "\n".join(kept).strip()
    if body.startswith(RATIONALE_LABEL.strip()):
        body = body[len(RATIONALE_LABEL.strip()) :]
    return len(_WORD.findall(body))
