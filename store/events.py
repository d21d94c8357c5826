"""Every event type, defined once: its name, payload fields with their types, version, and the
payload fields copied into typed columns of ``events`` at append time.

Writers build events from these records (``record.event(run_id, ...)``); the views read the
typed columns; ``tests/store/test_events_schema.py`` checks that every payload field a view
reads is a field of a record and that the table's typed columns are the ones declared here.

Event types are named in the past tense. A unit of work (one response, one judgement, one
meta-verdict, ...) is complete when an event with its ``key`` is in the log; events that are
not units of work (a failure, a stage boundary) have ``key = None``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

# -- typed columns of ``events`` (migration 0002), filled from payload fields at append time --
TYPED_COLUMNS: dict[str, str] = {
    "prompt_key": "VARCHAR",
    "item_index": "INTEGER",
    "score": "DOUBLE",
    "winner": "VARCHAR",
    "first_key": "VARCHAR",
    "second_key": "VARCHAR",
    "parse_error": "VARCHAR",
    "fallback_used": "BOOLEAN",
    "prompt_tokens": "INTEGER",
    "completion_tokens": "INTEGER",
    "prompt_tokens_evaluated": "INTEGER",
    "finish_reason": "VARCHAR",
    "model_sha256": "VARCHAR",
    "template_sha256": "VARCHAR",
    "text_chars": "INTEGER",  # length of ``text`` (every event that has text)
    "rationale_words": "INTEGER",  # schema 3: judgement and verdict events (v2)
    # schema 4: probability scoring (judge_scoring / meta_scoring = "expected")
    "scoring": "VARCHAR",  # judgement, verdict and comparison events
    "choice_mass": "DOUBLE",  # judgement, verdict and comparison events
    "sampled_score": "DOUBLE",  # judgements
    "choice_probs": "MAP(VARCHAR, DOUBLE)",  # judgements (keys in sorted order, as in payload)
    "p_first": "DOUBLE",  # verdicts and comparisons
    # schema 5: what iterations and templates are read by, so reading them (every pair view
    # does, several times) never touches the payloads of the log's other events
    "settings": "JSON",  # IterationStarted (canonical JSON)
    "model_id": "VARCHAR",  # IterationStarted (model.model_id)
    "segments": "VARCHAR[]",  # TemplateRegistered
}

# The meta-judge parser's error for a verdict that names no single winner (a tie): not a
# parse failure, a decided draw (r = 0).
TIE = "tie"

# A rationale of fewer words than this is no rationale: a bare final line, a stray word, a
# copied rubric line. The default of the ``min_rationale_words`` setting and the bound of the
# "no rationale" health alarm (store/health.py).
SENTENCE_WORDS = 3


R = TypeVar("R", bound="EventRecord")


class EventRecord:
    """Base of every event record: a frozen dataclass whose fields are the payload."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    # payload field -> typed column; "parent_key" as a source copies the envelope's parent_key,
    # "field.key" a key of a dict field
    COLUMNS: ClassVar[dict[str, str]] = {}

    def payload(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_if_none"):
                continue  # an optional field added later: absent rather than null
            out[f.name] = value
        return out

    def event(
        self,
        run_id: str,
        *,
        iteration: int | None = None,
        key: str | None = None,
        parent_key: str | None = None,
        text: str | None = None,
    ) -> NewEvent:
        return NewEvent(
            self.TYPE,
            run_id,
            self.payload(),
            iteration=iteration,
            key=key,
            parent_key=parent_key,
            text=text,
            event_version=self.VERSION,
        )


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What every generation event carries about how it was made."""

    model_id: str
    model_sha256: str | None
    backend: str
    backend_version: str
    template: str
    template_sha256: str
    sampling: dict[str, Any]
    seed: int | None
    wall_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_evaluated: int | None = None
    finish_reason: str | None = None
    # Remote backends (openai): the server that answered and the model it reported running.
    endpoint: str | None = field(default=None, metadata={"omit_if_none": True})
    served_model: str | None = field(default=None, metadata={"omit_if_none": True})


_PROVENANCE_COLUMNS = {
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "prompt_tokens_evaluated": "prompt_tokens_evaluated",
    "finish_reason": "finish_reason",
    "model_sha256": "model_sha256",
    "template_sha256": "template_sha256",
}

# -- run and iteration lifecycle ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunConfigured(EventRecord):
    TYPE = "RunConfigured"
    model: str
    model_sha256: str
    backend: str
    backend_options: dict[str, Any]
    iterations: int
    defaults: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    mrtui_version: str
    evaluation: dict[str, Any] | None = None  # EvalSettings after each iteration, if asked
    # The model as resolved (backends/model_ref.py): "hf" or "gguf", where it came from
    # (packaged:NAME, hub:OWNER/REPO, local) and a GGUF's file type (Q4_K_M). Absent in logs
    # written before mrtui took HF folders.
    model_format: str | None = field(default=None, metadata={"omit_if_none": True})
    model_origin: str | None = field(default=None, metadata={"omit_if_none": True})
    model_quantization: str | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True, kw_only=True)
class PromptAdded(EventRecord):
    TYPE = "PromptAdded"
    index: int
    source_id: str | None
    source: str


@dataclass(frozen=True, kw_only=True)
class PromptsDrawn(EventRecord):
    """The prompts an iteration draws from the run's pool (``prompts_per_iteration`` > 0).
    Logged once when the iteration starts; a resume reuses it, so the slice never changes."""

    TYPE = "PromptsDrawn"
    prompt_keys: list[str]
    pool_size: int  # prompts in the run's pool when the slice was drawn
    disjoint: bool  # drawn only from prompts no earlier iteration drew


@dataclass(frozen=True, kw_only=True)
class TemplateRegistered(EventRecord):
    TYPE = "TemplateRegistered"
    COLUMNS: ClassVar[dict[str, str]] = {"sha256": "template_sha256", "segments": "segments"}
    name: str
    role: str
    sha256: str
    segments: list[str]


@dataclass(frozen=True, kw_only=True)
class IterationStarted(EventRecord):
    TYPE = "IterationStarted"
    COLUMNS: ClassVar[dict[str, str]] = {
        "settings": "settings",
        "model.model_id": "model_id",  # a field of a dict field: "field.key"
        "model.model_sha256": "model_sha256",
    }
    settings: dict[str, Any]
    model: dict[str, Any]  # model_id, model_sha256, backend


@dataclass(frozen=True, kw_only=True)
class StageStarted(EventRecord):
    TYPE = "StageStarted"
    stage: str
    planned: int
    todo: int


@dataclass(frozen=True, kw_only=True)
class StageFinished(EventRecord):
    TYPE = "StageFinished"
    stage: str
    planned: int
    skipped: int
    done: int
    failed: int
    wall_s: float
    completion_tokens: int
    stopped: bool = False


@dataclass(frozen=True, kw_only=True)
class IterationFinished(EventRecord):
    TYPE = "IterationFinished"
    stages: dict[str, dict[str, int]]
    trained: bool


@dataclass(frozen=True, kw_only=True)
class SessionStarted(EventRecord):
    """A process began work on a run (a first start or a resume): ``command`` is "run",
    "eval" or "train"; ``started_at`` (epoch seconds) is when the process started, so the
    time to this event is its start-up (imports, model resolution), and the time from the
    run's previous event to ``started_at`` is idle (view ``role_costs``)."""

    TYPE = "SessionStarted"
    command: str
    started_at: float
    pid: int
    host: str
    mrtui_version: str


# -- units of work produced by the model -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ResponseGenerated(Provenance, EventRecord):
    TYPE = "ResponseGenerated"
    COLUMNS: ClassVar[dict[str, str]] = {
        "parent_key": "prompt_key",
        "sample_index": "item_index",
        **_PROVENANCE_COLUMNS,
    }
    sample_index: int


@dataclass(frozen=True, kw_only=True)
class Answer(Provenance):
    """What a judgement and a meta-verdict share: how their final line was read."""

    parse_error: str | None
    fallback_used: bool
    fallback: dict[str, Any] | None = None
    # v2: whether constrained decoding forced "rationale, then the final line" (and its spec),
    # and the rationale's words (see mrtui.loop.prompts.rationale_words); None in v1 events.
    structure: dict[str, Any] | None = None
    rationale_words: int | None = None
    # Probability scoring (settings judge_scoring / meta_scoring = "expected"): the model's
    # probability of each choice of the final line (backends/choice_probs.py), their mass before
    # normalising, and "expected" as the scoring that made the value. Omitted when sampled.
    choice_probs: dict[str, float] | None = field(default=None, metadata={"omit_if_none": True})
    choice_mass: float | None = field(default=None, metadata={"omit_if_none": True})
    scoring: str | None = field(default=None, metadata={"omit_if_none": True})


_ANSWER_COLUMNS = {
    "prompt_key": "prompt_key",
    "parse_error": "parse_error",
    "fallback_used": "fallback_used",
    "rationale_words": "rationale_words",
    "scoring": "scoring",
    "choice_mass": "choice_mass",
    **_PROVENANCE_COLUMNS,
}


@dataclass(frozen=True, kw_only=True)
class JudgementRecorded(Answer, EventRecord):
    TYPE = "JudgementRecorded"
    VERSION = 2
    COLUMNS: ClassVar[dict[str, str]] = {
        **_ANSWER_COLUMNS,
        "judge_index": "item_index",
        "score": "score",
        "sampled_score": "sampled_score",
        "choice_probs": "choice_probs",
    }
    prompt_key: str
    judge_index: int
    # sampled: the score the final line names; expected: Σ s·p(s) over choice_probs
    score: float | None
    # expected scoring: the score the answer's own final line named (None when it named none)
    sampled_score: float | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True, kw_only=True)
class Verdict(Answer):
    """What a meta-verdict and a comparison of two responses share: the item shown first
    (``first_key``, as A) against the one shown second, and the winner."""

    prompt_key: str
    first_key: str
    second_key: str
    winner: str | None  # "A" (first shown wins), "B", or None (tie or unparsed)
    # expected scoring: P(the item shown first is better) = choice_probs["A"]; the winner is
    # then the more likely one
    p_first: float | None = field(default=None, metadata={"omit_if_none": True})


_VERDICT_COLUMNS = {
    **_ANSWER_COLUMNS,
    "first_key": "first_key",
    "second_key": "second_key",
    "winner": "winner",
    "p_first": "p_first",
}


@dataclass(frozen=True, kw_only=True)
class MetaVerdictRecorded(Verdict, EventRecord):
    """The meta-judge comparing two judgements of one response."""

    TYPE = "MetaVerdictRecorded"
    VERSION = 2
    COLUMNS: ClassVar[dict[str, str]] = _VERDICT_COLUMNS


@dataclass(frozen=True, kw_only=True)
class ResponsesCompared(Verdict, EventRecord):
    """The judge comparing two responses to one prompt (actor_judging = "pairwise"). Every
    pair of a prompt's responses is compared in both orders."""

    TYPE = "ResponsesCompared"
    COLUMNS: ClassVar[dict[str, str]] = _VERDICT_COLUMNS


@dataclass(frozen=True, kw_only=True)
class JudgeChecked(EventRecord):
    """The judge checked on a labelled preference set before an iteration (setting
    ``judge_check``; mrtui/loop/judgecheck.py): its rates with 95% intervals, whether it is
    better than chance, and what the run did about it."""

    TYPE = "JudgeChecked"
    labels: str  # the file as the setting names it ('shipped' for the packaged set)
    labels_sha256: str
    model_id: str
    model_sha256: str
    n: int
    result: dict[str, Any]  # JudgeCheck.to_dict() without the per-pair rows
    better_than_chance: bool
    action: str  # "continue", "stop" or "actor" (train on actor pairs only)


@dataclass(frozen=True, kw_only=True)
class RequestFailed(Provenance, EventRecord):
    """A request failed; the unit stays open and is retried on resume (token counts and the
    finish reason stay None)."""

    TYPE = "RequestFailed"
    stage: str
    error: str


@dataclass(frozen=True, kw_only=True)
class UnitSkipped(EventRecord):
    """A unit that can never succeed as configured (e.g. its prompt does not fit the context
    window). It completes the unit, so resume does not retry it; status shows it apart."""

    TYPE = "UnitSkipped"
    COLUMNS: ClassVar[dict[str, str]] = {"prompt_key": "prompt_key", "model_sha256": "model_sha256"}
    stage: str
    reason: str
    prompt_key: str | None
    model_id: str
    model_sha256: str | None
    backend: str
    template_sha256: str


@dataclass(frozen=True, kw_only=True)
class EndpointFailed(EventRecord):
    """A server of a remote backend stopped answering during a stage; the requests it held
    went to the other endpoints (requests fail, as ``RequestFailed``, only when no endpoint is
    left). Not a unit of work: ``key`` is None."""

    TYPE = "EndpointFailed"
    stage: str
    endpoint: str
    error: str
    rerouted: int  # requests moved away from the endpoint so far
    backend: str


# -- training: M_t on iteration t's pairs gives M_{t+1} ---------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainingStarted(EventRecord):
    TYPE = "TrainingStarted"
    VERSION = 2  # v2: ``pairs_used`` holds each pair's kind and unit keys (v1: only pair_keys)
    attempt: str
    settings: dict[str, Any]
    dataset_sha256: str
    pairs: dict[str, int]
    pair_keys: list[str]
    pairs_used: list[dict[str, str]]  # {pair_key, kind, chosen_key, rejected_key}
    base_model_sha256: str
    base_model_dir: str  # relative to the log's folder when under it
    training_key: str
    # What the weights trained from are: "hf weights" (an HF folder: the model itself or a
    # trained checkpoint) or "Q4_K_M dequantisation" (a quantised GGUF's dequantised copy).
    base_model_origin: str | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True, kw_only=True)
class TrainingStepLogged(EventRecord):
    TYPE = "TrainingStepLogged"
    attempt: str
    step: int
    epoch: float | None
    loss: float | None
    rewards_chosen: float | None
    rewards_rejected: float | None
    reward_accuracy: float | None
    reward_margin: float | None
    learning_rate: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TrainingFinished(EventRecord):
    TYPE = "TrainingFinished"
    attempt: str
    model_dir: str  # relative to the log's folder when under it
    weights_sha256: str
    steps: int
    wall_s: float
    final: dict[str, Any] | None
    base_model_sha256: str
    dataset_sha256: str
    # The trained folder's content hash (backends/hf_models.folder_sha256): the checkpoint's
    # identity. Absent in older logs, whose checkpoints are identified by their GGUF export.
    model_sha256: str | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True, kw_only=True)
class CheckpointCreated(EventRecord):
    """The model iteration ``for_iteration`` runs on. ``model_sha256`` is its identity: the
    trained HF folder's content hash (``model_format`` "hf"), or in older logs and for an
    untrained model a GGUF's sha256 ("gguf"; absent means "gguf"). Paths are relative to the
    log's folder when under it; ``gguf_path`` is set only where a GGUF export was written (runs
    served by llama.cpp), with its own hash in ``gguf_sha256``."""

    TYPE = "CheckpointCreated"
    for_iteration: int
    model_id: str
    model_sha256: str
    gguf_path: str | None
    hf_dir: str | None
    trained_from_sha256: str
    training_key: str | None
    reason: str | None
    export: dict[str, Any] | None = None
    model_format: str | None = field(default=None, metadata={"omit_if_none": True})
    gguf_sha256: str | None = field(default=None, metadata={"omit_if_none": True})


# -- evaluation of each iteration's model (``mrtui eval``) -------------------------------------


@dataclass(frozen=True, kw_only=True)
class EvalSampleGenerated(Provenance, EventRecord):
    """The evaluated model's answer (``text``) to one turn of one benchmark item. ``parent_key``
    is the item's key for a first turn, the previous turn's sample for a later one."""

    TYPE = "EvalSampleGenerated"
    COLUMNS: ClassVar[dict[str, str]] = {
        "item_key": "prompt_key",
        "turn": "item_index",
        **_PROVENANCE_COLUMNS,
    }
    suite: str  # ifeval | alpaca_eval | mt_bench | judge-ifeval
    eval_set: str  # the data it comes from (mrtui.datasets.evalsets)
    item_id: str  # the set's own id of the item
    item_key: str  # content_key("evitem", eval_set, item_id): the same for every model
    stratum: str  # the item's group in stratified subsets (--limit)
    turn: int  # 0-based; MT-Bench has two
    sample_index: int  # 0, except judge-ifeval's several samples per prompt
    prompt: str  # this turn's user message
    reference: str | None = None  # AlpacaEval: the baseline's (GPT-4-1106) answer
    # The answer cache (absent in older logs): the content key of the request that made the
    # answer (model sha256, rendered messages, template, sampling; defined once as
    # mrtui.evaluation.run.answer_key), and, for an answer copied from an earlier answer with
    # the same key instead of generated, that answer's sample key.
    answer_key: str | None = field(default=None, metadata={"omit_if_none": True})
    cached_from: str | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True, kw_only=True)
class EvalChecked(EventRecord):
    """A rule checker's result on one sample (IFEval); ``parent_key`` is the sample. One entry
    per instruction in ``strict``/``loose``: followed, not followed, or None when skipped (the
    reason is in ``skipped``)."""

    TYPE = "EvalChecked"
    COLUMNS: ClassVar[dict[str, str]] = {"item_key": "prompt_key"}
    suite: str
    item_key: str
    checker: str  # what checked it, with its version
    instruction_ids: list[str]
    strict: list[bool | None]
    loose: list[bool | None]
    skipped: dict[str, str]
    passed_strict: bool | None  # every instruction followed; None if any was skipped
    passed_loose: bool | None


@dataclass(frozen=True, kw_only=True)
class EvalJudged(Answer, EventRecord):
    """A judge's answer about evaluation samples: a ``pairwise`` verdict in one order (the
    sample against the reference, or two samples), a 1-10 ``grade`` (MT-Bench) or a 0-5
    ``rubric`` score with the run's own judge prompt (judge-ifeval). ``parent_key`` is the
    sample graded, or the first sample of a judged pair."""

    TYPE = "EvalJudged"
    COLUMNS: ClassVar[dict[str, str]] = {
        **_ANSWER_COLUMNS,
        "first_key": "first_key",
        "second_key": "second_key",
        "winner": "winner",
        "score": "score",
    }
    suite: str
    mode: str  # pairwise | grade | rubric
    prompt_key: str  # the item's key
    first_key: str | None = None  # pairwise: what was shown as A (a sample key or REFERENCE)
    second_key: str | None = None  # ... and as B
    winner: str | None = None  # pairwise: "A", "B" or None (tie or unparsed)
    score: float | None = None  # grade and rubric


# The ``first_key``/``second_key`` of the reference answer in a pairwise verdict.
REFERENCE = "reference"


# -- a person's judgement of the model's units (``mrtui labels``, the TUI) -------------------


@dataclass(frozen=True, kw_only=True)
class HumanLabelRecorded(EventRecord):
    """A person's label of one response, judgement or meta-verdict (store/labels.py says which
    labels each takes). Not a unit of work: ``key`` is None, ``parent_key`` is the labelled
    unit's key, run_id and iteration are the unit's, and ``text`` repeats the note. A later
    label of the same unit supersedes an earlier one (the ``human_labels`` view)."""

    TYPE = "HumanLabelRecorded"
    target: str  # response | judgement | verdict
    label: str  # '0'..'5', good, bad (response); agree, disagree (judgement); A, B (verdict)
    author: str
    note: str | None


RECORDS: dict[str, type[EventRecord]] = {
    cls.TYPE: cls
    for cls in (
        RunConfigured,
        PromptAdded,
        PromptsDrawn,
        TemplateRegistered,
        IterationStarted,
        StageStarted,
        StageFinished,
        IterationFinished,
        SessionStarted,
        ResponseGenerated,
        JudgementRecorded,
        MetaVerdictRecorded,
        ResponsesCompared,
        JudgeChecked,
        RequestFailed,
        UnitSkipped,
        EndpointFailed,
        TrainingStarted,
        TrainingStepLogged,
        TrainingFinished,
        CheckpointCreated,
        EvalSampleGenerated,
        EvalChecked,
        EvalJudged,
        HumanLabelRecorded,
    )
}


def record_fields(event_type: str) -> dict[str, Any]:
    """Payload field name -> annotation of ``event_type``'s record."""
    return {f.name: f.type for f in dataclasses.fields(RECORDS[event_type])}  # type: ignore[arg-type]


def parse(cls: type[R], payload: str | dict[str, Any]) -> R:
    """The ``cls`` record of a logged payload (fields a newer writer added are ignored)."""
    data = json.loads(payload) if isinstance(payload, str) else payload
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class NewEvent:
    """An event not yet in the log; the writer stamps ``seq`` and ``created_at``.

    Writers make these from records (``record.event(...)``); a plain payload dict is accepted
    for hand-built logs (tests, imports)."""

    event_type: str
    run_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    iteration: int | None = None
    key: str | None = None
    parent_key: str | None = None
    text: str | None = None
    event_version: int = 1

    def payload_json(self) -> str:
        return canonical_json(self.payload)

    def typed_values(self) -> tuple[Any, ...]:
        """The typed columns' values, in ``TYPED_COLUMNS`` order (None where not declared)."""
        return tuple(col[0] for col in typed_columns([self]))


def typed_columns(events: Sequence[NewEvent]) -> list[list[Any]]:
    """The typed columns of ``events``, column by column in ``TYPED_COLUMNS`` order: each
    record's declared payload fields (or the envelope's parent_key), and every text's length.
    Column-wise, because a writer appending tens of thousands of events at once spends a
    noticeable share of its time here."""
    n = len(events)
    out: list[list[Any]] = [[None] * n for _ in TYPED_COLUMNS]
    by_type: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        by_type.setdefault(e.event_type, []).append(i)
    for event_type, rows in by_type.items():
        plan = _TYPED_PLAN.get(event_type, ())
        if not plan:
            continue
        group = events if len(rows) == n else [events[i] for i in rows]
        payloads = [e.payload for e in group]
        for pos, src in plan:
            values: list[Any]
            if src == "parent_key":
                values = [e.parent_key for e in group]
            elif "." in src:
                outer, inner = src.split(".", 1)
                values = [(p.get(outer) or {}).get(inner) for p in payloads]
            else:
                values = [p.get(src) for p in payloads]
                if pos in _MAP_POSITIONS:
                    values = [None if v is None else _map_entries(v) for v in values]
                elif pos in _JSON_POSITIONS:
                    values = [None if v is None else canonical_json(v) for v in values]
            if len(rows) == n:
                out[pos] = values
            else:
                col = out[pos]
                for i, v in zip(rows, values, strict=True):
                    col[i] = v
    out[_TEXT_CHARS] = [None if e.text is None else len(e.text) for e in events]
    return out


def _map_entries(value: dict[Any, Any]) -> list[tuple[str, Any]]:
    """A dict as the entries of a MAP column, in the order of its keys in the canonical JSON
    of the payload (sorted), so the typed copy equals ``from_json`` of the payload."""
    return sorted((str(k), v) for k, v in value.items())


_POSITION = {c: i for i, c in enumerate(TYPED_COLUMNS)}
_TEXT_CHARS = _POSITION["text_chars"]
_MAP_POSITIONS = frozenset(i for i, t in enumerate(TYPED_COLUMNS.values()) if t.startswith("MAP("))
_JSON_POSITIONS = frozenset(i for i, t in enumerate(TYPED_COLUMNS.values()) if t == "JSON")
# event type -> (column position, payload field) for each declared typed column
_TYPED_PLAN: dict[str, tuple[tuple[int, str], ...]] = {
    t: tuple((_POSITION[col], src) for src, col in cls.COLUMNS.items())
    for t, cls in RECORDS.items()
    if cls.COLUMNS
}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, so equal content always hashes equally (NaN is written as null).

    orjson writes this ~10x faster than the standard library, which matters on the append
    path (every event's payload is serialised once, when it is appended)."""
    import orjson

    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # something orjson cannot encode: let json name it precisely
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )


def content_key(prefix: str, *parts: Any) -> str:
    """A deterministic unit key: ``prefix:`` + the first 32 hex chars of sha256 over parts."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()
    return f"{prefix}:{digest[:32]}"


def key_digest(key: str) -> int:
    """A 32-bit number drawn from a unit key's hash part (keys are ``prefix:hex``)."""
    return int(key.split(":", 1)[1][:8], 16)
