"""Constrained output formats compiled for each backend, defined once.

:class:`~mrtui.backends.base.FinalLine` and a plain choice between strings become a GBNF
grammar (llama.cpp and its server) or a regular expression (vLLM's guided decoding, servers
that take a regex). Both compilations accept exactly the same strings; the tests check the
regular expression, and the llama.cpp tests check that constrained output matches it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import FinalLine

_ENDS = ".!?"


def gbnf_literal(s: str) -> str:
    escaped = (
        s.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def choice_max_tokens(choices: Sequence[str]) -> int:
    """The most tokens a constrained choice can take: every token carries at least one byte,
    plus one step for the end of the turn."""
    return max(len(c.encode()) for c in choices) + 1


def off_choices(text: str, choices: Sequence[str]) -> str | None:
    """Why constrained output is refused (it is not one of ``choices``), or None."""
    if text in choices:
        return None
    return f"constrained output {text!r} is not one of the choices {list(choices)!r}"


def choices_gbnf(choices: Sequence[str]) -> str:
    """A GBNF grammar that accepts exactly one of ``choices``."""
    return "root ::= " + " | ".join(gbnf_literal(c) for c in choices)


def _body_class(spec: FinalLine) -> str:
    """The rationale's characters (the same syntax in GBNF and regular expressions)."""
    excluded = "\\n\\r" + ("0-9" if spec.forbid_digits else "")
    return f"[^{excluded}]"


def final_line_gbnf(spec: FinalLine) -> str:
    """GBNF for ``spec``: label, first character, bounded one-line body, sentence end, final
    line."""
    lo, hi = spec.min_chars - 2, spec.max_chars - 2  # the first character and the end count
    return "\n".join(
        [
            f"root ::= {gbnf_literal(spec.label)} [A-Z0-9] body [.!?] "
            f"{gbnf_literal(chr(10) + spec.lead)} choice",
            f"body ::= {_body_class(spec)}{{{lo},{hi}}}",
            "choice ::= " + " | ".join(gbnf_literal(c) for c in spec.choices),
        ]
    )


def final_line_regex(spec: FinalLine) -> str:
    """The same format as a regular expression (Python ``re`` and vLLM's guided regex)."""
    lo, hi = spec.min_chars - 2, spec.max_chars - 2
    choice = "|".join(re.escape(c) for c in spec.choices)
    return (
        f"{re.escape(spec.label)}[A-Z0-9]{_body_class(spec)}{{{lo},{hi}}}"
        f"[{re.escape(_ENDS)}]\\n{re.escape(spec.lead)}(?:{choice})"
    )


def rationale_regex(spec: FinalLine) -> str:
    """The rationale alone (what follows ``spec.label``, up to its sentence end), anchored:
    for servers that constrain a JSON field rather than the whole text."""
    lo, hi = spec.min_chars - 2, spec.max_chars - 2
    return f"^[A-Z0-9]{_body_class(spec)}{{{lo},{hi}}}[{re.escape(_ENDS)}]$"


def fit_rationale(spec: FinalLine, line: str) -> str | None:
    """``line`` (free text written after ``spec.label``) cut to a rationale the format accepts:
    its longest start that ends a sentence within the length bounds, or None if it has none
    (no capital letter or digit first, a forbidden character, no sentence end in bounds)."""
    body = re.compile(_body_class(spec))
    first = line[:1]
    if not first.isascii() or not (first.isupper() or first.isdigit()):
        return None
    if first.isdigit() and spec.forbid_digits:
        return None
    best = None
    for i, ch in enumerate(line[: spec.max_chars]):
        if i and not body.fullmatch(ch):
            return best
        # a sentence ends at . ! or ?, but not at a list number's dot ("2.")
        if ch in _ENDS and spec.min_chars <= i + 1 and not line[:i].rsplit(" ", 1)[-1].isdigit():
            best = line[: i + 1]
    return best
