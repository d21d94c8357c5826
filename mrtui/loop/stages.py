"""The Meta-Rewarding data stages: actor → judge → meta-judge, resumable unit by unit.

Every unit of work (one response, one judgement, one ordered meta-comparison) has a key
derived from its inputs: run, iteration, what it is about, its index, the model file's sha256,
the template's sha256 and the sampling settings. A stage plans all its units, skips those whose
key is already in the log, sends the rest to the backend as one batch and logs each result as
it arrives. Kill the process at any point and the next run picks up the remaining units.

That machinery is public, for any stage: :meth:`Stages.keyer` makes a stage's unit keys,
:meth:`Stages.about` records what a unit is about, :meth:`Stages.execute` plans, runs and logs
a batch of units (through :meth:`Stages.run_units`, which a subclass may extend), and
:meth:`Stages.finisher` reads a judge-like answer into its event, with
:meth:`Stages.provenance` and :meth:`Stages.template_for` for what every event records. The
loop's own stages below use it, and so do the evaluation (``mrtui.evaluation.run``) and the
benchmarks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mrtui.backends.base import (
    BackendInfo,
    Completion,
    Failure,
    FinalLine,
    InferenceBackend,
    Message,
    Request,
    SamplingParams,
)
from mrtui.backends.choice_probs import most_likely
from mrtui.store import EventLog, canonical_json
from mrtui.store import events as ev
from mrtui.store.events import key_digest

from .progress import CancelToken, Note, ProgressSink, StageBegan, StageEnded, UnitsDone, ignore
from .prompts import (
    RATIONALE_LABEL,
    RESPONSE_WINNER_LINE,
    Parsed,
    Template,
    before_final_line,
    parse_score,
    parse_winner,
    rationale_words,
)
from .settings import MIN_RATIONALE_CHARS, IterationSettings
from .stage_table import JUDGE, META, PAIRWISE, AnswerKind, answer_kind, stage_spec
from .stage_table import KINDS as KINDS  # the table's names, where they used to be defined
from .stage_table import SCORE_CHOICES as SCORE_CHOICES
from .stage_table import SCORE_LEAD as SCORE_LEAD
from .stage_table import STAGES as STAGES
from .stage_table import WINNER_CHOICES as WINNER_CHOICES
from .stage_table import WINNER_LEAD as WINNER_LEAD

PROBS_SUFFIX = "#probs"  # the follow-up request that reads an answer's choice probabilities


@dataclass(frozen=True)
class ModelIdentity:
    """A resolved model (see backends/model_ref.py): ``sha256`` is what the log records."""

    model_id: str
    sha256: str
    path: str | None = None
    format: str = "gguf"  # "gguf" or "hf"
    origin: str | None = None  # packaged:NAME, hub:OWNER/REPO, local, dequantised:PATH
    quantization: str | None = None  # a GGUF's file type (Q4_K_M)


# A planned unit: its key and what is needed to build its request. Requests (and their
# rendered prompts) are built only for units the log does not hold yet, so planning a stage
# that is mostly done stays cheap.
Planned = tuple[str, tuple[Any, ...]]
Builder = Callable[[str, tuple[Any, ...]], "tuple[Request, Finish]"]
Finish = Callable[[Completion], "Outcome | Followup"]


@dataclass
class Outcome:
    """A finished unit: its record type and fields; provenance is added when it is logged."""

    record: type[ev.EventRecord]
    fields: dict[str, Any]
    parent_key: str
    text: str


@dataclass
class Followup:
    request: Request
    finish: Callable[[Completion | None], Outcome]


@dataclass
class StageReport:
    iteration: int
    stage: str
    planned: int
    skipped: int
    done: int = 0
    failed: int = 0
    wall_s: float = 0.0
    completion_tokens: int = 0
    unit_skips: int = 0  # units logged as UnitSkipped (they can never succeed as configured)
    stopped: bool = False  # the cancel token stopped the stage before every unit was tried
    failures: list[str] = field(default_factory=list)


def final_line(lead: str, choices: tuple[str, ...], max_chars: int) -> FinalLine:
    """The constrained answer of every judge (structured judging): a rationale of at most
    ``max_chars``, then one line of ``lead`` and one of ``choices``."""
    return FinalLine(RATIONALE_LABEL, MIN_RATIONALE_CHARS, max_chars, lead, choices)


def unit_seed(base: int, key: str) -> int:
    return (base * 1_000_003 + key_digest(key)) % 2**31


class Stages:
    """Runs one iteration's stages against a log and a (lazily started) backend."""

    def __init__(
        self,
        log: EventLog,
        run_id: str,
        iteration: int,
        settings: IterationSettings,
        model: ModelIdentity,
        templates: dict[str, Template],
        backend: Callable[[], InferenceBackend],
        progress: ProgressSink = ignore,
        cancel: CancelToken | None = None,
    ) -> None:
        self.log = log
        self.run_id = run_id
        self.iteration = iteration
        self.s = settings
        self.model = model
        self.templates = templates
        self._backend_factory = backend
        self.progress = progress
        self.cancel = cancel or CancelToken()
        self._about: dict[str, tuple[str, str]] = {}  # unit key -> (parent key, prompt key)

    # -- the unit of work: public, the stages below, the evaluation and the bench use it ----
    def keyer(self, kind: str, *const: Any) -> Callable[..., str]:
        """Key function for one stage: the constant inputs (run, iteration, model, template,
        sampling) are hashed once; each unit adds only what varies. ``kind`` is the key's
        prefix (``resp``, ``judg``, ``evsmp``, ...)."""
        head = hashlib.sha256(
            canonical_json([kind, self.run_id, self.iteration, self.model.sha256, *const]).encode()
        )

        def key(*parts: Any) -> str:
            h = head.copy()
            h.update(canonical_json(list(parts)).encode())
            return f"{kind}:{h.hexdigest()[:32]}"

        return key

    def about(self, key: str, parent_key: str, prompt_key: str) -> None:
        """Record what the unit ``key`` is about, for a ``UnitSkipped`` should it never
        succeed: its parent's key and its prompt's. A builder calls it for each unit it
        builds."""
        self._about[key] = (parent_key, prompt_key)

    def unit_keys(self, name: str) -> Callable[..., str]:
        """The key function of a stage: actor(prompt_key, k), judge(response_key, j),
        meta(response_key, first_key, second_key), pairwise(prompt_key, first_key,
        second_key). Its entry in the stage table (``stage_table.STAGE_TABLE``) names the
        prefix and the settings that go into the key."""
        spec = stage_spec(name)
        extra: tuple[Any, ...] = () if spec.fallback is None else (getattr(self.s, spec.fallback),)
        structure = self.structure(name)
        if structure is not None:  # only then, so keys of unstructured runs stay as they were
            extra = (*extra, structure.to_dict())
        if spec.answer is not None:  # likewise: only what differs from the paper's judging
            if spec.answer.scoring(self.s) != "sampled":
                extra = (*extra, {"scoring": spec.answer.scoring(self.s)})
            if not spec.answer.reasons(self.s):
                extra = (*extra, {"rationale": False})
        template = self.templates[spec.template_role]
        sampling = [*spec.sampling_settings(self.s), self.s.seed]
        return self.keyer(spec.key_prefix, template.sha256, sampling, *extra)

    def scoring(self, name: str) -> str:
        """'sampled' or 'expected' (settings judge_scoring, meta_scoring) for a judge-like
        stage."""
        return scoring_of(self.s, name)

    def structure(self, name: str) -> FinalLine | None:
        """The constrained format of a judge-like stage's answer (structured judging); None
        for the actor's free text."""
        kind = stage_spec(name).answer
        return None if kind is None else structure_of(self.s, kind)

    def provenance(
        self, info: BackendInfo, template: Template, request: Request, result: Completion | Failure
    ) -> dict[str, Any]:
        """The :class:`~mrtui.store.events.Provenance` fields of a unit's event."""
        prov: dict[str, Any] = {
            "model_id": info.model_id,
            # the identity the run resolved for this iteration (a GGUF's sha256 or an HF folder's
            # content hash), which unit keys and planning queries use, whichever file the
            # backend serves it from (the runner checks a backend that hashes its file)
            "model_sha256": self.model.sha256,
            "backend": info.backend,
            "backend_version": info.backend_version,
            "template": template.name,
            "template_sha256": template.sha256,
            "sampling": request.params.to_dict(),
            "seed": request.params.seed,
            "wall_s": round(result.wall_s, 4),
        }
        if isinstance(result, Completion):
            prov.update(
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                prompt_tokens_evaluated=result.prompt_tokens_evaluated,
                finish_reason=result.finish_reason,
            )
            if result.served_model is not None:
                prov["served_model"] = result.served_model
        if result.endpoint is not None:  # remote backends: which server made (or failed) it
            prov["endpoint"] = result.endpoint
        return prov

    def _endpoint_news(self, stage: str, backend: InferenceBackend, info: BackendInfo) -> None:
        """Log the servers a remote backend lost (``EndpointFailed``) and tell the front end,
        whose status line shows it; a server that came back is a note."""
        for e in backend.endpoint_events():
            if e.state == "down":
                failed = ev.EndpointFailed(
                    stage=stage,
                    endpoint=e.endpoint,
                    error=e.error or "",
                    rerouted=e.rerouted,
                    backend=info.backend,
                )
                self.log.append([failed.event(self.run_id, iteration=self.iteration)])
                self.progress(
                    Note(
                        f"endpoint {e.endpoint} is down ({e.error}); its requests go to the "
                        "other endpoints",
                        alert=True,
                    )
                )
            else:
                self.progress(Note(f"endpoint {e.endpoint} is back", alert=True))

    def execute(
        self, stage: str, planned: Sequence[Planned], build: Builder, already: int = 0
    ) -> StageReport:
        """Run one stage's batch of units: ``planned`` holds each unit's key and the arguments
        ``build`` turns into its request and finish. Units whose key the log holds are skipped;
        the rest go to :meth:`run_units`, between ``StageStarted`` and ``StageFinished``.
        ``already`` counts units the caller found complete without planning them (they are
        reported as skipped)."""
        done = self.log.completed_keys()
        todo = [build(key, args) for key, args in planned if key not in done]
        total = len(planned) + already
        report = StageReport(self.iteration, stage, planned=total, skipped=total - len(todo))
        self.progress(StageBegan(self.iteration, stage, total, report.skipped))
        started = ev.StageStarted(stage=stage, planned=total, todo=len(todo))
        self.log.append([started.event(self.run_id, iteration=self.iteration)])
        t0 = time.perf_counter()
        if todo and not self.cancel.cancelled:
            self.run_units(stage, todo, report)
        report.stopped = self.cancel.cancelled and (
            report.done + report.failed + report.unit_skips < len(todo)
        )
        report.wall_s = time.perf_counter() - t0
        finished = ev.StageFinished(
            stage=stage,
            planned=report.planned,
            skipped=report.skipped,
            done=report.done,
            failed=report.failed,
            wall_s=round(report.wall_s, 3),
            completion_tokens=report.completion_tokens,
            stopped=report.stopped,
        )
        self.log.append([finished.event(self.run_id, iteration=self.iteration)])
        self.progress(
            StageEnded(
                self.iteration,
                stage,
                report.done,
                report.failed,
                report.wall_s,
                report.completion_tokens,
                report.stopped,
            )
        )
        return report

    def run_units(
        self, stage: str, todo: Sequence[tuple[Request, Finish]], report: StageReport
    ) -> None:
        """Send the units to the backend and log each result as it arrives. With the cancel
        token set, stops after the result in flight (the backend's stream is closed). A
        subclass may override it to answer some units another way (the evaluation copies
        answers the log already holds) and hand the rest to this one."""
        backend = self._backend_factory()
        info = backend.info()
        pending: dict[str, Callable[[Any], Outcome | Followup]] = {}
        requests: list[Request] = []
        for request, finish in todo:
            pending[request.id] = finish
            requests.append(request)
        originals = {request.id: request for request, _ in todo}
        first_answer: dict[str, Completion] = {}  # the answer a fallback continues
        while requests and not self.cancel.cancelled:
            followups: list[Followup] = []
            stream = backend.generate(requests)
            try:
                for result in stream:
                    self._take(
                        stage, info, result, pending, originals, first_answer, followups, report
                    )
                    self._endpoint_news(stage, backend, info)
                    if self.cancel.cancelled:
                        break
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            self._endpoint_news(stage, backend, info)
            requests = []
            for f in followups:
                pending[f.request.id] = f.finish
                requests.append(f.request)

    def _take(
        self,
        stage: str,
        info: BackendInfo,
        result: Completion | Failure,
        pending: dict[str, Callable[[Any], Outcome | Followup]],
        originals: dict[str, Request],
        first_answer: dict[str, Completion],
        followups: list[Followup],
        report: StageReport,
    ) -> None:
        """One result: log the unit, its failure or its skip, or queue its fallback."""
        finish = pending.pop(result.request_id)
        unit_key = result.request_id.split("#", 1)[0]
        request = originals[unit_key]
        if isinstance(result, Failure):
            # a failed probability follow-up fails its unit, which is retried on resume
            if "#" not in result.request_id or result.request_id.endswith(PROBS_SUFFIX):
                first_answer.pop(unit_key, None)
                self._log_failure(stage, info, request, result, report)
                return
            outcome = finish(None)  # a failed fallback still completes the unit
        else:
            report.completion_tokens += result.completion_tokens
            outcome = finish(result)
        if isinstance(outcome, Followup):
            assert isinstance(result, Completion)
            first_answer[unit_key] = result
            followups.append(outcome)
            return
        prov = self.provenance(
            info, self.template_for(stage), request, first_answer.pop(unit_key, result)
        )
        record = outcome.record(**outcome.fields, **prov)
        self.log.append(
            [
                record.event(
                    self.run_id,
                    iteration=self.iteration,
                    key=unit_key,
                    parent_key=outcome.parent_key,
                    text=outcome.text,
                )
            ]
        )
        report.done += 1
        self.progress(
            UnitsDone(self.iteration, stage, tokens=getattr(result, "completion_tokens", 0))
        )

    def _log_failure(
        self, stage: str, info: BackendInfo, request: Request, failure: Failure, report: StageReport
    ) -> None:
        """A failed request: retried on resume, or (``failure.permanent``) skipped for good."""
        prov = self.provenance(info, self.template_for(stage), request, failure)
        if failure.permanent:
            skip = ev.UnitSkipped(
                stage=stage,
                reason=failure.error,
                prompt_key=self._about.get(request.id, (None, None))[1],
                model_id=info.model_id,
                model_sha256=self.model.sha256,
                backend=info.backend,
                template_sha256=prov["template_sha256"],
            )
            self.log.append(
                [
                    skip.event(
                        self.run_id,
                        iteration=self.iteration,
                        key=request.id,
                        parent_key=self._about.get(request.id, (None, None))[0],
                    )
                ]
            )
            report.unit_skips += 1
            self.progress(Note(f"skipped {request.id}: {failure.error}"))
        else:
            failed = ev.RequestFailed(stage=stage, error=failure.error, **prov)
            self.log.append(
                [failed.event(self.run_id, iteration=self.iteration, parent_key=request.id)]
            )
            report.failed += 1
        if len(report.failures) < 5:
            report.failures.append(failure.error)
        self.progress(UnitsDone(self.iteration, stage, failed=True))

    def template_for(self, stage: str) -> Template:
        """The template a stage's units are rendered with (named in their provenance)."""
        return self.templates[stage_spec(stage).template_role]

    # -- actor ----------------------------------------------------------------------------
    def actor(self, prompts: Sequence[tuple[str, str]]) -> StageReport:
        """``prompts``: (prompt_key, text). K responses each."""
        tpl = self.template_for("actor")
        key = self.unit_keys("actor")
        planned = [(key(pk, k), (pk, text, k)) for pk, text in prompts for k in range(self.s.k)]

        def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            prompt_key, text, k = args
            self.about(key, prompt_key, prompt_key)
            request = Request(
                key, (Message("user", tpl.render(prompt=text)),), unit_params(self.s, "actor", key)
            )

            def finish(c: Completion) -> Outcome:
                return Outcome(ev.ResponseGenerated, {"sample_index": k}, prompt_key, c.text)

            return request, finish

        return self.execute("actor", planned, build)

    # -- judge ----------------------------------------------------------------------------
    def judge(
        self, responses: Sequence[tuple[str, str, str, str]], already: int = 0
    ) -> StageReport:
        """``responses``: (response_key, prompt_key, prompt text, response text). N each,
        planned back to back so the backend can reuse the shared prompt. ``already``: responses
        the caller found fully judged and left out (see ``Runner.responses_to_judge``)."""
        tpl = self.template_for("judge")
        key = self.unit_keys("judge")
        planned = [(key(r[0], j), (*r, j)) for r in responses for j in range(self.s.n)]

        def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            response_key, prompt_key, prompt, response, j = args
            self.about(key, response_key, prompt_key)
            text = tpl.render(question=prompt, response=response)
            request = self._answer_request(JUDGE, key, text)
            fields = {"prompt_key": prompt_key, "judge_index": j}
            decimals = self.s.score_decimals
            return request, self.finisher(
                JUDGE,
                request,
                response_key,
                fields,
                lambda t: parse_score(t, decimals=decimals),
                stage_spec("judge").fallback_on(self.s),
            )

        return self.execute("judge", planned, build, already * self.s.n)

    # -- meta-judge -----------------------------------------------------------------------
    def meta(
        self, targets: Sequence[tuple[str, str, str, str, Sequence[tuple[str, str]]]]
    ) -> StageReport:
        """``targets``: (response_key, prompt_key, prompt, response, [(judgement_key, text)]).
        Every ordered pair of the response's valid judgements, so each pair is seen in both
        orders."""
        tpl = self.template_for("meta")
        key = self.unit_keys("meta")
        planned = [
            (key(rk, a, b), (rk, pk, prompt, response, a, first, b, second))
            for rk, pk, prompt, response, judgements in targets
            for a, first in judgements
            for b, second in judgements
            if a != b
        ]

        def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            rk, pk, prompt, response, a, first, b, second = args
            self.about(key, rk, pk)
            text = tpl.render(
                question=prompt, response=response, judgement_a=first, judgement_b=second
            )
            request = self._answer_request(META, key, text)
            fields = {"prompt_key": pk, "first_key": a, "second_key": b}
            return request, self.finisher(
                META, request, rk, fields, parse_winner, stage_spec("meta").fallback_on(self.s)
            )

        return self.execute("meta", planned, build)

    # -- pairwise actor judging -------------------------------------------------------------
    def pairwise(
        self, prompts: Sequence[tuple[str, str, Sequence[tuple[str, str]]]]
    ) -> StageReport:
        """``prompts``: (prompt_key, prompt, [(response_key, response)]). The judge compares
        every ordered pair of a prompt's responses (actor_judging = "pairwise"), so each pair
        is seen in both orders."""
        tpl = self.template_for("pairwise")
        key = self.unit_keys("pairwise")
        planned = [
            (key(pk, a, b), (pk, prompt, a, first, b, second))
            for pk, prompt, responses in prompts
            for a, first in responses
            for b, second in responses
            if a != b
        ]

        def parse(text: str) -> Parsed:
            return parse_winner(text, RESPONSE_WINNER_LINE)

        def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            pk, prompt, a, first, b, second = args
            self.about(key, pk, pk)
            text = tpl.render(question=prompt, response_a=first, response_b=second)
            request = self._answer_request(PAIRWISE, key, text)
            fields = {"prompt_key": pk, "first_key": a, "second_key": b}
            return request, self.finisher(
                PAIRWISE, request, pk, fields, parse, stage_spec("pairwise").fallback_on(self.s)
            )

        return self.execute("pairwise", planned, build)

    def _answer_request(self, kind: AnswerKind, key: str, text: str) -> Request:
        return answer_request(kind, self.s, key, text, unit_params(self.s, kind.stage, key))

    def finisher(
        self,
        kind: AnswerKind,
        request: Request,
        parent_key: str,
        fields: dict[str, Any],
        parse: Callable[[str], Parsed],
        fallback: bool,
    ) -> Finish:
        """Parse the model's answer into the unit's event.

        Sampled scoring: the final line's value; with ``fallback`` on, an answer without a
        valid final line first gets one constrained continuation. A judgement the fallback
        rescues is stored with its recovered final line appended (``text`` + newline + lead +
        value), so the meta-judge and DPO see the score it counts with; ``payload.fallback``
        keeps what the continuation wrote.

        Expected scoring: the value comes from the choice probabilities at the final line
        (:meth:`AnswerKind.from_probs`): those the backend returned with the answer, else a
        follow-up request that continues the answer's reasoning with the lead and reads them.
        An answer whose own final line named no choice is stored with the most likely one
        appended. Every answer's rationale is counted (``rationale_words``)."""
        prompt = request.messages[-1].content
        structure = request.structure.to_dict() if request.structure is not None else None
        expected = kind.scoring(self.s) == "expected"

        def event(
            text: str,
            parsed: Parsed,
            first_error: str | None = None,
            fallback_info: dict[str, Any] | None = None,
            probs: Completion | None = None,
        ) -> Outcome:
            if fallback_info is not None and parsed.error is None:
                text = f"{text.rstrip()}\n{kind.lead}{fallback_info['text'].strip()}"
            values = {
                **fields,
                kind.value_field: parsed.value,
                "parse_error": parsed.error,
                "fallback_used": fallback_info is not None,
                "structure": structure,
                "rationale_words": rationale_words(text, prompt, kind.form)
                if kind.reasons(self.s)
                else None,
            }
            if fallback_info is not None:
                values["fallback"] = fallback_info | {"first_parse_error": first_error}
            if probs is not None:
                assert probs.choice_probs is not None
                chosen = dict(probs.choice_probs)
                if parsed.error is not None:  # the answer named no choice: show the likeliest
                    text = f"{text.rstrip()}\n{kind.lead}{most_likely(chosen)}"
                values.update(kind.from_probs(chosen, parsed.value))
                values.update(
                    parse_error=None, choice_probs=chosen, choice_mass=probs.choice_mass,
                    scoring="expected",
                )  # fmt: skip
            return Outcome(kind.record, values, parent_key, text)

        def finish(c: Completion) -> Outcome | Followup:
            if request.choices is not None:  # no rationale: the answer is the choice itself
                text = kind.lead + c.text
                return event(text, parse(text), probs=c if expected else None)
            parsed = parse(c.text)
            if expected:
                if c.choice_probs is not None:
                    return event(c.text, parsed, probs=c)
                return Followup(
                    probs_request(request, before_final_line(c.text, kind.form), kind),
                    lambda f: event(c.text, parsed, probs=f),
                )
            if parsed.error is None or parsed.error == ev.TIE or not fallback:
                return event(c.text, parsed)
            return Followup(
                fallback_request(request, c.text, kind.lead, kind.choices),
                lambda f: event(c.text, *_fallback_parse(f, parsed, kind.cast, kind.choices)),
            )

        return finish


def answer_request(
    kind: AnswerKind, s: IterationSettings, key: str, text: str, params: SamplingParams
) -> Request:
    """A judge-like request on the user message ``text``: the answer with its reasoning (free,
    or structured with ``structured_judging``), or without reasoning (``judge_rationale`` or
    ``pairwise_rationale`` off, see :func:`rationale_of`) the final line's choice right after
    the prompt. Under expected scoring it asks for the choice
    probabilities too (see :func:`probs_request` for backends that give none with a
    structured answer)."""
    messages = (Message("user", text),)
    expected = kind.scoring(s) == "expected"
    if not kind.reasons(s):
        return Request(
            key, messages, params, assistant_prefix=kind.lead, choices=kind.choices,
            choice_probs=expected,
        )  # fmt: skip
    structure = structure_of(s, kind)
    return Request(
        key, messages, params, structure=structure,
        choice_probs=expected and structure is not None,
    )  # fmt: skip


def unit_params(s: IterationSettings, name: str, key: str) -> SamplingParams:
    """The sampling parameters of stage ``name``'s unit ``key``: the stage's settings (its
    entry in the stage table) and the unit's own seed."""
    temperature, top_p, max_tokens = stage_spec(name).sampling_settings(s)
    return SamplingParams(
        n=1,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=unit_seed(s.seed, key),
    )


def scoring_of(s: IterationSettings, name: str) -> str:
    """'sampled' or 'expected' for judge-like stage ``name``: ``judge_scoring`` for judging
    (pointwise and pairwise), ``meta_scoring`` for meta-judging (the stage table's
    ``AnswerKind.scoring_setting``)."""
    return answer_kind(name).scoring(s)


def rationale_of(s: IterationSettings, name: str) -> bool:
    """Whether judge-like stage ``name``'s answer reasons before its final line:
    ``pairwise_rationale`` for comparisons of two responses, ``judge_rationale`` for judging
    and meta-judging (the stage table's ``AnswerKind.rationale_setting``)."""
    return answer_kind(name).reasons(s)


def structure_of(s: IterationSettings, kind: AnswerKind) -> FinalLine | None:
    """The constrained format of a judge-like answer (structured judging), or None."""
    if not s.structured_judging or not kind.reasons(s):
        return None
    return final_line(kind.lead, kind.choices, s.rationale_max_chars)


def probs_request(request: Request, reasoning: str, kind: AnswerKind) -> Request:
    """Continue an answer's reasoning with its final line's lead and read the probability of
    each choice there (a failure fails the unit, so a resumed run asks again)."""
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=2, seed=request.params.seed)
    return Request(
        request.id + PROBS_SUFFIX,
        request.messages,
        params,
        assistant_prefix=reasoning.rstrip() + "\n" + kind.lead,
        choices=kind.choices,
        choice_probs=True,
    )


def fallback_request(request: Request, text: str, lead: str, choices: tuple[str, ...]) -> Request:
    """Continue the model's own answer with a final line whose value is constrained."""
    prefix = text.rstrip() + "\n" + lead
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=2, seed=request.params.seed)
    return Request(
        request.id + "#fallback",
        request.messages,
        params,
        assistant_prefix=prefix,
        choices=choices,
    )


def _fallback_parse(
    f: Completion | None, first: Parsed, cast: Callable[[str], Any], choices: tuple[str, ...]
) -> tuple[Parsed, str | None, dict[str, Any]]:
    if f is None:
        return first, first.error, {"text": None, "error": "fallback request failed"}
    value = f.text.strip()
    ok = value in choices
    parsed = Parsed(cast(value), None) if ok else Parsed(None, f"fallback gave {value!r}")
    return (
        parsed,
        first.error,
        {
            "text": f.text,
            "completion_tokens": f.completion_tokens,
            "prompt_tokens_evaluated": f.prompt_tokens_evaluated,
        },
    )
