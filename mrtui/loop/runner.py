"""A whole run: configure it once, then each iteration's stages in order, resumably.

Front ends start runs through :mod:`mrtui.loop.session`, which drives this.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mrtui import __version__
from mrtui.backends.base import BackendError, InferenceBackend
from mrtui.store import EventLog, content_key
from mrtui.store import events as ev

from . import pool
from .checkpoints import Checkpoint, from_event, require
from .data import load_prompts
from .progress import CancelToken, Note, ProgressSink, ignore
from .prompts import Template
from .settings import ConfigError, EvalSettings, IterationSettings, RunSettings
from .stage_table import STAGE_TABLE
from .stages import ModelIdentity, StageReport, Stages
from .training import TrainReport, TrainStage

BackendFactory = Callable[[RunSettings, str], InferenceBackend]
Resolver = Callable[[str], ModelIdentity]


def default_backend(settings: RunSettings, model: str) -> InferenceBackend:
    """The run's backend on ``model``. A backend that loads HF folders (vLLM, transformers)
    given a GGUF reference (the run's model, an eval judge) gets the folder it was converted
    to, once and cached; llama.cpp converts an HF folder to GGUF itself (once, cached): one
    config serves either kind of backend."""
    from mrtui.backends.models import is_gguf_reference
    from mrtui.backends.registry import load_backend, model_format

    options = dict(settings.backend_options)
    fmt = model_format(settings.backend)
    if fmt == "hf" and is_gguf_reference(model):
        from mrtui.backends.hf_models import materialize_hf

        model = str(materialize_hf(model))
    elif fmt == "gguf":  # an HF model is served in the GGUF type trained models export to
        options.setdefault("gguf_type", settings.defaults.export_type)
    return load_backend(settings.backend, model, **options)


def default_resolver(model: str) -> ModelIdentity:
    from mrtui.backends.model_ref import resolve_reference

    r = resolve_reference(model)
    return ModelIdentity(r.ref, r.sha256, str(r.path), r.format, r.origin, r.quantization)


class Runner:
    def __init__(
        self,
        log: EventLog,
        settings: RunSettings,
        *,
        backend_factory: BackendFactory = default_backend,
        resolver: Resolver = default_resolver,
        progress: ProgressSink = ignore,
        train_stage: Callable[..., TrainStage] = TrainStage,
        cancel: CancelToken | None = None,
    ) -> None:
        self.log = log
        self.settings = settings
        self.progress = progress
        self.cancel = cancel or CancelToken()
        self._backend_factory = backend_factory
        self._resolver = resolver
        self._backend: InferenceBackend | None = None
        self._backend_model: tuple[str, dict[str, Any]] | None = None  # (ref, extra options)
        self._model: ModelIdentity | None = None
        self._train_stage = train_stage
        self.train_reports: list[TrainReport] = []

    # -- lifecycle ------------------------------------------------------------------------
    def resolve(self, model: str) -> ModelIdentity:
        """The identity of a model reference (a packaged name, a path, ``hf:REPO/FILE``),
        resolved the way the run resolves its own model."""
        return self._resolver(model)

    def open_backend(self, settings: RunSettings, model: str) -> InferenceBackend:
        """A new backend on ``model`` as ``settings`` configure it, from the run's backend
        factory; the caller owns it and closes it (the evaluation's judge)."""
        return self._backend_factory(settings, model)

    def backend_on(
        self, checkpoint: Checkpoint, options: dict[str, Any] | None = None
    ) -> InferenceBackend:
        """The backend serving ``checkpoint``, started (or swapped) on first use: the run's
        model as the user named it, else a trained checkpoint's HF folder for a backend that
        loads HF folders (vLLM, transformers) and its GGUF export for the others (llama.cpp
        converts a folder without one). The run's identities stay the same whichever backend
        serves it. ``options`` are backend options over the run's (evaluation's parallel
        decoding); a backend started with other ones is swapped."""
        from mrtui.backends.registry import model_format

        own = checkpoint.sha256 == self.model().sha256
        if own:
            ref = self.settings.model
        else:
            folder, gguf = checkpoint.hf_dir, checkpoint.gguf_path
            hf = model_format(self.settings.backend) == "hf"
            ref = str((folder or gguf) if hf else (gguf or folder))
        wanted = (ref, dict(options or {}))
        if self._backend is not None and self._backend_model != wanted:
            self.close()
        if self._backend is None:
            self.progress(Note(f"loading {checkpoint.model_id} on {self.settings.backend}"))
            settings = self.settings
            if options:
                settings = replace(
                    settings, backend_options={**settings.backend_options, **options}
                )
            try:
                self._backend = self.open_backend(settings, ref)
            except BackendError:
                if not own:  # a checkpoint that is not where the log says: name it and its hash
                    require(ref, checkpoint.sha256, f"M_{checkpoint.for_iteration}")
                raise
            self._backend_model = wanted
            self._backend.require(self.features())
            sha = self._backend.info().model_sha256
            if sha and sha not in checkpoint.served_hashes:
                raise ConfigError(
                    f"the backend loaded a model with sha256 {sha[:12]}…, not "
                    f"the expected {checkpoint.sha256[:12]}…; check --model"
                )
        return self._backend

    def features(self) -> list[str]:
        """What the run's settings need of the backend beyond generating text, in any of its
        iterations (checked when the backend starts, before its first request)."""
        from mrtui.backends.base import CHOICE_PROBS

        its = range(1, self.settings.iterations + 1)
        expected = any(self.settings.for_iteration(i).needs_choice_probs for i in its)
        return [CHOICE_PROBS] if expected else []

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
            self._backend_model = None

    def checkpoint_for(self, iteration: int) -> Checkpoint:
        """M_iteration: the run's model for iteration 1, else the previous iteration's
        ``CheckpointCreated``."""
        if iteration == 1:
            m = self.model()
            path = m.path or self.settings.model
            return Checkpoint(
                m.model_id,
                m.sha256,
                gguf_path=path if m.format == "gguf" else None,
                hf_dir=path if m.format == "hf" else None,
                format=m.format,
                quantization=m.quantization,
            )
        rows = self.log.query(
            "SELECT checkpoint_key FROM latest_checkpoints WHERE run_id = ? AND for_iteration = ?",
            [self.settings.run_id, iteration],
        )
        payload = self.log.payload(rows[0][0]) if rows else None
        if payload is None:
            raise ConfigError(
                f"iteration {iteration - 1} of run {self.settings.run_id!r} has "
                f"no trained model yet; run iteration {iteration - 1} (with "
                "training) first"
            )
        return from_event(self.log.path, payload)

    def workdir(self) -> Path:
        """Where trained models of this run live: next to the log file."""
        path = self.log.path
        return path.parent / f"{path.stem}.checkpoints" / self.settings.run_id

    def model(self) -> ModelIdentity:
        if self._model is None:
            self._model = self.resolve(self.settings.model)
        return self._model

    # -- run ------------------------------------------------------------------------------
    def run(self) -> list[StageReport]:
        prompts = self.configure()
        pool.check(self.settings, prompts)
        reports: list[StageReport] = []
        for iteration in range(1, self.settings.iterations + 1):
            reports += self.evaluate([iteration])  # M_t, before its stages use it too
            if self.cancel.cancelled:
                break
            reports += self.run_iteration(iteration, prompts)
            if self.cancel.cancelled:
                break
        last = self.settings.iterations + 1
        if not self.cancel.cancelled and self.settings.for_iteration(last - 1).train:
            reports += self.evaluate([last])  # the model the last iteration trained
        return reports

    def evaluate(
        self, iterations: list[int], settings: EvalSettings | None = None
    ) -> list[StageReport]:
        """Evaluate the models of ``iterations`` (the run config's evaluation by default;
        nothing if it asks for none). A model that does not exist yet is skipped."""
        from mrtui.evaluation.run import Evaluation

        settings = settings or self.settings.evaluation
        if settings is None:
            return []
        evaluation = Evaluation(self, settings)
        exist = set(evaluation.available())
        return evaluation.run([i for i in iterations if i in exist])

    def configure(self) -> list[tuple[str, str]]:
        """Log the run's configuration and prompts (once) and return the run's prompts."""
        s = self.settings
        model = self.model()
        run_key = content_key("run", s.run_id)
        if self.log.has(run_key):
            configured = self.log.payload(run_key) or {}
            if configured.get("model_sha256") != model.sha256:
                raise ConfigError(
                    f"run {s.run_id!r} uses model {configured.get('model')}; pass the same "
                    "--model, or --run NEW_NAME to start another run"
                )
        else:
            record = ev.RunConfigured(
                model=s.model,
                model_sha256=model.sha256,
                model_format=model.format,
                model_origin=model.origin,
                model_quantization=model.quantization,
                backend=s.backend,
                backend_options=s.backend_options,
                iterations=s.iterations,
                defaults=s.defaults.flat(),
                overrides={str(k): v for k, v in s.overrides.items()},
                mrtui_version=__version__,
                evaluation=s.evaluation.to_dict() if s.evaluation else None,
            )
            self.log.append([record.event(s.run_id, key=run_key)])
        if s.prompts:
            new, seen = [], set()
            for row in load_prompts(s.prompts)[: s.prompt_limit]:
                key = content_key("prompt", s.run_id, row.text)
                if not self.log.has(key) and key not in seen:
                    seen.add(key)
                    added = ev.PromptAdded(
                        index=row.index, source_id=row.source_id, source=str(s.prompts)
                    )
                    new.append(added.event(s.run_id, key=key, text=row.text))
            if new:
                self.log.append(new)
                self.progress(Note(f"added {len(new)} prompts from {s.prompts}"))
        prompts = [
            (k, t)
            for k, t in self.log.query(
                "SELECT prompt_key, prompt FROM prompts WHERE run_id = ? ORDER BY seq", [s.run_id]
            )
        ]
        if not prompts:
            raise ConfigError(f"run {s.run_id!r} has no prompts yet; pass --prompts FILE.jsonl")
        return prompts

    def register_templates(self, s: IterationSettings) -> dict[str, Template]:
        """Load the template of every stage a run with ``s`` has (the stage table), keyed by
        its template role, and log each one the run has not registered yet."""
        templates = {
            spec.template_role: spec.load_template(s) for spec in STAGE_TABLE if spec.used(s)
        }
        new = []
        for role, t in templates.items():
            key = content_key("template", self.settings.run_id, t.sha256)
            if not self.log.has(key):
                record = ev.TemplateRegistered(
                    name=t.name, role=role, sha256=t.sha256, segments=t.segments
                )
                new.append(record.event(self.settings.run_id, key=key, text=t.text))
        self.log.append(new)
        return templates

    def start_iteration(self, iteration: int, s: IterationSettings, model: ModelIdentity) -> None:
        run_id = self.settings.run_id
        settings = s.flat()
        key = content_key("iteration", run_id, iteration, settings, model.sha256)
        if self.log.has(key):
            return
        rows = self.log.query(
            "SELECT settings, model_sha256 FROM iteration_settings WHERE run_id = ? "
            "AND iteration = ?",
            [run_id, iteration],
        )
        if rows:
            before, before_sha = json.loads(rows[0][0]), rows[0][1]
            changed = _changed_settings(before, settings)
            if changed or before_sha != model.sha256:
                what = (
                    ", ".join(f"{f}={before.get(f)!r} (now {settings.get(f)!r})" for f in changed)
                    or "a different model"
                )
                raise ConfigError(
                    f"iteration {iteration} of run {run_id!r} was started with "
                    f"{what}; rerun with the same settings, or pass --run "
                    "NEW_NAME to start another run"
                )
        record = ev.IterationStarted(
            settings=settings,
            model={
                "model_id": model.model_id,
                "model_sha256": model.sha256,
                "backend": self.settings.backend,
            },
        )
        self.log.append([record.event(run_id, iteration=iteration, key=key)])

    def run_iteration(self, iteration: int, prompts: list[tuple[str, str]]) -> list[StageReport]:
        """Actor, judge and meta-judge on M_iteration, then (if set) DPO to M_iteration+1."""
        s = self.settings.for_iteration(iteration)
        checkpoint = self.checkpoint_for(iteration)
        model = ModelIdentity(
            checkpoint.model_id, checkpoint.sha256, checkpoint.gguf_path or checkpoint.hf_dir
        )
        templates = self.register_templates(s)
        if s.judge_check:
            from .judge_gate import gate

            action = gate(
                self.log, self.settings.run_id, iteration, s, model,
                lambda: self.backend_on(checkpoint), self.progress,
            )  # fmt: skip
            if action == "actor":
                s = s.with_flat(train_kinds="actor")
        self.start_iteration(iteration, s, model)
        stages = Stages(
            self.log,
            self.settings.run_id,
            iteration,
            s,
            model,
            templates,
            lambda: self.backend_on(checkpoint),
            self.progress,
            self.cancel,
        )
        drawn = pool.draw(self.log, self.settings.run_id, iteration, s, prompts, self.progress)
        reports = [stages.actor(drawn)]
        if s.actor_judging == "pairwise" and not self.cancel.cancelled:
            reports.append(stages.pairwise(self.responses_to_compare(iteration, s)))
        if not self.cancel.cancelled:
            todo, judged = self.responses_to_judge(
                iteration, s, stages.template_for("judge").sha256, model.sha256
            )
            reports.append(stages.judge(todo, judged))
        meta = self.meta_needed(iteration, s)
        if not meta:
            self.progress(
                Note(
                    f"iteration {iteration}: training uses no judge pairs, so meta-judging is "
                    "skipped (skip_unused_meta)"
                )
            )
        elif not self.cancel.cancelled:
            reports.append(stages.meta(self.meta_targets(iteration, s)))
        stages_run = sum(spec.used(s) for spec in STAGE_TABLE) - (not meta)
        complete = len(reports) == stages_run and not any(r.failed or r.stopped for r in reports)
        if s.train and complete and not self.cancel.cancelled:
            self.close()  # free the inference model's memory for training
            report = self.train(iteration, s, checkpoint)
            self.train_reports.append(report)
            complete = not report.stopped
        finished = content_key("iteration-finished", self.settings.run_id, iteration)
        if complete and not self.log.has(finished):
            record = ev.IterationFinished(
                stages={
                    r.stage: {"planned": r.planned, "done": r.done, "skipped": r.skipped}
                    for r in reports
                },
                trained=s.train,
            )
            self.log.append([record.event(self.settings.run_id, iteration=iteration, key=finished)])
        return reports

    @staticmethod
    def meta_needed(iteration: int, s: IterationSettings) -> bool:
        """Whether the iteration runs the meta-judge: not when it trains on actor pairs only
        and ``skip_unused_meta`` is on (without training, its data may still be wanted)."""
        return not (s.skip_unused_meta and s.train and "judge" not in s.kinds_for(iteration))

    def train(
        self,
        iteration: int,
        s: IterationSettings | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> TrainReport:
        """DPO on ``iteration``'s pairs (skipped if its checkpoint is already logged)."""
        from mrtui.backends.registry import model_format

        s = s or self.settings.for_iteration(iteration)
        checkpoint = checkpoint or self.checkpoint_for(iteration)
        base = self.checkpoint_for(1)
        stage = self._train_stage(
            self.log,
            self.settings.run_id,
            iteration,
            s,
            checkpoint,
            Path(base.gguf_path) if base.gguf_path else None,
            self.workdir(),
            self.progress,
            cancel=self.cancel,
            export=model_format(self.settings.backend) != "hf",
        )
        return stage.run()

    # -- planning queries: public, the benchmarks time them ------------------------------
    def responses_to_judge(
        self, iteration: int, s: IterationSettings, judge_sha: str, model_sha: str
    ) -> tuple[list[Any], int]:
        """The responses still to judge, and how many are fully judged already. A response
        is fully judged when the log holds its N judgements from this judge template and
        model (the iteration's sampling settings cannot change, see :meth:`start_iteration`), so
        a resume over a million judgements plans keys only for the responses that lack some."""
        run_id = self.settings.run_id
        with self.log.reader() as con:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE mrtui_judged AS SELECT parent_key AS response_key "
                "FROM events WHERE event_type = 'JudgementRecorded' AND run_id = ? "
                "AND iteration = ? AND template_sha256 = ? AND model_sha256 = ? "
                "AND item_index >= 0 AND item_index < ? "
                "GROUP BY parent_key HAVING count(DISTINCT item_index) = ?",
                [run_id, iteration, judge_sha, model_sha, s.n, s.n],
            )
            todo = con.execute(
                "SELECT r.response_key, r.prompt_key, p.prompt, r.response FROM responses r "
                "JOIN prompts p ON p.prompt_key = r.prompt_key AND p.run_id = r.run_id "
                "WHERE r.run_id = ? AND r.iteration = ? "
                "AND r.response_key NOT IN (SELECT response_key FROM mrtui_judged) "
                "ORDER BY p.seq, r.sample_index",
                [run_id, iteration],
            ).fetchall()
            judged = con.execute(
                "SELECT count(*) FROM mrtui_judged j JOIN responses r USING (response_key) "
                "WHERE r.run_id = ? AND r.iteration = ?",
                [run_id, iteration],
            ).fetchall()[0][0]
            con.execute("DROP TABLE mrtui_judged")
        return todo, judged

    def responses_to_compare(self, iteration: int, s: IterationSettings) -> list[Any]:
        """The prompts whose K responses are all in the log, each with its responses (their
        pairs are compared; the stage skips pairs already compared)."""
        run_id = self.settings.run_id
        with self.log.reader() as con:
            rows = con.execute(
                "SELECT r.prompt_key, any_value(p.prompt), "
                "list((r.response_key, r.response) ORDER BY r.sample_index) "
                "FROM responses r "
                "JOIN prompts p ON p.prompt_key = r.prompt_key AND p.run_id = r.run_id "
                "WHERE r.run_id = ? AND r.iteration = ? GROUP BY r.prompt_key "
                "HAVING count(*) >= ? ORDER BY min(p.seq)",
                [run_id, iteration, s.k],
            ).fetchall()
        return [(pk, prompt, [tuple(x) for x in rs]) for pk, prompt, rs in rows]

    def meta_targets(self, iteration: int, s: IterationSettings) -> list[Any]:
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
                "WHERE j.eligible AND t.run_id = ? AND t.iteration = ? "
                "ORDER BY j.response_key, j.judge_index, j.judgement_key",
                [run_id, iteration],
            ).fetchall()
        judgements: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for response_key, key, text in rows:
            judgements[response_key].append((key, text))
        return [(rk, pk, prompt, response, judgements[rk]) for rk, pk, prompt, response in targets]


def _changed_settings(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Generation settings that differ from those an iteration was started with; a setting
    an older mrtui did not log counts as its default."""
    defaults = IterationSettings().flat()
    return [
        f
        for f in (*IterationSettings.GENERATION_FIELDS, "k", "n")
        if before.get(f, defaults.get(f)) != now.get(f)
    ]


def settings_from_log(log: EventLog, run_id: str) -> RunSettings:
    """The settings a run was configured with, as logged by ``RunConfigured``."""
    p = log.payload(content_key("run", run_id))
    if p is None:
        raise ConfigError(f"no run {run_id!r} in {log.path}; start it with `mrtui run`")
    c = ev.parse(ev.RunConfigured, p)
    return RunSettings(
        model=c.model,
        backend=c.backend,
        run_id=run_id,
        iterations=c.iterations,
        backend_options=c.backend_options or {},
        defaults=IterationSettings.from_flat(c.defaults, f"run {run_id!r} in {log.path}"),
        overrides={int(k): v for k, v in (c.overrides or {}).items()},
        evaluation=EvalSettings.from_dict(c.evaluation) if c.evaluation else None,
    )
