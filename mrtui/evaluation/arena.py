"""Arena-Hard v2.0 as a suite: each answer of the evaluated model against a baseline's answer
to the same question, judged by the fixed judge in both orders.

The baseline (``EvalSettings.baseline``) is the run's M1 (its iteration-1 answers, logged when
iteration 1 is evaluated), the answers Arena-Hard v2.0 ships (o3-mini for hard prompts, Gemini
2.0 Flash for creative writing), or the logged answers of a model named by id, sha256 or
RUN:ITERATION. A verdict's ``first_key``/``second_key`` name the two answers: the evaluated
sample's key and the baseline answer's (a logged sample key, or ``shipped:MODEL/UID``), so
the ``arena_battles`` and ``arena_results`` views (store/views/84_arena.sql) know which
baseline each verdict is against.

:func:`judge_against` is the one way an answer is judged against another answer in both
orders; AlpacaEval's reference answers go through it too (its units keep their keys).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mrtui.loop.progress import Note
from mrtui.store import events as ev

from .settings import BASELINE_M1, BASELINE_SHIPPED, EvalConfigError

if TYPE_CHECKING:
    from mrtui.backends.base import Request
    from mrtui.loop.stages import Finish, StageReport

    from .run import EvalStages, Evaluation

SUITE = "arena_hard"
SHIPPED_KEY = "shipped:"  # shipped:MODEL/UID names a shipped baseline answer in a verdict
_RUN_ITERATION = re.compile(r"^(?P<run>.+):(?P<iteration>\d+)$")
_SHA_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class Battle:
    """An evaluated answer against another answer to the same item: AlpacaEval's reference
    (``other_key`` = ``ev.REFERENCE``) or an Arena-Hard baseline's answer."""

    sample_key: str
    item_key: str
    prompt: str
    response: str
    other_key: str
    other: str


@dataclass(frozen=True)
class Baseline:
    """Whose answers the evaluated answers are compared with. A logged baseline is one
    answer set: the answers of ``model_sha256`` in ``run_id``'s ``iteration``."""

    name: str  # as the user gave it (m1, shipped, a model id, a sha256, RUN:ITERATION)
    model_id: str | None = None  # None: the shipped answers
    model_sha256: str | None = None
    run_id: str | None = None
    iteration: int | None = None

    @property
    def shipped(self) -> bool:
        return self.model_sha256 is None

    def describe(self) -> str:
        if self.shipped:
            return "the answers shipped with Arena-Hard v2.0"
        return f"{self.model_id}'s answers in {self.run_id}:{self.iteration}"


def shipped_key(model: str, item_id: str) -> str:
    return f"{SHIPPED_KEY}{model}/{item_id}"


# -- the baseline ------------------------------------------------------------------------
def resolve_baseline(evaluation: Evaluation, name: str) -> Baseline:
    """The baseline ``name`` stands for: m1, shipped, or a logged arena_hard answer set
    (RUN:ITERATION, a model id, or a sha256 or its 8+ character prefix). A name that matches
    nothing, or several answer sets, is an EvalConfigError saying what to pass."""
    if name == BASELINE_SHIPPED:
        return Baseline(name)
    if name == BASELINE_M1:
        m1 = evaluation.runner.checkpoint_for(1)
        return Baseline(name, m1.model_id, m1.sha256, evaluation.run_id, 1)
    sets = evaluation.log.query(
        "SELECT run_id, iteration, model_id, model_sha256 FROM eval_generations "
        "WHERE suite = ? AND turn = 0 GROUP BY ALL ORDER BY min(seq)",
        [SUITE],
    )
    found = []
    m = _RUN_ITERATION.match(name)
    if m:
        found = [s for s in sets if (s[0], s[1]) == (m["run"], int(m["iteration"]))]
    if not found:
        found = [s for s in sets if s[2] == name]
    if not found and _SHA_PREFIX.match(name):
        found = [s for s in sets if s[3].startswith(name)]
    if len(found) > 1:  # the same model in several runs or iterations: prefer this run's
        found = [s for s in found if s[0] == evaluation.run_id] or found
    logged = ", ".join(f"{s[2]} ({s[0]}:{s[1]}, {s[3][:8]})" for s in sets) or "none"
    if not found:
        raise EvalConfigError(
            f"--baseline {name!r} matches no logged arena_hard answers (logged: {logged}); "
            "evaluate that model on arena_hard first, or pass --baseline m1 or shipped"
        )
    if len(found) > 1:
        named = ", ".join(f"{s[0]}:{s[1]}" for s in found)
        raise EvalConfigError(
            f"--baseline {name!r} matches several arena_hard answer sets ({named}); "
            "name one as RUN:ITERATION"
        )
    run_id, iteration, model_id, sha = found[0]
    return Baseline(name, model_id, sha, run_id, iteration)


def baseline_answers(evaluation: Evaluation, baseline: Baseline) -> dict[str, tuple[str, str]]:
    """Item key -> (answer key, answer text) of the baseline: one answer per item (the
    latest logged, for a logged baseline)."""
    from .run import item_key
    from .settings import SUITE_SETS

    if baseline.shipped:
        from mrtui.datasets.evalsets import arena_hard_baselines

        return {
            item_key(SUITE_SETS[SUITE], uid): (shipped_key(model, uid), text)
            for uid, (model, text) in arena_hard_baselines().items()
        }
    rows = evaluation.log.query(
        "SELECT item_key, sample_key, response FROM eval_generations WHERE suite = ? "
        "AND turn = 0 AND run_id = ? AND iteration = ? AND model_sha256 = ? "
        "AND response IS NOT NULL QUALIFY row_number() OVER "
        "(PARTITION BY item_key ORDER BY sample_index, seq DESC) = 1",
        [SUITE, baseline.run_id, baseline.iteration, baseline.model_sha256],
    )
    return {ik: (sk, text) for ik, sk, text in rows}


# -- judging -----------------------------------------------------------------------------
def judge_against(
    evaluation: Evaluation, judge: EvalStages, suite: str, battles: Sequence[Battle]
) -> StageReport:
    """The judge compares each battle's answer with the other answer in both orders (the
    ``pairwise`` template): units ``suite/pairwise``, one verdict per order, its parent the
    evaluated sample. A reference battle's unit key leaves the reference out (AlpacaEval's
    keys as they always were); any other names the other answer."""
    tpl = judge.templates["pairwise"]
    key = evaluation._judge_keyer(judge, suite, "pairwise")

    def unit_key(b: Battle, order: int) -> str:
        if b.other_key == ev.REFERENCE:
            return key(b.sample_key, order)
        return key(b.sample_key, b.other_key, order)

    planned = [(unit_key(b, order), (b, order)) for b in battles for order in (0, 1)]

    def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
        b, order = args
        judge.about(key, b.sample_key, b.item_key)
        shown = [(b.sample_key, b.response), (b.other_key, b.other)]
        (first, a), (second, b_text) = shown if order == 0 else shown[::-1]
        text = tpl.render(question=b.prompt, response_a=a, response_b=b_text)
        fields = {"suite": suite, "prompt_key": b.item_key}
        fields |= {"first_key": first, "second_key": second}
        return evaluation._verdict(judge, "pairwise", key, b.sample_key, fields, text)

    return judge.execute(f"{suite}/pairwise", planned, build)


def baseline_battles(
    evaluation: Evaluation, judge: EvalStages, model_sha: str, baseline: Baseline
) -> list[Battle]:
    """This iteration's arena_hard answers by ``model_sha``, each against the baseline's
    answer to its item. Every item this evaluation chose must have a baseline answer; if
    some lack one, an EvalConfigError names them and the fix."""
    from .run import items

    answers = baseline_answers(evaluation, baseline)
    chosen = items(SUITE, evaluation.es.limit)
    missing = [item for item in chosen if item.key not in answers]
    if missing:
        limit = f" --limit {evaluation.es.limit}" if evaluation.es.limit else ""
        fix = (
            f"evaluate iteration 1 first (mrtui eval --suite arena_hard --iteration 1{limit})"
            if baseline.name == BASELINE_M1
            else f"evaluate {baseline.run_id}:{baseline.iteration} on them first, or pass "
            "--baseline m1 or shipped"
        )
        raise EvalConfigError(
            f"arena_hard: {len(missing)} of {len(chosen)} questions have no answer from the "
            f"baseline, {baseline.describe()} (e.g. {missing[0].id}); {fix}"
        )
    rows = evaluation.log.query(
        "SELECT sample_key, item_key, prompt, response FROM eval_generations "
        "WHERE run_id = ? AND iteration = ? AND suite = ? AND model_sha256 = ? AND turn = 0 "
        "ORDER BY seq",
        [evaluation.run_id, judge.iteration, SUITE, model_sha],
    )
    return [Battle(sk, ik, q, a or "", *answers[ik]) for sk, ik, q, a in rows if ik in answers]


def against_baseline(
    evaluation: Evaluation, judge: EvalStages, model_sha: str
) -> list[StageReport]:
    """Arena-Hard's verdicts for one iteration: its answers against the baseline's, in both
    orders. A model is not judged against its own answers (iteration 1 against m1): there
    is nothing to judge and its win rate is 50% by definition; a note says so."""
    baseline = resolve_baseline(evaluation, evaluation.es.baseline)
    if baseline.model_sha256 == model_sha:
        evaluation.runner.progress(
            Note(
                f"iteration {judge.iteration}: arena_hard not judged, the model is its own "
                f"baseline ({baseline.describe()}; 50% by definition)"
            )
        )
        return []
    chosen = baseline_battles(evaluation, judge, model_sha, baseline)
    return [judge_against(evaluation, judge, SUITE, chosen)]


__all__ = [
    "SHIPPED_KEY",
    "Baseline",
    "Battle",
    "against_baseline",
    "baseline_answers",
    "baseline_battles",
    "judge_against",
    "resolve_baseline",
    "shipped_key",
]
