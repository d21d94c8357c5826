"""A whole run: configure it once, then each iteration's stages in order, resumably.

This is the one headless place the CLI (and later the TUI) call to drive the loop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from mrtui import __version__
from mrtui.backends.base import InferenceBackend
from mrtui.store import EventLog, NewEvent, content_key
from mrtui.store import events as ev

from .data import load_prompts
from .progress import NullProgress, ProgressSink
from .prompts import Template, load_template
from .settings import ConfigError, IterationSettings, RunSettings
from .stages import ModelIdentity, StageReport, Stages

BackendFactory = Callable[[RunSettings], InferenceBackend]
Resolver = Callable[[str], ModelIdentity]


def default_backend(settings: RunSettings) -> InferenceBackend:
    from mrtui.backends.registry import load_backend

    return load_backend(settings.backend, settings.model, **settings.backend_options)


def default_resolver(model: str) -> ModelIdentity:
    from mrtui.backends.models import resolve_model

    resolved = resolve_model(model)
    return ModelIdentity(resolved.model_id, resolved.sha256)


class Runner:
    def __init__(
        self,
        log: EventLog,
        settings: RunSettings,
        *,
        backend_factory: BackendFactory = default_backend,
        resolver: Resolver = default_resolver,
        progress: ProgressSink | None = None,
    ) -> None:
        self.log = log
        self.settings = settings
        self.progress = progress or NullProgress()
        self._backend_factory = backend_factory
        self._resolver = resolver
        self._backend: InferenceBackend | None = None
        self._model: ModelIdentity | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def backend(self) -> InferenceBackend:
        if self._backend is None:
            self.progress.message(f"loading {self.settings.model} on {self.settings.backend}")
            self._backend = self._backend_factory(self.settings)
            sha = self._backend.info().model_sha256
            if self._model is not None and sha and sha != self._model.sha256:
                raise ConfigError(
                    f"the backend loaded a model with sha256 {sha[:12]}…, not the "
                    f"resolved {self._model.sha256[:12]}…; check --model"
                )
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def model(self) -> ModelIdentity:
        if self._model is None:
            self._model = self._resolver(self.settings.model)
        return self._model

    # -- run ------------------------------------------------------------------------------
    def run(self) -> list[StageReport]:
        prompts = self.configure()
        reports: list[StageReport] = []
        for iteration in range(1, self.settings.iterations + 1):
            reports += self.run_iteration(iteration, prompts)
        return reports

    def configure(self) -> list[tuple[str, str]]:
        """Log the run's configuration and prompts (once) and return the run's prompts."""
        s = self.settings
        model = self.model()
        run_key = content_key("run", s.run_id)
        if self.log.has(run_key):
            rows = self.log.query(
                "SELECT payload->>'$.model_sha256', payload->>'$.model' FROM events WHERE key = ?",
                [run_key],
            )
            if rows and rows[0][0] != model.sha256:
                raise ConfigError(
                    f"run {s.run_id!r} uses model {rows[0][1]}; pass the same "
                    "--model, or --run NEW_NAME to start another run"
                )
        else:
            self.log.append(
                [
                    NewEvent(
                        ev.RUN_CONFIGURED,
                        s.run_id,
                        {
                            "model": s.model,
                            "model_sha256": model.sha256,
                            "backend": s.backend,
                            "backend_options": s.backend_options,
                            "iterations": s.iterations,
                            "defaults": s.defaults.to_dict(),
                            "overrides": {str(k): v for k, v in s.overrides.items()},
                            "mrtui_version": __version__,
                        },
                        key=run_key,
                    )
                ]
            )
        if s.prompts:
            new = []
            for row in load_prompts(s.prompts)[: s.prompt_limit]:
                key = content_key("prompt", s.run_id, row.text)
                if not self.log.has(key) and key not in {e.key for e in new}:
                    new.append(
                        NewEvent(
                            ev.PROMPT_ADDED,
                            s.run_id,
                            {
                                "index": row.index,
                                "source_id": row.source_id,
                                "source": str(s.prompts),
                            },
                            key=key,
                            text=row.text,
                        )
                    )
            if new:
                self.log.append(new)
                self.progress.message(f"added {len(new)} prompts from {s.prompts}")
        prompts = [
            (k, t)
            for k, t in self.log.query(
                "SELECT prompt_key, prompt FROM prompts WHERE run_id = ? ORDER BY seq", [s.run_id]
            )
        ]
        if not prompts:
            raise ConfigError(f"run {s.run_id!r} has no prompts yet; pass --prompts FILE.jsonl")
        return prompts

    def _templates(self, s: IterationSettings) -> dict[str, Template]:
        templates = {
            "actor": load_template(s.actor_template, role="actor", required={"prompt"}),
            "judge": load_template(
                s.judge_template, role="judge", required={"question", "response"}
            ),
            "meta_judge": load_template(
                s.meta_template,
                role="meta-judge",
                required={"question", "response", "judgement_a", "judgement_b"},
            ),
        }
        new = []
        for role, t in templates.items():
            key = content_key("template", self.settings.run_id, t.sha256)
            if not self.log.has(key):
                new.append(
                    NewEvent(
                        ev.TEMPLATE_REGISTERED,
                        self.settings.run_id,
                        {"name": t.name, "role": role, "sha256": t.sha256, "segments": t.segments},
                        key=key,
                        text=t.text,
                    )
                )
        self.log.append(new)
        return templates

    def _start_iteration(self, iteration: int, s: IterationSettings) -> None:
        run_id = self.settings.run_id
        model = self.model()
        settings = s.to_dict()
        key = content_key("iteration", run_id, iteration, settings, model.sha256)
        if self.log.has(key):
            return
        rows = self.log.query(
            "SELECT payload->'$.settings', payload->>'$.model.model_sha256' FROM events "
            "WHERE event_type = ? AND run_id = ? AND iteration = ? ORDER BY seq DESC LIMIT 1",
            [ev.ITERATION_STARTED, run_id, iteration],
        )
        if rows:
            import json

            before = json.loads(rows[0][0])
            changed = [
                f
                for f in (*IterationSettings.GENERATION_FIELDS, "k", "n")
                if before.get(f) != settings.get(f)
            ]
            if changed or rows[0][1] != model.sha256:
                what = (
                    ", ".join(f"{f}={before.get(f)!r} (now {settings.get(f)!r})" for f in changed)
                    or "a different model"
                )
                raise ConfigError(
                    f"iteration {iteration} of run {run_id!r} was started with "
                    f"{what}; rerun with the same settings, or pass --run "
                    "NEW_NAME to start another run"
                )
        self.log.append(
            [
                NewEvent(
                    ev.ITERATION_STARTED,
                    run_id,
                    {
                        "settings": settings,
                        "model": {
                            "model_id": model.model_id,
                            "model_sha256": model.sha256,
                            "backend": self.settings.backend,
                        },
                    },
                    iteration=iteration,
                    key=key,
                )
            ]
        )

    def run_iteration(self, iteration: int, prompts: list[tuple[str, str]]) -> list[StageReport]:
        s = self.settings.for_iteration(iteration)
        templates = self._templates(s)
        self._start_iteration(iteration, s)
        stages = Stages(
            self.log,
            self.settings.run_id,
            iteration,
            s,
            self.model(),
            templates,
            self.backend,
            self.progress,
        )
        reports = [stages.actor(prompts)]
        reports.append(stages.judge(self._responses(iteration)))
        reports.append(stages.meta(self._targets(iteration, s)))
        finished = content_key("iteration-finished", self.settings.run_id, iteration)
        if not any(r.failed for r in reports) and not self.log.has(finished):
            self.log.append(
                [
                    NewEvent(
                        ev.ITERATION_FINISHED,
                        self.settings.run_id,
                        {
                            "stages": {
                                r.stage: {
                                    "planned": r.planned,
                                    "done": r.done,
                                    "skipped": r.skipped,
                                }
                                for r in reports
                            }
                        },
                        iteration=iteration,
                        key=finished,
                    )
                ]
            )
        return reports

    # -- planning queries -----------------------------------------------------------------
    def _responses(self, iteration: int) -> list[Any]:
        return self.log.query(
            "SELECT r.response_key, r.prompt_key, p.prompt, r.response FROM responses r "
            "JOIN prompts p ON p.prompt_key = r.prompt_key AND p.run_id = r.run_id "
            "WHERE r.run_id = ? AND r.iteration = ? ORDER BY p.seq, r.sample_index",
            [self.settings.run_id, iteration],
        )

    def _targets(self, iteration: int, s: IterationSettings) -> list[Any]:
        """Meta-judge targets of prompts whose K×N judgements are all in the log."""
        run_id = self.settings.run_id
        with self.log.reader() as con:
            targets = con.execute(
                "WITH complete AS (SELECT prompt_key FROM response_scores "
                "  WHERE run_id = ? AND iteration = ? GROUP BY prompt_key "
                "  HAVING count(*) >= ? AND sum(judgement_count) >= ?) "
                "SELECT t.response_key, t.prompt_key, p.prompt, r.response "
                "FROM meta_targets t JOIN complete c ON c.prompt_key = t.prompt_key "
                "JOIN responses r ON r.response_key = t.response_key "
                "JOIN prompts p ON p.prompt_key = t.prompt_key AND p.run_id = t.run_id "
                "WHERE t.run_id = ? AND t.iteration = ? ORDER BY p.seq",
                [run_id, iteration, s.k, s.k * s.n, run_id, iteration],
            ).fetchall()
            rows = con.execute(
                "SELECT j.response_key, j.judgement_key, j.judgement FROM judgements j "
                "JOIN meta_targets t ON t.response_key = j.response_key "
                "WHERE j.valid AND t.run_id = ? AND t.iteration = ? "
                "ORDER BY j.response_key, j.judge_index, j.judgement_key",
                [run_id, iteration],
            ).fetchall()
        judgements: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for response_key, key, text in rows:
            judgements[response_key].append((key, text))
        return [(rk, pk, prompt, response, judgements[rk]) for rk, pk, prompt, response in targets]
