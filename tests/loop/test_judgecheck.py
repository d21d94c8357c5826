"""The judge check (mrtui/loop/judgecheck.py) on the fake backend, the shipped labelled set
against IFEval's own checker, and one real run on the tiny llama.cpp model."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends.base import Request, Result, UnsupportedFeature
from mrtui.loop.judgecheck import (
    RATES,
    LabelledPair,
    LabelsError,
    check_judge,
    read_labels,
    shipped_labels,
)
from mrtui.loop.settings import IterationSettings

GOOD = "right"  # a response that says this is better, to the quality backend


def _pairs(n: int = 12) -> list[LabelledPair]:
    return [
        LabelledPair(f"Question {i}?", f"The {GOOD} answer to {i}.", f"An unhelpful reply {i}.")
        for i in range(n)
    ]


class QualityBackend(FakeBackend):
    """A fake judge that knows which response is better (it says ``right``) but prefers the
    one shown first by ``lean`` logits, and answers a choice greedily: at temperature 0 a real
    model writes its most likely choice. ``flat`` makes every score the same (all ties)."""

    def __init__(self, lean: float = 4.0, flat: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.lean = lean
        self.flat = flat
        self.batches: list[list[Request]] = []

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        batch = list(requests)
        self.batches.append(batch)
        return super().generate(batch)

    def choice_probs(self, req: Request) -> dict[str, float]:
        assert req.choices is not None
        content = req.messages[-1].content
        if set(req.choices) == {"A", "B"}:
            a, b = re.search(r"\[Response A\](.*)\[Response B\](.*)", content, re.S).groups()
            d = float(GOOD in a) - float(GOOD in b)
            p_a = 1 / (1 + math.exp(-(d + self.lean)))
            return {"A": p_a, "B": 1 - p_a}
        response = content.split("[Response]", 1)[1]
        centre = 5.0 if self.flat else (4.0 if GOOD in response else 1.5)
        weights = {c: math.exp(-((int(c) - centre) ** 2)) for c in req.choices}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}

    def _answer(self, req: Request) -> str:
        if req.choices and req.params.temperature == 0:
            probs = self.choice_probs(req)
            return max(probs, key=lambda c: probs[c])
        return super()._answer(req)


def _settings(**kw: Any) -> IterationSettings:
    base = {"judge_rationale": False, "pairwise_rationale": False, "judge_temperature": 0.0, "n": 1}
    return IterationSettings(**{**base, **kw})


def test_soft_outcome_cancels_a_constant_first_position_lean() -> None:
    """Greedy verdicts always name the first shown, so their two orders always disagree; the
    probabilities of both orders averaged still put the better response first every time."""
    pairs = _pairs()
    sampled = check_judge(QualityBackend(), pairs, _settings())
    assert sampled.first_preference == 1.0 and sampled.position_consistency == 0.0
    assert sampled.pairwise_accuracy == 0.5  # every pair: one verdict each way, half
    expected = check_judge(QualityBackend(), pairs, _settings(judge_scoring="expected"))
    assert expected.pairwise_accuracy == 1.0
    assert expected.position_consistency == 0.0  # the most likely verdict is still "first"
    assert expected.first_preference is not None and expected.first_preference > 0.9
    for row in expected.pairs:
        assert row["soft"] > 0.5  # mean(P_AB, 1 - P_BA) favours the chosen
        assert row["p_first_ab"] > 0.5 and row["p_first_ba"] > 0.5


def test_expected_scores_rank_and_report_intervals() -> None:
    result = check_judge(QualityBackend(), _pairs(), _settings(judge_scoring="expected"))
    assert result.n == 12 and result.pointwise_accuracy == 1.0 and result.ties == 0.0
    for name in (*RATES, "first_preference"):
        lo, hi = result.intervals[name]
        value = getattr(result, name)
        assert lo is not None and hi is not None and lo <= value <= hi
    assert result.settings["judge_scoring"] == "expected" and result.settings["n"] == 1
    assert result.cost["requests"] == 12 * 4 and result.cost["completion_tokens"] > 0
    assert result.failures == 0 and result.unscored == 0


def test_ties_count_half() -> None:
    result = check_judge(QualityBackend(flat=True), _pairs(8), _settings())
    assert result.ties == 1.0 and result.pointwise_accuracy == 0.5
    assert result.intervals["ties"] == [1.0, 1.0]


def test_requests_go_in_one_batch_plus_one_batch_of_probability_followups() -> None:
    backend = QualityBackend()
    s = _settings(
        judge_scoring="expected", judge_rationale=True, pairwise_rationale=True,
        structured_judging=True, n=2,
    )  # fmt: skip
    result = check_judge(backend, _pairs(5), s)
    # the fake writes structured answers without probabilities: each gets a follow-up
    assert [len(b) for b in backend.batches] == [5 * 6, 5 * 6]
    assert all(r.id.endswith("#probs") and r.choice_probs for r in backend.batches[1])
    assert result.pointwise_accuracy == 1.0 and result.pairwise_accuracy == 1.0
    no_rationale = QualityBackend()
    check_judge(no_rationale, _pairs(5), _settings(judge_scoring="expected", n=2))
    assert [len(b) for b in no_rationale.batches] == [5 * 6]


def test_seeds_follow_the_pair_not_its_place_in_the_file() -> None:
    pairs = _pairs(6)
    s = IterationSettings(judge_temperature=0.8, n=2, seed=7)
    first = check_judge(FakeBackend(), pairs, s)
    again = check_judge(FakeBackend(), list(reversed(pairs)), s)
    assert first.pairs == list(reversed(again.pairs))
    assert first.to_dict() != check_judge(FakeBackend(), pairs, s.with_flat(seed=8)).to_dict()


def test_unparsed_scores_count_half_or_get_the_fallback() -> None:
    pairs = _pairs(10)
    s = IterationSettings(n=1, judge_temperature=0.8)
    plain = check_judge(FakeBackend(unparseable_every=2), pairs, s)
    assert plain.unscored > 0 and plain.errors
    rows = [r for r in plain.pairs if r["chosen_score"] is None or r["rejected_score"] is None]
    assert len(rows) == plain.unscored and all(r["pointwise"] == 0.5 for r in rows)
    rescued = check_judge(FakeBackend(unparseable_every=2), pairs, s.with_flat(judge_fallback=True))
    assert rescued.unscored == 0


def test_failed_requests_are_counted_and_count_half() -> None:
    backend = QualityBackend(fail_ids={"0/pairwise/ab/0", "1/judge/chosen/0"})
    result = check_judge(backend, _pairs(3), _settings())
    assert result.failures == 2 and result.undecided == 1 and result.unscored == 1
    assert result.pairs[1]["pointwise"] == 0.5


def test_expected_scoring_refuses_a_backend_without_choice_probabilities() -> None:
    backend = FakeBackend(unsupported={"choice_probs"})
    with pytest.raises(UnsupportedFeature):
        check_judge(backend, _pairs(2), _settings(judge_scoring="expected"))
    assert backend.calls == []


# -- the labelled file --------------------------------------------------------------------


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ROW = json.dumps({"prompt": "p", "chosen": "good", "rejected": "bad", "score": 3})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((ROW, "{not json"), r"line 2: not valid JSON .*one JSON object"),
        ((ROW, json.dumps({"prompt": "p", "chosen": "c"})), r"line 2: missing 'rejected'"),
        (("[1, 2]",), r"line 1: expected a JSON object .* got a list"),
        ((json.dumps({"prompt": "p", "chosen": 3, "rejected": "r"}),), r"'chosen' must be"),
        ((json.dumps({"prompt": " ", "chosen": "c", "rejected": "r"}),), r"'prompt' is empty"),
        ((json.dumps({"prompt": "p", "chosen": "c", "rejected": "c"}),), r"the same text"),
        (("", "  "), r"holds no labelled pairs"),
    ],
)
def test_bad_label_files_name_the_line_and_the_fix(
    tmp_path: Path, lines: tuple[str, ...], message: str
) -> None:
    with pytest.raises(LabelsError, match=message) as e:
        read_labels(_write(tmp_path, *lines))
    assert "\n" not in str(e.value)


def test_labels_take_trl_conversational_rows_and_a_limit(tmp_path: Path) -> None:
    chat = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
        "chosen": [{"role": "assistant", "content": "Yes."}],
        "rejected": [{"role": "assistant", "content": "No."}],
    }
    pairs = read_labels(_write(tmp_path, json.dumps(chat), ROW, ROW), limit=2)
    assert pairs == [LabelledPair("Q?", "Yes.", "No."), LabelledPair("p", "good", "bad")]
    with pytest.raises(LabelsError, match="not found"):
        read_labels(tmp_path / "missing.jsonl")


def test_shipped_set_is_read_and_mixes_both_sources() -> None:
    rows = [json.loads(line) for line in shipped_labels().read_text().splitlines()]
    pairs = read_labels(shipped_labels())
    assert 48 <= len(pairs) <= 64 and len(pairs) == len(rows)
    assert {r["source"] for r in rows[:4]} == {"bench", "ifeval"}
    assert len({(p.prompt, p.chosen, p.rejected) for p in pairs}) == len(pairs)


def test_shipped_ifeval_pairs_are_verified_by_the_ifeval_checker() -> None:
    pytest.importorskip("langdetect", reason="the IFEval checker needs the eval extra")
    from mrtui.datasets import DatasetError
    from mrtui.datasets.evalsets import eval_set_path
    from mrtui.evaluation.ifeval import check

    try:
        path = eval_set_path("ifeval")
    except DatasetError as exc:
        pytest.skip(str(exc))
    records = {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}
    rows = [json.loads(line) for line in shipped_labels().read_text().splitlines()]
    ifeval = [r for r in rows if r["source"] == "ifeval"]
    assert len(ifeval) >= 24
    for row in ifeval:
        record = records[int(row["id"].removeprefix("ifeval-"))]
        assert row["prompt"] == record["prompt"]
        assert check(record, row["chosen"]).passed_strict is True, row["id"]
        assert check(record, row["rejected"]).passed_strict is False, row["id"]


# -- a real model -------------------------------------------------------------------------


def test_check_on_the_tiny_llama_cpp_model_reads_real_probabilities(tiny_gguf: Path) -> None:
    """The random tiny model's verdicts carry no signal, but its probabilities are real:
    neither uniform (all-zero logits) nor identical in both orders."""
    pytest.importorskip("llama_cpp")
    from mrtui.backends.llamacpp import LlamaCppBackend

    pairs = read_labels(shipped_labels(), limit=3)
    with LlamaCppBackend(str(tiny_gguf), n_ctx=2048) as backend:
        result = check_judge(backend, pairs, _settings(judge_scoring="expected", n=2))
    assert result.n == 3 and result.failures == 0 and result.unscored == 0
    p = [v for row in result.pairs for v in (row["p_first_ab"], row["p_first_ba"])]
    assert all(0 < v < 1 for v in p) and len({round(v, 6) for v in p}) > 1
    assert all(v != 0.5 for v in p)
    scores = [row["chosen_score"] for row in result.pairs]
    assert all(0 <= s <= 5 for s in scores)
    assert result.cost["wall_s"] > 0
