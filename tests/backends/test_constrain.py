"""The constrained formats: what their regular expression accepts, and the GBNF source."""

from __future__ import annotations

import re

import pytest

from mrtui.backends.base import FinalLine, Request
from mrtui.backends.constrain import (
    choices_gbnf,
    final_line_gbnf,
    final_line_regex,
    fit_rationale,
)

SPEC = FinalLine("Reasoning: ", 20, 80, "Score: ", ("0", "1", "2", "3", "4", "5"))


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("Reasoning: It names the right city and says why.\nScore: 4", True),
        ("Reasoning: It names 2 cities, one of them right!\nScore: 0", True),
        ("Reasoning: 1. It lists the points it earns, in order.\nScore: 4", True),
        ("Reasoning: it starts in lower case, which is refused.\nScore: 4", False),
        ("Reasoning: Too short.\nScore: 4", False),  # under 20 characters
        ("Reasoning: " + "A" + "b" * 90 + ".\nScore: 4", False),  # over 80
        ("Reasoning: Two lines are refused.\nScore: 3\nScore: 4", False),
        ("Reasoning: It ends without a full stop\nScore: 4", False),
        ("Reasoning: The score is out of range here.\nScore: 6", False),
        ("Score: 4", False),
    ],
)
def test_final_line_regex(text: str, ok: bool) -> None:
    assert bool(re.fullmatch(final_line_regex(SPEC), text)) is ok


def test_digits_can_be_forbidden_in_the_rationale() -> None:
    spec = FinalLine("Reasoning: ", 20, 80, "Score: ", ("4",), forbid_digits=True)
    assert not re.fullmatch(
        final_line_regex(spec), "Reasoning: It earns 4 points in all.\nScore: 4"
    )
    assert re.fullmatch(final_line_regex(spec), "Reasoning: It earns four points in all.\nScore: 4")
    assert "[^\\n\\r0-9]" in final_line_gbnf(spec)


def test_gbnf_source_bounds_the_rationale_and_escapes_literals() -> None:
    src = final_line_gbnf(FinalLine('Say "why": ', 20, 80, "Winner: Judgment ", ("A", "B")))
    assert 'root ::= "Say \\"why\\": " [A-Z0-9] body [.!?] "\\nWinner: Judgment " choice' in src
    assert "body ::= [^\\n\\r]{18,78}" in src and 'choice ::= "A" | "B"' in src
    assert choices_gbnf(["a", 'b"c', "d\\e\n"]) == r'root ::= "a" | "b\"c" | "d\\e\n"'


def test_a_spec_and_a_request_refuse_what_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="min_chars"):
        FinalLine("R: ", 2, 80, "Score: ", ("1",))
    with pytest.raises(ValueError, match="single-line"):
        FinalLine("R:\n", 20, 80, "Score: ", ("1",))
    with pytest.raises(ValueError, match="not both"):
        Request("x", (), choices=("1",), structure=SPEC)


def test_fit_rationale_cuts_at_the_last_sentence_end_in_bounds() -> None:
    spec = FinalLine("Reasoning: ", 20, 60, "Score: ", ("4",))
    assert fit_rationale(spec, "It is right. It also explains why, well.") == (
        "It is right. It also explains why, well."
    )
    long = "It names the right city. " + "It goes on and on without end " * 5
    assert fit_rationale(spec, long) == "It names the right city."
    assert fit_rationale(spec, "it starts in lower case. Fine.") is None
    assert fit_rationale(spec, "Short.") is None  # under 20 characters
    assert fit_rationale(spec, "1. It is right and clear. 2. It is short") == (
        "1. It is right and clear."  # not "... 2.": a list number's dot ends no sentence
    )
    assert fit_rationale(spec, "No sentence ends here at all, and then more words") is None


def test_whatever_fit_rationale_returns_is_accepted_by_the_format() -> None:
    import random

    rng = random.Random(0)
    alphabet = "Aa .!?,x7\tZ"
    for forbid in (False, True):
        spec = FinalLine("R: ", 5, 30, "Score: ", ("1", "2"), forbid_digits=forbid)
        for _ in range(3000):
            line = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 50)))
            r = fit_rationale(spec, line)
            if r is not None:
                assert line.startswith(r)
                assert re.fullmatch(final_line_regex(spec), f"R: {r}\nScore: 2"), (line, r)
