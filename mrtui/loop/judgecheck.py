"""The judge check: how often a judge, with a run's judge settings, prefers the better response.

A labelled pair is a prompt with a ``chosen`` (better) and a ``rejected`` response, as in
TRL's preference datasets. The check asks the judge in two ways:

* **pointwise**: each response is judged ``settings.n`` times with the judge template; its
  score is the mean of its valid scores (the number the final line names, or Σ s·p(s) under
  ``judge_scoring = "expected"``). The pair is right when score(chosen) > score(rejected);
  a tie, or a side without a valid score, counts half.
* **pairwise**: the judge compares the two responses with the ``eval_pairwise`` template,
  once with the chosen shown first (order AB) and once with it shown second (order BA).
  Sampled: each order gives a verdict; two verdicts that agree decide the pair, two that
  disagree count half, and an order without a verdict leaves the other to decide.
  Expected: each order gives P(the first shown is better); the soft outcome
  mean(P_AB, 1 − P_BA) is the probability that the chosen is better, with a constant
  preference for the first position cancelled; the pair is right when it is above 0.5,
  half at exactly 0.5.

It also reports position consistency (the share of pairs whose two orders pick the same
response), the preference for the first shown (the share of verdicts for it, or its mean
probability), the share of tied pointwise pairs and the cost. Every rate comes with a 95%
percentile bootstrap interval over the pairs (:func:`mrtui.store.evalstats.bootstrap`).

Requests are built by the loop's own functions (:func:`~mrtui.loop.stages.answer_request`,
:func:`~mrtui.loop.stages.probs_request`), so the check measures exactly the judging a run
with the same settings does. All of a check's requests go to the backend as one batch,
then one batch of follow-ups (choice probabilities, or sampled scoring's fallback).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrtui.backends.base import (
    CHOICE_PROBS,
    Completion,
    Failure,
    InferenceBackend,
    Request,
)
from mrtui.jsonl import read_jsonl
from mrtui.store import canonical_json
from mrtui.store.events import TIE

from .progress import ProgressSink, StageBegan, StageEnded, UnitsDone, ignore
from .prompts import (
    RESPONSE_WINNER_LINE,
    Template,
    before_final_line,
    parse_score,
    parse_winner,
)
from .settings import ConfigError, IterationSettings
from .stage_table import stage_spec
from .stages import (
    JUDGE,
    PAIRWISE,
    AnswerKind,
    answer_request,
    fallback_request,
    probs_request,
    scoring_of,
    unit_params,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

LABEL_KEYS = ("prompt", "chosen", "rejected")
SHIPPED_LABELS = ("judge_check", "preferences.jsonl")  # inside mrtui.assets
# The settings that decide how the check judges (what its report calls "settings").
JUDGE_SETTINGS = (
    "judge_scoring",
    "judge_rationale",
    "structured_judging",
    "n",
    "judge_temperature",
    "judge_top_p",
    "judge_max_tokens",
    "judge_fallback",
    "score_decimals",
    "rationale_max_chars",
    "seed",
    "judge_template",
    "pairwise_rationale",
    "pairwise_template",
)
RATES = ("pointwise_accuracy", "pairwise_accuracy", "position_consistency", "ties")
_EXAMPLE = '{"prompt": "...", "chosen": "...", "rejected": "..."}'
_SAME = 1e-9  # two expected scores closer than this are a tie


class LabelsError(ConfigError):
    """A labelled-pairs file cannot be used; the message names the line and the fix."""


@dataclass(frozen=True)
class LabelledPair:
    """A prompt with a better (``chosen``) and a worse (``rejected``) response."""

    prompt: str
    chosen: str
    rejected: str

    @property
    def digest(self) -> str:
        """A content hash: a pair's seeds depend on what it says, not where it is in a file."""
        content = canonical_json([self.prompt, self.chosen, self.rejected])
        return hashlib.sha256(content.encode()).hexdigest()[:16]


def shipped_labels() -> Traversable:
    """The labelled set shipped with mrtui (assets/judge_check/preferences.jsonl)."""
    from importlib import resources

    return resources.files("mrtui.assets").joinpath(*SHIPPED_LABELS)


def read_labels(source: Path | Traversable, limit: int | None = None) -> list[LabelledPair]:
    """The pairs of a JSONL file in TRL's preference format, one ``{"prompt", "chosen",
    "rejected"}`` object a line (other keys are ignored; blank lines are skipped). Values are
    strings, or TRL's conversational form (lists of ``{"role", "content"}`` messages: the last
    user message is the prompt, the last assistant message the response). ``limit`` keeps the
    first pairs. Raises :class:`LabelsError` naming the line and the fix."""
    name = str(source)
    lines = read_jsonl(source, what="labels file", example=_EXAMPLE, error=LabelsError)
    pairs = [_pair(row, f"{name} line {number}") for number, row in lines]
    if not pairs:
        raise LabelsError(
            f"{name} holds no labelled pairs; write one JSON object a line, e.g. {_EXAMPLE}"
        )
    if limit is not None:
        if limit < 1:
            raise LabelsError(f"--limit must be at least 1, got {limit}")
        pairs = pairs[:limit]
    return pairs


def _pair(row: Any, where: str) -> LabelledPair:
    if not isinstance(row, dict):
        raise LabelsError(
            f"{where}: expected a JSON object with prompt, chosen and rejected, got a "
            f"{type(row).__name__}; write each pair as {_EXAMPLE}"
        )
    missing = [k for k in LABEL_KEYS if k not in row]
    if missing:
        raise LabelsError(
            f"{where}: missing {', '.join(repr(k) for k in missing)}; each line needs prompt, "
            f"chosen and rejected, e.g. {_EXAMPLE}"
        )
    prompt, chosen, rejected = (_text(row[k], k, where) for k in LABEL_KEYS)
    if chosen == rejected:
        raise LabelsError(f"{where}: chosen and rejected are the same text; drop the line")
    return LabelledPair(prompt, chosen, rejected)


def _text(value: Any, key: str, where: str) -> str:
    if isinstance(value, list):  # TRL's conversational form
        role = "user" if key == "prompt" else "assistant"
        said = [
            m.get("content")
            for m in value
            if isinstance(m, dict) and m.get("role") == role and isinstance(m.get("content"), str)
        ]
        if not said:
            raise LabelsError(
                f"{where}: {key!r} is a list without a {role} message; give a string or "
                f'messages such as [{{"role": "{role}", "content": "..."}}]'
            )
        value = said[-1]
    if not isinstance(value, str):
        raise LabelsError(
            f"{where}: {key!r} must be a string (or a list of chat messages), got "
            f"{type(value).__name__}"
        )
    if not value.strip():
        raise LabelsError(f"{where}: {key!r} is empty; every pair needs some text in it")
    return value


# -- the check ----------------------------------------------------------------------------


@dataclass
class _Unit:
    """One judgement the check asks for: pointwise (``side`` chosen/rejected) or pairwise
    (``side`` ab: the chosen shown first, ba: the rejected shown first)."""

    pair: int
    kind: AnswerKind
    side: str
    request: Request
    value: float | None = None  # a score, or P(first shown is better) (1 or 0 when sampled)
    error: str | None = None


@dataclass(frozen=True)
class JudgeCheck:
    """What :func:`check_judge` measured. Rates are shares of ``n`` pairs; ``intervals``
    holds each rate's 95% bootstrap interval [lo, hi] (None without data)."""

    n: int
    pointwise_accuracy: float | None
    pairwise_accuracy: float | None
    position_consistency: float | None
    ties: float | None
    first_preference: float | None  # verdicts for the first shown (share, or mean P)
    intervals: dict[str, list[float | None]]
    settings: dict[str, Any]
    cost: dict[str, float | int]
    unscored: int  # pairs with a side that got no valid score (counted half)
    undecided: int  # pairs with an order that gave no verdict
    failures: int  # requests the backend failed
    errors: list[str] = field(default_factory=list)  # the first few failures and parse errors
    pairs: list[dict[str, Any]] = field(default_factory=list)  # per pair: scores, P, outcomes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_templates(settings: IterationSettings) -> dict[str, Template]:
    """The run's judge template and its pairwise comparison template (``pairwise_template``)."""
    return {name: stage_spec(name).load_template(settings) for name in ("judge", "pairwise")}


def check_judge(
    backend: InferenceBackend,
    pairs: Sequence[LabelledPair],
    settings: IterationSettings,
    templates: Mapping[str, Template] | None = None,
    *,
    progress: ProgressSink = ignore,
    iteration: int = 0,
) -> JudgeCheck:
    """Judge every labelled pair pointwise and pairwise with ``settings`` (see the module
    docstring) and measure how often the judge prefers the chosen response. Progress is
    reported as stage "judge check" of ``iteration`` (0 outside a run)."""
    if not pairs:
        raise LabelsError("no labelled pairs to check")
    tpl = dict(templates) if templates is not None else default_templates(settings)
    expected = scoring_of(settings, JUDGE.stage) == "expected"
    if expected:
        backend.require([CHOICE_PROBS])
    units = _plan(pairs, settings, tpl)
    total = len(units)
    progress(StageBegan(iteration, "judge check", total, 0))
    t0 = time.perf_counter()
    cost = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
    errors: list[str] = []
    failures = 0
    by_id = {u.request.id: u for u in units}
    followups: list[Request] = []
    for result in _results(backend, [u.request for u in units], cost):
        unit = by_id[result.request_id]
        if isinstance(result, Failure):
            failures += 1
            unit.error = result.error
        else:
            follow = _take(unit, result, settings, expected)
            if follow is not None:
                followups.append(follow)
                continue
        _note(unit, errors)
        progress(UnitsDone(iteration, "judge check", failed=unit.value is None))
    for result in _results(backend, followups, cost):
        unit = by_id[result.request_id.split("#", 1)[0]]
        if isinstance(result, Failure):
            failures += 1
            unit.error = result.error
        else:
            _take_followup(unit, result, expected)
        _note(unit, errors)
        progress(UnitsDone(iteration, "judge check", failed=unit.value is None))
    wall = time.perf_counter() - t0
    progress(StageEnded(iteration, "judge check", total, failures, wall, cost["completion_tokens"]))
    return _measure(pairs, units, settings, tpl, {"wall_s": round(wall, 3), **cost}, errors,
                    failures)  # fmt: skip


def _plan(
    pairs: Sequence[LabelledPair], s: IterationSettings, tpl: Mapping[str, Template]
) -> list[_Unit]:
    """Every unit, pointwise ones first (a response's n judgements back to back, so a backend
    can reuse their shared prompt), then the pairwise comparisons in both orders."""
    units: list[_Unit] = []
    for i, p in enumerate(pairs):
        for side, response in (("chosen", p.chosen), ("rejected", p.rejected)):
            text = tpl["judge"].render(question=p.prompt, response=response)
            for j in range(s.n):
                units.append(_unit(i, JUDGE, side, j, text, p, s))
    for i, p in enumerate(pairs):
        for side, (a, b) in (("ab", (p.chosen, p.rejected)), ("ba", (p.rejected, p.chosen))):
            text = tpl["pairwise"].render(question=p.prompt, response_a=a, response_b=b)
            units.append(_unit(i, PAIRWISE, side, 0, text, p, s))
    return units


def _unit(
    i: int, kind: AnswerKind, side: str, j: int, text: str, p: LabelledPair, s: IterationSettings
) -> _Unit:
    key = (
        "check:"
        + hashlib.sha256(canonical_json([p.digest, kind.stage, side, j]).encode()).hexdigest()[:32]
    )
    params = unit_params(s, kind.stage, key)
    request = answer_request(kind, s, f"{i}/{kind.stage}/{side}/{j}", text, params)
    return _Unit(i, kind, side, request)


def _results(
    backend: InferenceBackend, requests: list[Request], cost: dict[str, int]
) -> Iterable[Completion | Failure]:
    if not requests:
        return
    cost["requests"] += len(requests)
    stream = backend.generate(requests)
    try:
        for result in stream:
            if isinstance(result, Completion):
                cost["prompt_tokens"] += result.prompt_tokens
                cost["completion_tokens"] += result.completion_tokens
            yield result
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _parse(kind: AnswerKind, text: str, s: IterationSettings) -> tuple[float | None, str | None]:
    """A sampled answer's value: the score, or 1.0 / 0.0 for a verdict for the first / second
    shown; None and why when it names none (a pairwise 'tie' is no verdict)."""
    if kind is JUDGE:
        parsed = parse_score(text, decimals=s.score_decimals)
        return (None, parsed.error) if parsed.value is None else (float(parsed.value), None)
    parsed = parse_winner(text, RESPONSE_WINNER_LINE)
    if parsed.value is None:
        return None, parsed.error
    return (1.0 if parsed.value == "A" else 0.0), None


def _from_probs(kind: AnswerKind, c: Completion) -> tuple[float | None, str | None]:
    if c.choice_probs is None:
        return None, "the backend returned no choice probabilities"
    values = kind.from_probs(dict(c.choice_probs), None)
    return float(values["score"] if kind is JUDGE else values["p_first"]), None


def _take(unit: _Unit, c: Completion, s: IterationSettings, expected: bool) -> Request | None:
    """Read a first answer into ``unit``, or return the follow-up request it needs."""
    kind, request = unit.kind, unit.request
    if request.choices is not None:  # no rationale: the answer is the choice itself
        if expected:
            unit.value, unit.error = _from_probs(kind, c)
        else:
            unit.value, unit.error = _parse(kind, kind.lead + c.text, s)
        return None
    if expected:
        if c.choice_probs is not None:
            unit.value, unit.error = _from_probs(kind, c)
            return None
        return probs_request(request, before_final_line(c.text, kind.form), kind)
    unit.value, unit.error = _parse(kind, c.text, s)
    if unit.value is None and unit.error != TIE and s.judge_fallback:
        return fallback_request(request, c.text, kind.lead, kind.choices)
    return None


def _take_followup(unit: _Unit, c: Completion, expected: bool) -> None:
    if expected:
        unit.value, unit.error = _from_probs(unit.kind, c)
        return
    choice = c.text.strip()  # sampled scoring's fallback: one constrained choice
    if choice not in unit.kind.choices:
        unit.value, unit.error = None, f"fallback gave {choice!r}"
    elif unit.kind is JUDGE:
        unit.value, unit.error = float(choice), None
    else:
        unit.value, unit.error = (1.0 if choice == "A" else 0.0), None


def _note(unit: _Unit, errors: list[str]) -> None:
    if unit.value is None and unit.error and len(errors) < 5:
        errors.append(f"{unit.request.id}: {unit.error}")


def _measure(
    pairs: Sequence[LabelledPair],
    units: Sequence[_Unit],
    s: IterationSettings,
    tpl: Mapping[str, Template],
    cost: dict[str, Any],
    errors: list[str],
    failures: int,
) -> JudgeCheck:
    from mrtui.store.evalstats import bootstrap

    scores: list[dict[str, list[float]]] = [{"chosen": [], "rejected": []} for _ in pairs]
    p_first: list[dict[str, float | None]] = [{"ab": None, "ba": None} for _ in pairs]
    for u in units:
        if u.kind is JUDGE:
            if u.value is not None:
                scores[u.pair][u.side].append(u.value)
        else:
            p_first[u.pair][u.side] = u.value
    point, tie, pair_y, consistent, first, details = [], [], [], [], [], []
    unscored = undecided = 0
    for i in range(len(pairs)):
        c = _mean(scores[i]["chosen"])
        r = _mean(scores[i]["rejected"])
        tied = c is not None and r is not None and math.isclose(c, r, abs_tol=_SAME)
        if c is None or r is None:
            unscored += 1
            point.append(0.5)
        else:
            point.append(0.5 if tied else float(c > r))
        tie.append(float(tied))
        ab, ba = p_first[i]["ab"], p_first[i]["ba"]
        if ab is None or ba is None:
            undecided += 1
        # P(chosen better) from each order; a missing verdict is no information (0.5)
        soft = (_or_half(ab) + 1.0 - _or_half(ba)) / 2
        pair_y.append(0.5 if soft == 0.5 else float(soft > 0.5))
        # both orders pick the same response: the first shown in one, the second in the other
        consistent.append(float(ab is not None and ba is not None and (ab - 0.5) * (ba - 0.5) < 0))
        shown = [v for v in (ab, ba) if v is not None]
        if shown:
            first.append(sum(shown) / len(shown))
        details.append(
            {
                "chosen_score": c,
                "rejected_score": r,
                "p_first_ab": ab,
                "p_first_ba": ba,
                "pointwise": point[-1],
                "pairwise": pair_y[-1],
                "soft": soft,
            }
        )
    rates = {
        "pointwise_accuracy": point,
        "pairwise_accuracy": pair_y,
        "position_consistency": consistent,
        "ties": tie,
        "first_preference": first,
    }
    values: dict[str, float | None] = {}
    intervals: dict[str, list[float | None]] = {}
    for name, y in rates.items():
        value, lo, hi = bootstrap("mean", y)
        values[name] = value
        intervals[name] = [lo, hi]
    used = {k: getattr(s, k) for k in JUDGE_SETTINGS}
    used.update(judge_template_sha256=tpl["judge"].sha256, pairwise_template=tpl["pairwise"].name)
    return JudgeCheck(
        n=len(pairs),
        **values,
        intervals=intervals,
        settings=used,
        cost=cost,
        unscored=unscored,
        undecided=undecided,
        failures=failures,
        errors=errors,
        pairs=details,
    )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _or_half(p: float | None) -> float:
    return 0.5 if p is None else p


__all__ = [
    "JUDGE_SETTINGS",
    "RATES",
    "JudgeCheck",
    "LabelledPair",
    "LabelsError",
    "check_judge",
    "default_templates",
    "read_labels",
    "shipped_labels",
]
