"""Plain records the TUI shows; filled by :mod:`mrtui.tui.source`, drawn by the screens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class WriterInfo:
    """Who holds the log's writer lock, as its lock file tells (pid, host, command)."""

    pid: int | None
    host: str
    command: str
    started: str
    in_process: bool = False

    def describe(self) -> str:
        if self.in_process:
            return "this TUI is writing"
        return f"pid {self.pid} on {self.host}: {self.command}"


@dataclass
class IterationRow:
    run_id: str
    iteration: int
    model_id: str = ""
    k: int = 0
    n: int = 0
    weights_scope: str = "response"
    responses: int = 0
    judgements: int = 0
    verdicts: int = 0
    failures: int = 0  # failed requests (retried on resume)
    skipped: int = 0  # units skipped for good (UnitSkipped)
    training: str = "-"
    trained_from: str | None = None  # "hf weights" or "Q4_K_M dequantisation" (training_runs)
    steps: int = 0
    drawn: int | None = None  # prompts drawn from the pool (prompts_per_iteration), else None


@dataclass
class Overview:
    runs: list[str]
    run_id: str | None
    iterations: list[IterationRow]
    prompts: int
    max_seq: int
    last_event_at: Any
    read_at: float  # time.time() of the read
    writer: WriterInfo | None


@dataclass
class EventRow:
    seq: int
    created_at: Any
    event_type: str
    iteration: int | None
    key: str
    preview: str


@dataclass
class JudgeSignal:
    """How much the judge's scores say in one iteration (the ``judge_signal`` view)."""

    iteration: int
    scored_prompts: int  # prompts with two or more scored responses
    tied_prompts: int  # of those, the prompts whose responses all have the same mean score
    score_length_corr: float | None  # Pearson r of a response's mean score with its length
    score_per_100_chars: float | None  # the least-squares slope


@dataclass
class PromptRow:
    prompt_key: str
    index: int
    source_id: str
    preview: str
    responses: int


@dataclass
class PromptStats:
    """What the background index knows about one prompt in one iteration."""

    best: float | None = None
    worst: float | None = None
    actor_pair: bool = False
    judge_pair: bool = False


@dataclass
class JudgementInfo:
    key: str
    response_key: str
    judge_index: int
    score: float | None
    text: str
    parse_error: str | None
    fallback_used: bool
    chars: int
    elo: float | None = None
    wins: int | None = None
    scoring: str = "sampled"  # or "expected": ``score`` is Σ s·p(s) over ``choice_probs``
    sampled_score: float | None = None  # expected scoring: the score its own text named
    choice_probs: dict[str, float] | None = None  # expected scoring: score '0'..'5' -> p
    choice_mass: float | None = None  # their probability mass before normalising


@dataclass
class ResponseInfo:
    key: str
    iteration: int
    sample_index: int
    text: str
    chars: int
    finish_reason: str | None
    completion_tokens: int | None
    mean: float | None
    variance: float | None
    valid: int
    judged: int
    role: str | None = None  # 'chosen' / 'rejected' in the actor pair
    meta_target: bool = False
    judgements: list[JudgementInfo] = field(default_factory=list)


@dataclass
class Verdict:
    key: str
    first_key: str
    second_key: str
    winner: str | None
    text: str
    parse_error: str | None
    p_first: float | None = None  # expected meta scoring: P(the judgement shown first is better)


@dataclass
class Battle:
    """The meta-judged response of one prompt and iteration: who beat whom, in which order."""

    response_key: str
    scope: str
    judgements: list[JudgementInfo]  # in judge_index order
    verdicts: dict[tuple[str, str], Verdict]  # (first shown, second shown) -> verdict
    omega1: float | None
    omega2: float | None
    win_1st: int
    win_2nd: int
    chosen_key: str | None
    rejected_key: str | None
    drop_reason: str | None
    ready: bool = False  # verdicts, ω, Elo and the judge pair are filled in
    # expected meta scoring: (m, n) -> b_mn, the soft outcome of m over n from both orders
    outcomes: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def expected(self) -> bool:
        """Whether its verdicts carry P(first better) (meta_scoring = 'expected')."""
        return any(v.p_first is not None for v in self.verdicts.values())


@dataclass
class IterationFocus:
    iteration: int
    responses: list[ResponseInfo]
    actor_pair: tuple[str, str] | None
    battle: Battle | None


@dataclass
class PromptFocus:
    prompt_key: str
    index: int
    source_id: str
    text: str
    iterations: dict[int, IterationFocus]
    read_s: float = 0.0
    pending: Any = None  # battle rows read but not yet applied (see LogSource.focus)


@dataclass
class HumanLabel:
    """A person's current label of one response, judgement or meta-verdict (the
    ``human_labels`` view: a later label of the same key supersedes an earlier one)."""

    target: str  # 'response' | 'judgement' | 'verdict'
    target_key: str
    iteration: int | None
    label: str  # '0'..'5', 'good', 'bad', 'agree', 'disagree', 'A', 'B'
    author: str | None
    note: str | None
    revisions: int  # how many labels the key has had

    def describe(self) -> str:
        """One line for the screens (author and note are text a person typed: show via lit)."""
        meaning = {"A": "A (first shown) better", "B": "B (second shown) better"}
        out = f"human label: {meaning.get(self.label, self.label)}"
        extra = [self.author or "?"]
        if self.revisions > 1:
            extra.append(f"{self.revisions} revisions")
        out += f" ({', '.join(extra)})"
        return out + (f" · {self.note}" if self.note else "")


@dataclass(frozen=True)
class LabelTarget:
    """Something a person can label from the screen they are on: its kind (the labels it
    allows), its key, a title naming it, and its current label, if any."""

    kind: str  # 'response' | 'judgement' | 'verdict'
    key: str
    title: str
    current: HumanLabel | None = None
