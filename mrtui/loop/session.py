"""The one way a run starts, for every front end (``mrtui run``, ``mrtui demo``, ``mrtui
train``, the TUI): check what can be checked before the log is created or a model is loaded,
open the log as its single writer, drive the :class:`Runner`, and always release the backend
and the log. Progress goes to a ``ProgressSink`` as typed messages; a :class:`CancelToken`
stops the run after the unit in flight.

``train`` also runs under ``accelerate launch``: the main process opens the log and runs the
training stage, which hands the training to the other processes; they never open the log.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .progress import CancelToken, Note, ProgressSink, ignore
from .runner import BackendFactory, Resolver, Runner, default_backend, default_resolver
from .settings import ConfigError, EvalSettings, RunSettings
from .stages import ModelIdentity, StageReport
from .training import PlanHandoff, TrainReport, TrainStage, train_as_worker


def process_started_at() -> float:
    """When this process started, in epoch seconds: from the kernel's record of it where there
    is one (Linux), else now. A front end whose process does nothing but one session passes
    it as the session's start, so that the log sees the start-up (imports, model resolution)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time since boot
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()
    return time.time() - max(since_boot, 0.0)


@dataclass
class SessionResult:
    settings: RunSettings
    reports: list[StageReport] = field(default_factory=list)
    train_reports: list[TrainReport] = field(default_factory=list)
    stopped: bool = False

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.reports)


def check(settings: RunSettings) -> None:
    """Everything about ``settings`` that can fail before a log or model is touched: the prompt
    file and every iteration's templates (settings themselves were validated when loaded)."""
    from .data import load_prompts
    from .prompts import load_template

    if settings.prompts:
        load_prompts(settings.prompts)
    for it in range(1, settings.iterations + 1):
        s = settings.for_iteration(it)
        for name in (s.actor_template, s.judge_template, s.meta_template):
            load_template(name)


class RunSession:
    """One run (or resume) of ``settings`` on the log at ``db``.

    With ``settings`` None, the run ``run_id`` already in the log resumes with the settings it
    was configured with."""

    def __init__(
        self,
        db: str | Path,
        settings: RunSettings | None = None,
        *,
        run_id: str | None = None,
        progress: ProgressSink = ignore,
        cancel: CancelToken | None = None,
        backend_factory: BackendFactory = default_backend,
        resolver: Resolver = default_resolver,
        train_stage: Callable[..., TrainStage] = TrainStage,
        started_at: float | None = None,
    ) -> None:
        if settings is None and run_id is None:
            raise ConfigError(
                "nothing to run: pass --prompts (and --model) or a --config, or open a log "
                "that holds a run"
            )
        self.db = Path(db)
        self.settings = settings
        self.run_id = run_id
        self.progress = progress
        self.cancel = cancel or CancelToken()
        self._backend_factory = backend_factory
        self._resolver = resolver
        self._train_stage = train_stage
        self.started_at = time.time() if started_at is None else started_at

    def _log_session(self, log: Any, run_id: str, command: str) -> None:
        """The ``SessionStarted`` event: where this session's start-up and idle time begin."""
        from mrtui import __version__
        from mrtui.store import events as ev

        record = ev.SessionStarted(
            command=command,
            started_at=round(self.started_at, 3),
            pid=os.getpid(),
            host=socket.gethostname(),
            mrtui_version=__version__,
        )
        log.append([record.event(run_id)])

    def _runner(
        self,
        log: Any,
        settings: RunSettings,
        model: ModelIdentity,
        train_stage: Callable[..., TrainStage] | None = None,
    ) -> Runner:
        return Runner(
            log,
            settings,
            backend_factory=self._backend_factory,
            # the run's model is resolved once; another (an evaluation's judge) on demand
            resolver=lambda name: model if name == settings.model else self._resolver(name),
            progress=self.progress,
            train_stage=train_stage or self._train_stage,
            cancel=self.cancel,
        )

    @staticmethod
    def _single_process(command: str) -> None:
        from mrtui.backends.distributed import world_size

        if world_size() > 1:
            raise ConfigError(
                f"{command} runs in one process; of mrtui's commands only `mrtui train` runs "
                "under a multi-process launch (accelerate launch -m mrtui train --db LOG "
                "--iteration N)"
            )

    def _open(self) -> tuple[Any, RunSettings, ModelIdentity]:
        """Checks, then the model, then the log (as its writer): a bad prompt file, template or
        model never creates a log file. Resuming from the log reads the settings first."""
        from mrtui.store import EventLog

        from .runner import settings_from_log

        if self.settings is not None:
            check(self.settings)
            model = self._resolver(self.settings.model)  # assembles a packaged model once
            return EventLog(self.db), self.settings, model
        if not self.db.exists():  # never create a log just to find no run in it
            raise ConfigError(
                f"no event log at {self.db}; start a run there with `mrtui run` (or "
                "`mrtui demo`), or pass the log a run wrote"
            )
        log = EventLog(self.db)
        try:
            settings = settings_from_log(log, self.run_id or "main")
            check(settings)
            return log, settings, self._resolver(settings.model)
        except BaseException:
            log.close()
            raise

    def run(self) -> SessionResult:
        """Every iteration of the run; returns when done, stopped or failed."""
        self._single_process("a run")
        log, settings, model = self._open()
        result = SessionResult(settings)
        try:
            self._log_session(log, settings.run_id, "run")
            runner = self._runner(log, settings, model)
            self.progress(Note(f"run {settings.run_id} on {settings.model} → {self.db}"))
            try:
                result.reports = runner.run()
            finally:
                runner.close()
            result.train_reports = runner.train_reports
        finally:
            log.close()
        result.stopped = self.cancel.cancelled
        return result

    def evaluate(
        self, iterations: list[int] | None, settings: EvalSettings
    ) -> tuple[list[int], list[StageReport]]:
        """Evaluate the models of ``iterations`` of the run in the log (``mrtui eval``; all
        that exist when None). Returns the iterations evaluated and the stage reports."""
        from mrtui.evaluation.run import Evaluation

        self._single_process("an evaluation")
        log, run_settings, model = self._open()
        try:
            self._log_session(log, run_settings.run_id, "eval")
            runner = self._runner(log, run_settings, model)
            try:
                evaluation = Evaluation(runner, settings)
                exist = evaluation.available()
                chosen = iterations or exist
                missing = [i for i in chosen if i not in exist]
                if missing:
                    raise ConfigError(
                        f"run {run_settings.run_id!r} has no model for iteration(s) {missing} "
                        f"yet; models exist for {exist}"
                    )
                self.progress(Note(f"evaluating iterations {chosen} of {run_settings.run_id}"))
                return chosen, evaluation.run(chosen)
            finally:
                runner.close()
        finally:
            log.close()

    def train(self, iteration: int) -> TrainReport:
        """The training stage of one iteration alone (``mrtui train``).

        Under ``accelerate launch`` only the main process opens the log (as its writer) and
        logs; it sends the other processes the training to join, or word that there is none,
        exactly once whatever happens, and they return a report with ``main_process`` False.
        """
        from mrtui.backends.distributed import ranks

        launch = ranks()
        with contextlib.ExitStack() as closing:  # closed in reverse: log, handoff, launch
            stage: Callable[..., TrainStage] | None = None
            if launch is not None:
                closing.callback(launch.close)
                handoff = PlanHandoff(launch)
                if not launch.is_main:
                    return train_as_worker(handoff, iteration)
                closing.callback(handoff.close)
                stage = functools.partial(self._train_stage, handoff=handoff)
            log, settings, model = self._open()
            closing.callback(log.close)
            self._log_session(log, settings.run_id, "train")
            return self._runner(log, settings, model, stage).train(iteration)
