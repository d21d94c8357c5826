"""The loop's stages, one entry each: what every other place reads a stage's name through.

A stage (actor, judge, meta, pairwise) is one :class:`StageSpec` in :data:`STAGE_TABLE`: the
prefix of its unit keys, its template (the setting naming it, the placeholders it needs, the
role it is registered under), the event its units log and the view they are read through, the
settings it samples with, and for a judge-like stage its :class:`AnswerKind` (the final line
its answer ends in, and the scoring and rationale settings that read it). :func:`stage_spec`
looks a name up and names the known ones when it is not one. Adding a stage kind means one
entry here plus its template, event, view and ``Stages`` method (docs/architecture.md,
"Adding a stage").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from mrtui.backends.choice_probs import most_likely
from mrtui.store import events as ev

from .prompts import Template, load_template
from .settings import IterationSettings

SCORE_CHOICES = tuple(str(i) for i in range(6))
WINNER_CHOICES = ("A", "B")
SCORE_LEAD = "Score: "
WINNER_LEAD = "Winner: Judgment "
RESPONSE_WINNER_LEAD = "Winner: Response "


@dataclass(frozen=True)
class AnswerKind:
    """What a judge-like answer is: its event, the field its final line fills, the final
    line's lead and choices, how a choice becomes a value, and the settings that read it.
    The loop's kinds are the ``answer`` of their :class:`StageSpec`; the evaluation makes its
    own (its stage names are ``suite/step``)."""

    stage: str  # the stage it answers for: "judge", "meta", "pairwise" (or an evaluation step)
    record: type[ev.EventRecord]
    value_field: str  # "score" or "winner"
    lead: str
    choices: tuple[str, ...]
    cast: Callable[[str], Any]
    form: str  # the final line's form for prompts.rationale_words / before_final_line
    role: str  # whose sampling settings it uses: "judge" (judge_temperature, ...) or "meta"
    scoring_setting: str = "judge_scoring"  # the setting: 'sampled' or 'expected'
    rationale_setting: str = "judge_rationale"  # the setting: reason before the final line

    def scoring(self, s: IterationSettings) -> str:
        """'sampled' or 'expected', as ``s`` sets it for this kind."""
        value: str = getattr(s, self.scoring_setting)
        return value

    def reasons(self, s: IterationSettings) -> bool:
        """Whether the answer reasons before its final line, as ``s`` sets it."""
        return bool(getattr(s, self.rationale_setting))

    def from_probs(self, probs: Mapping[str, float], sampled: Any) -> dict[str, Any]:
        """The event's value fields under expected scoring: a score is Σ s·p(s); a winner is
        the more likely one, with P(the first shown is better)."""
        if self.value_field == "score":
            return {"score": sum(int(c) * p for c, p in probs.items()), "sampled_score": sampled}
        return {"winner": most_likely(probs), "p_first": probs["A"]}


JUDGE = AnswerKind(
    "judge", ev.JudgementRecorded, "score", SCORE_LEAD, SCORE_CHOICES, int, "score", "judge"
)
META = AnswerKind(
    "meta", ev.MetaVerdictRecorded, "winner", WINNER_LEAD, WINNER_CHOICES, str, "winner", "meta",
    scoring_setting="meta_scoring",
)  # fmt: skip
# The judge comparing two responses to one prompt: pairwise actor judging, and the judge
# check's pairwise accuracy. It samples and scores with the judge's settings.
PAIRWISE = AnswerKind(
    "pairwise", ev.ResponsesCompared, "winner", RESPONSE_WINNER_LEAD, WINNER_CHOICES, str,
    "response-winner", "judge", rationale_setting="pairwise_rationale",
)  # fmt: skip


def _always(s: IterationSettings) -> bool:
    return True


@dataclass(frozen=True)
class StageSpec:
    """One stage of an iteration, and every name it goes by."""

    name: str  # StageStarted.stage, progress, Stages.unit_keys(name): "actor", "judge", ...
    key_prefix: str  # its unit keys' prefix: changing it would orphan every logged unit
    label: str  # how messages name it ("meta-judge")
    template_role: str  # its key in Stages.templates and its TemplateRegistered.role
    template_setting: str  # the IterationSettings field naming its template
    template_fields: frozenset[str]  # the placeholders its template must contain
    record: type[ev.EventRecord]  # the event each of its units logs
    view: str  # the public view its units are read through
    view_key: str  # that view's column holding a unit's key
    sampling: str  # the prefix of its settings {sampling}_temperature, _top_p, _max_tokens
    fallback: str | None  # the setting turning on the one-token fallback, if it has one
    answer: AnswerKind | None  # the final line a judge-like answer ends in; None: free text
    cost_role: str  # its role in the role_costs view (mrtui.loop.report.COST_ROLES)
    used: Callable[[IterationSettings], bool] = _always  # whether a run with s has it at all

    def __post_init__(self) -> None:
        a = self.answer
        if a is not None and (a.stage, a.record, a.role) != (self.name, self.record, self.sampling):
            raise ValueError(f"stage {self.name!r}: its answer kind disagrees with its entry")

    @property
    def default_template(self) -> str:
        """The built-in template it uses unless the settings name another."""
        return str(_SETTINGS[self.template_setting].default)

    def template_name(self, s: IterationSettings) -> str:
        """The template ``s`` names for it: a built-in name or a path."""
        name: str = getattr(s, self.template_setting)
        return name

    def load_template(self, s: IterationSettings) -> Template:
        """Its template as ``s`` names it, checked for the placeholders it needs."""
        return load_template(
            self.template_name(s), role=self.label, required=set(self.template_fields)
        )

    def sampling_settings(self, s: IterationSettings) -> tuple[float, float, int]:
        """Its (temperature, top_p, max_tokens) in ``s``."""
        return (
            getattr(s, f"{self.sampling}_temperature"),
            getattr(s, f"{self.sampling}_top_p"),
            getattr(s, f"{self.sampling}_max_tokens"),
        )

    def fallback_on(self, s: IterationSettings) -> bool:
        """Whether ``s`` turns its one-token fallback on (never for the actor)."""
        return self.fallback is not None and bool(getattr(s, self.fallback))

    def settings_read(self) -> tuple[str, ...]:
        """Every IterationSettings field it reads (the table test checks they exist)."""
        names = [self.template_setting]
        names += [f"{self.sampling}_{x}" for x in ("temperature", "top_p", "max_tokens")]
        if self.fallback is not None:
            names.append(self.fallback)
        if self.answer is not None:
            names += [self.answer.scoring_setting, self.answer.rationale_setting]
        return tuple(names)


_SETTINGS = {f.name: f for f in fields(IterationSettings)}

STAGE_TABLE: tuple[StageSpec, ...] = (
    StageSpec(
        name="actor",
        key_prefix="resp",
        label="actor",
        template_role="actor",
        template_setting="actor_template",
        template_fields=frozenset({"prompt"}),
        record=ev.ResponseGenerated,
        view="responses",
        view_key="response_key",
        sampling="actor",
        fallback=None,
        answer=None,
        cost_role="actor",
    ),
    StageSpec(
        name="judge",
        key_prefix="judg",
        label="judge",
        template_role="judge",
        template_setting="judge_template",
        template_fields=frozenset({"question", "response"}),
        record=ev.JudgementRecorded,
        view="judgements",
        view_key="judgement_key",
        sampling="judge",
        fallback="judge_fallback",
        answer=JUDGE,
        cost_role="judge",
    ),
    StageSpec(
        name="meta",
        key_prefix="meta",
        label="meta-judge",
        template_role="meta_judge",
        template_setting="meta_template",
        template_fields=frozenset({"question", "response", "judgement_a", "judgement_b"}),
        record=ev.MetaVerdictRecorded,
        view="meta_verdicts",
        view_key="verdict_key",
        sampling="meta",
        fallback="meta_fallback",
        answer=META,
        cost_role="meta_judge",
    ),
    StageSpec(
        name="pairwise",
        key_prefix="cmp",
        label="pairwise",
        template_role="pairwise",
        template_setting="pairwise_template",
        template_fields=frozenset({"question", "response_a", "response_b"}),
        record=ev.ResponsesCompared,
        view="response_comparisons",
        view_key="comparison_key",
        sampling="judge",
        fallback="judge_fallback",
        answer=PAIRWISE,
        cost_role="judge",
        used=lambda s: s.actor_judging == "pairwise",
    ),
)
STAGES: dict[str, StageSpec] = {spec.name: spec for spec in STAGE_TABLE}
KINDS: dict[str, AnswerKind] = {
    spec.name: spec.answer for spec in STAGE_TABLE if spec.answer is not None
}


class UnknownStage(KeyError):
    """A stage name that is not in :data:`STAGE_TABLE`."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0])


def stage_spec(name: str) -> StageSpec:
    """The entry of stage ``name``; an unknown name fails naming the known ones."""
    try:
        return STAGES[name]
    except KeyError:
        raise UnknownStage(f"unknown stage {name!r}; the stages are {', '.join(STAGES)}") from None


def answer_kind(name: str) -> AnswerKind:
    """The answer kind of judge-like stage ``name``; the actor (free text) has none."""
    kind = stage_spec(name).answer
    if kind is None:
        raise UnknownStage(
            f"stage {name!r} answers in free text; the judge-like stages are {', '.join(KINDS)}"
        )
    return kind
