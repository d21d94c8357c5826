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

PLACEHOLDERS = ("prompt", "question", "response", "judgement_a", "judgement_b")
_SPLIT = re.compile(r"(\{(?:" + "|".join(PLACEHOLDERS) + r")\})")
BUILTIN = ("actor", "judge", "meta_judge")


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

_SCORE_LINE = re.compile(
    r"^[\s>*_#`]*score[\s*_`]*[:=][\s*_`<\[(]*(?P<value>[-+]?\d+(?:\.\d+)?)[>\])]?"
    r"(?:\s*(?:/|out\s+of)\s*(?P<scale>\d+))?[\s*_`.!]*$",
    re.IGNORECASE,
)
# The winner line may carry a lead-in ("Final answer: Winner: Judgment A") or markup.
_WINNER_LINE = re.compile(
    r"winner[\s*_`]*[:=][\s*_`\"']*(?:judge?ment\s*)?(?P<who>[AB]|tie)\b[\s*_`\"'.!]*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Parsed:
    value: str | int | None
    error: str | None


def parse_score(text: str, *, low: int = 0, high: int = 5) -> Parsed:
    """The judge's final ``Score: N`` line, as an int in [low, high], or why it failed."""
    matches = [m for line in text.splitlines() if (m := _SCORE_LINE.match(line.strip()))]
    if not matches:
        return Parsed(None, "no 'Score: <n>' line")
    m = matches[-1]
    raw = m.group("value")
    scale = m.group("scale")
    if scale is not None and int(scale) != high:
        return Parsed(None, f"score given out of {scale}, not out of {high}")
    if "." in raw and float(raw) != int(float(raw)):
        return Parsed(None, f"score {raw} is not a whole number of points")
    value = int(float(raw))
    if not low <= value <= high:
        return Parsed(None, f"score {value} is outside {low}..{high}")
    return Parsed(value, None)


def parse_winner(text: str) -> Parsed:
    """'A' or 'B' from the meta-judge's final ``Winner: Judgment X`` line, or why not."""
    matches = [m for line in text.splitlines() if (m := _WINNER_LINE.search(line.strip()))]
    if not matches:
        return Parsed(None, "no 'Winner: Judgment A|B' line")
    who = matches[-1].group("who").upper()
    if who == "TIE":
        return Parsed(None, TIE)
    return Parsed(who, None)
