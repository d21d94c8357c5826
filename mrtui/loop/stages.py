"""The Meta-Rewarding data stages: actor → judge → meta-judge, resumable unit by unit.

Every unit of work (one response, one judgement, one ordered meta-comparison) has a key
derived from its inputs: run, iteration, what it is about, its index, the model file's sha256,
the template's sha256 and the sampling settings. A stage plans all its units, skips those whose
key is already in the log, sends the rest to the backend as one batch and logs each result as
it arrives. Kill the process at any point and the next run picks up the remaining units.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mrtui.backends.base import (
    BackendInfo,
    Completion,
    Failure,
    InferenceBackend,
    Message,
    Request,
    SamplingParams,
)
from mrtui.store import EventLog, NewEvent, content_key
from mrtui.store import events as ev

from .progress import NullProgress, ProgressSink
from .prompts import Parsed, Template, parse_score, parse_winner
from .settings import IterationSettings

SCORE_CHOICES = tuple(str(i) for i in range(6))
WINNER_CHOICES = ("A", "B")


@dataclass(frozen=True)
class ModelIdentity:
    model_id: str
    sha256: str
    path: str | None = None


@dataclass
class Unit:
    """A planned unit of work; ``finish`` turns the backend's answer into an event, or into a
    follow-up request (a constrained fallback) whose answer completes the unit."""

    key: str
    request: Request
    finish: Callable[[Completion], NewEvent | Followup]


@dataclass
class Followup:
    request: Request
    finish: Callable[[Completion | None], NewEvent]


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
    failures: list[str] = field(default_factory=list)


def unit_seed(base: int, key: str) -> int:
    return (base * 1_000_003 + int(key.split(":", 1)[1][:8], 16)) % 2**31


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
        progress: ProgressSink | None = None,
    ) -> None:
        self.log = log
        self.run_id = run_id
        self.iteration = iteration
        self.s = settings
        self.model = model
        self.templates = templates
        self._backend_factory = backend
        self.progress = progress or NullProgress()

    # -- shared machinery -----------------------------------------------------------------
    def _key(self, kind: str, *parts: Any) -> str:
        return content_key(kind, self.run_id, self.iteration, *parts, self.model.sha256)

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
        prov: dict[str, Any] = {
            "model_id": info.model_id,
            "model_sha256": info.model_sha256,
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
        return prov

    def _execute(self, stage: str, units: Sequence[Unit]) -> StageReport:
        todo = [u for u in units if not self.log.has(u.key)]
        report = StageReport(
            self.iteration, stage, planned=len(units), skipped=len(units) - len(todo)
        )
        self.progress.stage_started(self.iteration, stage, len(units), report.skipped)
        self.log.append(
            [
                NewEvent(
                    ev.STAGE_STARTED,
                    self.run_id,
                    {"stage": stage, "planned": len(units), "todo": len(todo)},
                    iteration=self.iteration,
                )
            ]
        )
        t0 = time.perf_counter()
        if todo:
            self._run_units(stage, todo, report)
        report.wall_s = time.perf_counter() - t0
        self.log.append(
            [
                NewEvent(
                    ev.STAGE_FINISHED,
                    self.run_id,
                    {
                        "stage": stage,
                        "planned": report.planned,
                        "skipped": report.skipped,
                        "done": report.done,
                        "failed": report.failed,
                        "wall_s": round(report.wall_s, 3),
                        "completion_tokens": report.completion_tokens,
                    },
                    iteration=self.iteration,
                )
            ]
        )
        self.progress.stage_finished(self.iteration, stage, report.done, report.failed)
        return report

    def _run_units(self, stage: str, todo: Sequence[Unit], report: StageReport) -> None:
        backend = self._backend_factory()
        info = backend.info()
        pending: dict[str, Callable[[Completion | None], NewEvent | Followup]] = {}
        requests: list[Request] = []
        for u in todo:
            pending[u.request.id] = u.finish  # type: ignore[assignment]
            requests.append(u.request)
        units = {u.request.id: u for u in todo}
        first_answer: dict[str, Completion] = {}  # the answer a fallback continues
        while requests:
            followups: list[Followup] = []
            for result in backend.generate(requests):
                finish = pending.pop(result.request_id)
                unit_key = result.request_id.split("#", 1)[0]
                if isinstance(result, Failure):
                    if "#" in result.request_id:  # a failed fallback still completes the unit
                        outcome = finish(None)
                    else:
                        self._log_failure(stage, info, units[unit_key], result, report)
                        continue
                else:
                    report.completion_tokens += result.completion_tokens
                    outcome = finish(result)
                if isinstance(outcome, Followup):
                    assert isinstance(result, Completion)
                    first_answer[unit_key] = result
                    followups.append(outcome)
                    continue
                outcome.payload.update(
                    self._provenance(
                        info,
                        self._template_for(stage),
                        units[unit_key].request,
                        first_answer.pop(unit_key, result),
                    )
                )
                self.log.append([outcome])
                report.done += 1
                self.progress.advanced(1, tokens=getattr(result, "completion_tokens", 0))
            requests = []
            for f in followups:
                pending[f.request.id] = f.finish
                requests.append(f.request)

    def _log_failure(
        self, stage: str, info: BackendInfo, unit: Unit, failure: Failure, report: StageReport
    ) -> None:
        payload = {"stage": stage, "error": failure.error}
        payload.update(self._provenance(info, self._template_for(stage), unit.request, failure))
        self.log.append(
            [
                NewEvent(
                    ev.REQUEST_FAILED,
                    self.run_id,
                    payload,
                    iteration=self.iteration,
                    parent_key=unit.key,
                )
            ]
        )
        report.failed += 1
        if len(report.failures) < 5:
            report.failures.append(failure.error)
        self.progress.advanced(1, failed=True)

    def _template_for(self, stage: str) -> Template:
        return self.templates[{"actor": "actor", "judge": "judge", "meta": "meta_judge"}[stage]]

    # -- actor ----------------------------------------------------------------------------
    def actor(self, prompts: Sequence[tuple[str, str]]) -> StageReport:
        """``prompts``: (prompt_key, text). K responses each."""
        tpl = self.templates["actor"]
        units = []
        for prompt_key, text in prompts:
            messages = (Message("user", tpl.render(prompt=text)),)
            for k in range(self.s.k):
                key = self._key("resp", prompt_key, k, tpl.sha256, self._sampling_id("actor"))
                request = Request(key, messages, self._params("actor", key))
                units.append(Unit(key, request, self._finish_response(key, prompt_key, k)))
        return self._execute("actor", units)

    def _sampling_id(self, role: str) -> list[Any]:
        return [getattr(self.s, f"{role}_{x}") for x in ("temperature", "top_p", "max_tokens")] + [
            self.s.seed
        ]

    def _finish_response(self, key: str, prompt_key: str, k: int) -> Callable[..., NewEvent]:
        def finish(c: Completion) -> NewEvent:
            return NewEvent(
                ev.RESPONSE_GENERATED,
                self.run_id,
                {"sample_index": k},
                iteration=self.iteration,
                key=key,
                parent_key=prompt_key,
                text=c.text,
            )

        return finish

    # -- judge ----------------------------------------------------------------------------
    def judge(self, responses: Sequence[tuple[str, str, str, str]]) -> StageReport:
        """``responses``: (response_key, prompt_key, prompt text, response text). N each,
        planned back to back so the backend can reuse the shared prompt."""
        tpl = self.templates["judge"]
        units = []
        for response_key, prompt_key, prompt, response in responses:
            messages = (Message("user", tpl.render(question=prompt, response=response)),)
            for j in range(self.s.n):
                key = self._key(
                    "judg",
                    response_key,
                    j,
                    tpl.sha256,
                    self._sampling_id("judge"),
                    self.s.judge_fallback,
                )
                request = Request(key, messages, self._params("judge", key))
                units.append(
                    Unit(
                        key,
                        request,
                        self._finish_judgement(key, request, response_key, prompt_key, j),
                    )
                )
        return self._execute("judge", units)

    def _finish_judgement(
        self, key: str, request: Request, response_key: str, prompt_key: str, j: int
    ) -> Callable[[Completion], NewEvent | Followup]:
        def event(
            text: str,
            parsed: Parsed,
            first_error: str | None = None,
            fallback: dict[str, Any] | None = None,
        ) -> NewEvent:
            payload: dict[str, Any] = {
                "prompt_key": prompt_key,
                "judge_index": j,
                "score": parsed.value,
                "parse_error": parsed.error,
                "fallback_used": fallback is not None,
            }
            if fallback is not None:
                payload["fallback"] = fallback | {"first_parse_error": first_error}
            return NewEvent(
                ev.JUDGEMENT_RECORDED,
                self.run_id,
                payload,
                iteration=self.iteration,
                key=key,
                parent_key=response_key,
                text=text,
            )

        def finish(c: Completion) -> NewEvent | Followup:
            parsed = parse_score(c.text)
            if parsed.error is None or not self.s.judge_fallback:
                return event(c.text, parsed)
            return Followup(
                _fallback_request(request, c.text, "Score: ", SCORE_CHOICES),
                lambda f: event(c.text, *_fallback_parse(f, parsed, int)),
            )

        return finish

    # -- meta-judge -----------------------------------------------------------------------
    def meta(
        self, targets: Sequence[tuple[str, str, str, str, Sequence[tuple[str, str]]]]
    ) -> StageReport:
        """``targets``: (response_key, prompt_key, prompt, response, [(judgement_key, text)]).
        Every ordered pair of the response's valid judgements, so each pair is seen in both
        orders."""
        tpl = self.templates["meta_judge"]
        units = []
        for response_key, prompt_key, prompt, response, judgements in targets:
            for first_key, first in judgements:
                for second_key, second in judgements:
                    if first_key == second_key:
                        continue
                    key = self._key(
                        "meta",
                        response_key,
                        first_key,
                        second_key,
                        tpl.sha256,
                        self._sampling_id("meta"),
                        self.s.meta_fallback,
                    )
                    text = tpl.render(
                        question=prompt, response=response, judgement_a=first, judgement_b=second
                    )
                    request = Request(key, (Message("user", text),), self._params("meta", key))
                    units.append(
                        Unit(
                            key,
                            request,
                            self._finish_verdict(
                                key, request, response_key, prompt_key, first_key, second_key
                            ),
                        )
                    )
        return self._execute("meta", units)

    def _finish_verdict(
        self,
        key: str,
        request: Request,
        response_key: str,
        prompt_key: str,
        first_key: str,
        second_key: str,
    ) -> Callable[[Completion], NewEvent | Followup]:
        def event(
            text: str,
            parsed: Parsed,
            first_error: str | None = None,
            fallback: dict[str, Any] | None = None,
        ) -> NewEvent:
            payload: dict[str, Any] = {
                "prompt_key": prompt_key,
                "first_key": first_key,
                "second_key": second_key,
                "winner": parsed.value,
                "parse_error": parsed.error,
                "fallback_used": fallback is not None,
            }
            if fallback is not None:
                payload["fallback"] = fallback | {"first_parse_error": first_error}
            return NewEvent(
                ev.META_VERDICT_RECORDED,
                self.run_id,
                payload,
                iteration=self.iteration,
                key=key,
                parent_key=response_key,
                text=text,
            )

        def finish(c: Completion) -> NewEvent | Followup:
            parsed = parse_winner(c.text)
            if parsed.error is None or parsed.error == "tie" or not self.s.meta_fallback:
                return event(c.text, parsed)
            return Followup(
                _fallback_request(request, c.text, "Winner: Judgment ", WINNER_CHOICES),
                lambda f: event(c.text, *_fallback_parse(f, parsed, str)),
            )

        return finish


def _fallback_request(request: Request, text: str, lead: str, choices: tuple[str, ...]) -> Request:
    """Continue the model's own answer with a final line whose value is constrained."""
    prefix = text.rstrip() + "\n" + lead
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=2, seed=request.params.seed)
    return Request(
        request.id + "#fallback", request.messages, params, assistant_prefix=prefix, choices=choices
    )


def _fallback_parse(
    f: Completion | None, first: Parsed, cast: Callable[[str], Any]
) -> tuple[Parsed, str | None, dict[str, Any]]:
    if f is None:
        return first, first.error, {"text": None, "error": "fallback request failed"}
    value = f.text.strip()
    ok = value in SCORE_CHOICES + WINNER_CHOICES
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
