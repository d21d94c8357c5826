"""The Meta-Rewarding data stages: actor → judge → meta-judge, resumable unit by unit.

Every unit of work (one response, one judgement, one ordered meta-comparison) has a key
derived from its inputs: run, iteration, what it is about, its index, the model file's sha256,
the template's sha256 and the sampling settings. A stage plans all its units, skips those whose
key is already in the log, sends the rest to the backend as one batch and logs each result as
it arrives. Kill the process at any point and the next run picks up the remaining units.
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
from mrtui.store import EventLog, canonical_json
from mrtui.store import events as ev
from mrtui.store.events import key_digest

from .progress import CancelToken, Note, ProgressSink, StageBegan, StageEnded, UnitsDone, ignore
from .prompts import RATIONALE_LABEL, Parsed, Template, parse_score, parse_winner, rationale_words
from .settings import MIN_RATIONALE_CHARS, IterationSettings

SCORE_CHOICES = tuple(str(i) for i in range(6))
WINNER_CHOICES = ("A", "B")
SCORE_LEAD = "Score: "
WINNER_LEAD = "Winner: Judgment "


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

    # -- shared machinery -----------------------------------------------------------------
    def _keyer(self, kind: str, *const: Any) -> Callable[..., str]:
        """Key function for one stage: the constant inputs (run, iteration, model, template,
        sampling) are hashed once; each unit adds only what varies."""
        head = hashlib.sha256(
            canonical_json([kind, self.run_id, self.iteration, self.model.sha256, *const]).encode()
        )

        def key(*parts: Any) -> str:
            h = head.copy()
            h.update(canonical_json(list(parts)).encode())
            return f"{kind}:{h.hexdigest()[:32]}"

        return key

    def unit_keys(self, stage: str) -> Callable[..., str]:
        """The key function of a stage: actor(prompt_key, k), judge(response_key, j),
        meta(response_key, first_key, second_key)."""
        kind, tpl, extra = {
            "actor": ("resp", "actor", ()),
            "judge": ("judg", "judge", (self.s.judge_fallback,)),
            "meta": ("meta", "meta_judge", (self.s.meta_fallback,)),
        }[stage]
        structure = self.structure(stage)
        if structure is not None:  # only then, so keys of unstructured runs stay as they were
            extra = (*extra, structure.to_dict())
        role = "meta" if stage == "meta" else stage
        return self._keyer(kind, self.templates[tpl].sha256, self._sampling_id(role), *extra)

    def structure(self, stage: str) -> FinalLine | None:
        """The constrained format of a judge or meta-judge answer (structured judging)."""
        if not self.s.structured_judging or stage == "actor":
            return None
        lead, choices = (
            (SCORE_LEAD, SCORE_CHOICES) if stage == "judge" else (WINNER_LEAD, WINNER_CHOICES)
        )
        return final_line(lead, choices, self.s.rationale_max_chars)

    def _params(self, role: str, key: str) -> SamplingParams:
        return SamplingParams(
            n=1,
            temperature=getattr(self.s, f"{role}_temperature"),
            top_p=getattr(self.s, f"{role}_top_p"),
            max_tokens=getattr(self.s, f"{role}_max_tokens"),
            seed=unit_seed(self.s.seed, key),
        )

    def _provenance(
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
        drain = getattr(backend, "endpoint_events", None)
        if drain is None:
            return
        for e in drain():
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

    def _execute(
        self, stage: str, planned: Sequence[Planned], build: Builder, already: int = 0
    ) -> StageReport:
        """Run the planned units the log does not hold; ``already`` counts units the caller
        found complete without planning them (they are reported as skipped)."""
        done = self.log.completed_keys()
        todo = [build(key, args) for key, args in planned if key not in done]
        total = len(planned) + already
        report = StageReport(self.iteration, stage, planned=total, skipped=total - len(todo))
        self.progress(StageBegan(self.iteration, stage, total, report.skipped))
        started = ev.StageStarted(stage=stage, planned=total, todo=len(todo))
        self.log.append([started.event(self.run_id, iteration=self.iteration)])
        t0 = time.perf_counter()
        if todo and not self.cancel.cancelled:
            self._run_units(stage, todo, report)
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

    def _run_units(
        self, stage: str, todo: Sequence[tuple[Request, Finish]], report: StageReport
    ) -> None:
        """Send the units to the backend and log each result as it arrives. With the cancel
        token set, stops after the result in flight (the backend's stream is closed)."""
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
            if "#" not in result.request_id:
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
        prov = self._provenance(
            info, self._template_for(stage), request, first_answer.pop(unit_key, result)
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
        prov = self._provenance(info, self._template_for(stage), request, failure)
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

    def _template_for(self, stage: str) -> Template:
        return self.templates[{"actor": "actor", "judge": "judge", "meta": "meta_judge"}[stage]]

    # -- actor ----------------------------------------------------------------------------
    def actor(self, prompts: Sequence[tuple[str, str]]) -> StageReport:
        """``prompts``: (prompt_key, text). K responses each."""
        tpl = self.templates["actor"]
        key = self.unit_keys("actor")
        planned = [(key(pk, k), (pk, text, k)) for pk, text in prompts for k in range(self.s.k)]

        def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            prompt_key, text, k = args
            self._about[key] = (prompt_key, prompt_key)
            request = Request(
                key, (Message("user", tpl.render(prompt=text)),), self._params("actor", key)
            )

            def finish(c: Completion) -> Outcome:
                return Outcome(ev.ResponseGenerated, {"sample_index": k}, prompt_key, c.text)

            return request, finish

        return self._execute("actor", planned, build)

    def _sampling_id(self, role: str) -> list[Any]:
        return [getattr(self.s, f"{role}_{x}") for x in ("temperature", "top_p", "max_tokens")] + [
            self.s.seed
        ]

    # -- judge ----------------------------------------------------------------------------
    def judge(
        self, responses: Sequence[tuple[str, str, str, str]], already: int = 0
    ) -> StageReport:
        """``responses``: (response_key, prompt_key, prompt text, response text). N each,
        planned back to back so the backend can reuse the shared prompt. ``already``: responses
        the caller found fully judged and left out (see ``Runner._responses``)."""
        tpl = self.templates["judge"]
        key = self.unit_keys("judge")
        planned = [(key(r[0], j), (*r, j)) for r in responses for j in range(self.s.n)]

        def build(key: str, args: tuple[Any, ...]) -> tuple[Request, Finish]:
            response_key, prompt_key, prompt, response, j = args
            self._about[key] = (response_key, prompt_key)
            text = tpl.render(question=prompt, response=response)
            request = Request(
                key,
                (Message("user", text),),
                self._params("judge", key),
                structure=self.structure("judge"),
            )
            fields = {"prompt_key": prompt_key, "judge_index": j}
            decimals = self.s.score_decimals
            return request, self._finisher(
                ev.JudgementRecorded,
                request,
                response_key,
                fields,
                "score",
                lambda t: parse_score(t, decimals=decimals),
                self.s.judge_fallback,
                SCORE_LEAD,
                SCORE_CHOICES,
                int,
            )

        return self._execute("judge", planned, build, already * self.s.n)

    # -- meta-judge -----------------------------------------------------------------------
    def meta(
        self, targets: Sequence[tuple[str, str, str, str, Sequence[tuple[str, str]]]]
    ) -> StageReport:
        """``targets``: (response_key, prompt_key, prompt, response, [(judgement_key, text)]).
        Every ordered pair of the response's valid judgements, so each pair is seen in both
        orders."""
        tpl = self.templates["meta_judge"]
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
            self._about[key] = (rk, pk)
            text = tpl.render(
                question=prompt, response=response, judgement_a=first, judgement_b=second
            )
            request = Request(
                key,
                (Message("user", text),),
                self._params("meta", key),
                structure=self.structure("meta"),
            )
            fields = {"prompt_key": pk, "first_key": a, "second_key": b}
            return request, self._finisher(
                ev.MetaVerdictRecorded,
                request,
                rk,
                fields,
                "winner",
                parse_winner,
                self.s.meta_fallback,
                WINNER_LEAD,
                WINNER_CHOICES,
                str,
            )

        return self._execute("meta", planned, build)

    def _finisher(
        self,
        record: type[ev.EventRecord],
        request: Request,
        parent_key: str,
        fields: dict[str, Any],
        value_field: str,
        parse: Callable[[str], Parsed],
        fallback: bool,
        lead: str,
        choices: tuple[str, ...],
        cast: Callable[[str], Any],
        kind: str | None = None,
    ) -> Finish:
        """Parse the model's answer into the unit's event; with ``fallback`` on, an answer
        without a valid final line first gets one constrained continuation.

        A judgement the fallback rescues is stored with its recovered final line appended
        (``text`` + newline + ``lead`` + value), so the meta-judge and DPO see the score it
        counts with; ``payload.fallback`` keeps what the continuation wrote. Every answer's
        rationale is counted (``rationale_words``): the text before its final line, without
        lines copied from the prompt (``kind`` as for :func:`rationale_words`; by default
        'score' or 'winner' after ``value_field``)."""
        kind = kind or ("score" if value_field == "score" else "winner")
        prompt = request.messages[-1].content
        structure = request.structure.to_dict() if request.structure is not None else None

        def event(
            text: str,
            parsed: Parsed,
            first_error: str | None = None,
            fallback_info: dict[str, Any] | None = None,
        ) -> Outcome:
            if fallback_info is not None and parsed.error is None:
                text = f"{text.rstrip()}\n{lead}{fallback_info['text'].strip()}"
            values = {
                **fields,
                value_field: parsed.value,
                "parse_error": parsed.error,
                "fallback_used": fallback_info is not None,
                "structure": structure,
                "rationale_words": rationale_words(text, prompt, kind),
            }
            if fallback_info is not None:
                values["fallback"] = fallback_info | {"first_parse_error": first_error}
            return Outcome(record, values, parent_key, text)

        def finish(c: Completion) -> Outcome | Followup:
            parsed = parse(c.text)
            if parsed.error is None or parsed.error == ev.TIE or not fallback:
                return event(c.text, parsed)
            return Followup(
                _fallback_request(request, c.text, lead, choices),
                lambda f: event(c.text, *_fallback_parse(f, parsed, cast, choices)),
            )

        return finish


def _fallback_request(request: Request, text: str, lead: str, choices: tuple[str, ...]) -> Request:
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
