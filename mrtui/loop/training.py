"""The training stage: DPO on iteration t's pairs turns M_t into M_{t+1}, an HF folder.

Events: ``TrainingStarted`` (settings, dataset hash, the pair keys used, what the weights
trained from), one ``TrainingStepLogged`` per logged step, ``TrainingFinished`` (the unit: its
key covers M_t, the dataset and the settings; payload has the model folder and its hashes) and
``CheckpointCreated`` (M_{t+1}: the folder, identified by its content hash, plus a GGUF export
when the run's backend loads GGUF files). A crash during training leaves no
``TrainingFinished``, so the next run trains this iteration again and nothing else.

M_t's weights are its HF folder when it has one (an HF model, a trained checkpoint); a GGUF
model trains from its dequantised copy, and ``TrainingStarted.base_model_origin`` says so
("Q4_K_M dequantisation").

Under ``accelerate launch`` the main process runs this stage as always and, with a
``PlanHandoff``, sends the other processes the training to join (``train_as_worker``): they
never open the log, and every event, the export and the checkpoint come from the main process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrtui.store import EventLog, canonical_json, content_key
from mrtui.store import events as ev

from .checkpoints import Checkpoint, from_event, from_log, log_relative, require
from .progress import CancelToken, Note, ProgressSink, StageBegan, StageEnded, UnitsDone, ignore
from .settings import ConfigError, IterationSettings

if TYPE_CHECKING:
    from mrtui.backends.distributed import Ranks


@dataclass
class TrainReport:
    iteration: int
    pairs: dict[str, int]
    steps: int = 0
    wall_s: float = 0.0
    skipped: bool = False
    checkpoint: Checkpoint | None = None
    final: dict[str, Any] | None = None
    stopped: bool = False  # the cancel token stopped it; the next run trains again
    main_process: bool = True  # False on the other processes of a launch (they log nothing)


class PlanHandoff:
    """The main process's one message to the other processes of a launch: the training they
    join (base model folder, pairs, settings, output folder) or None (nothing to train: already
    trained, no pairs, stopped, or the main process failed before training). ``close`` sends
    None when nothing was sent, so the others never wait for a message that does not come."""

    def __init__(self, ranks: Ranks) -> None:
        self.ranks = ranks
        self.sent = False

    @property
    def alone(self) -> bool:
        return self.ranks.num_processes == 1

    def send(self, plan: dict[str, Any] | None) -> None:
        if not self.ranks.is_main or self.sent:
            raise RuntimeError("only the main process sends the plan, once")
        self.sent = True
        self.ranks.broadcast(plan)

    def receive(self) -> dict[str, Any] | None:
        if self.ranks.is_main:
            raise RuntimeError("the main process sends the plan")
        return self.ranks.broadcast(None)

    def close(self) -> None:
        if self.ranks.is_main and not self.sent:
            self.send(None)


def train_as_worker(handoff: PlanHandoff, iteration: int) -> TrainReport:
    """A process other than the main one of a launch: join the training the main process
    sends, if any. It reads no log and writes none; the main process logs and saves."""
    plan = handoff.receive()
    if plan is None:
        return TrainReport(iteration, {"actor": 0, "judge": 0}, skipped=True, main_process=False)
    from mrtui.backends.training import DPOSettings, PreferencePair
    from mrtui.backends.trl_dpo import TRLDPOBackend

    trainer = TRLDPOBackend()
    pairs = [PreferencePair(**p) for p in plan["pairs"]]
    report = TrainReport(
        plan["iteration"],
        {k: sum(1 for p in pairs if p.kind == k) for k in ("actor", "judge")},
        main_process=False,
    )
    t0 = time.perf_counter()
    trainer.train(
        Path(plan["base_model"]),
        pairs,
        Path(plan["out_dir"]),
        DPOSettings(**plan["settings"]),
        None,
    )
    report.wall_s = time.perf_counter() - t0
    return report


class _Stopped(Exception):
    """Raised from our own step callback to end a training the user asked to stop."""


def select_pairs(
    rows: list[dict[str, Any]], kinds: tuple[str, ...], max_judge_share: float
) -> list[dict[str, Any]]:
    """Pairs of the wanted kinds, judge pairs capped to ``max_judge_share`` of the set."""
    actor = [r for r in rows if r["kind"] == "actor" and "actor" in kinds]
    judge = [r for r in rows if r["kind"] == "judge" and "judge" in kinds]
    if judge and max_judge_share < 1.0:
        if not actor:
            keep = len(judge) if max_judge_share > 0 and "actor" not in kinds else 0
        else:
            keep = int(max_judge_share / (1.0 - max_judge_share) * len(actor) + 1e-9)
        judge = judge[:keep]
    return actor + judge


def training_pairs(
    con: Any,
    run_id: str,
    iteration: int,
    s: IterationSettings,
    source: str = "preference_pairs",
    *,
    select: bool = True,
) -> list[dict[str, Any]]:
    """The pairs iteration ``iteration`` trains on: ``source``'s rows (the view, or a table of
    pairs re-derived with other settings) of the kinds its schedule names, judge pairs capped
    at ``max_judge_share``, in a fixed order (``select=False``: every row, in that order).
    Training and `mrtui export pairs` both take the training set from here."""
    cur = con.execute(
        f"SELECT * FROM {source} WHERE run_id = ? AND iteration = ? ORDER BY kind, pair_key",
        [run_id, iteration],
    )
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    return select_pairs(rows, s.kinds_for(iteration), s.max_judge_share) if select else rows


class TrainStage:
    def __init__(
        self,
        log: EventLog,
        run_id: str,
        iteration: int,
        settings: IterationSettings,
        model: Checkpoint,
        base_gguf: Path | None,
        workdir: Path,
        progress: ProgressSink = ignore,
        materialize: Callable[[Path], Path] | None = None,
        trainer: Any = None,
        exporter: Callable[..., Any] | None = None,
        cancel: CancelToken | None = None,
        handoff: PlanHandoff | None = None,
        export: bool = True,
    ) -> None:
        """``base_gguf`` is the run's GGUF (it gives an export its tokenizer; None for a run
        on an HF model); ``export`` whether M_{t+1} is also written as a GGUF (runs served by
        llama.cpp or an OpenAI-compatible server)."""
        self.log = log
        self.run_id = run_id
        self.iteration = iteration
        self.s = settings
        self.model = model
        self.base_gguf = base_gguf
        self.workdir = workdir
        self.progress = progress
        self.cancel = cancel or CancelToken()
        self._materialize = materialize
        self._trainer = trainer
        self._exporter = exporter
        self._handoff = handoff
        self._export_gguf = export

    # -- pieces that need the training extra, loaded only when used ----------------------
    def base_origin(self) -> str:
        """What training starts from: "hf weights", or "<type> dequantisation" for a GGUF."""
        if self.model.hf_dir:
            return "hf weights"
        return f"{self.model.quantization or 'GGUF'} dequantisation"

    def _hf_base(self) -> Path:
        if self.model.hf_dir:
            return require(self.model.hf_dir, self.model.sha256, f"M_{self.iteration}'s folder")
        if self._materialize is None:
            from mrtui.backends.hf_models import materialize_hf

            self._materialize = materialize_hf
        gguf = Path(self.model.gguf_path or "")  # the run's model, checked when resolved
        self.progress(
            Note(
                f"training from a {self.base_origin()} of {self.model.model_id} (pass an HF "
                "model folder as --model to train from the original weights)"
            )
        )
        return self._materialize(gguf)

    def _train_backend(self) -> Any:
        if self._trainer is None:
            from mrtui.backends.trl_dpo import TRLDPOBackend

            self._trainer = TRLDPOBackend()
        return self._trainer

    def _export(self, model_dir: Path, out: Path) -> Any:
        if self._exporter is None:
            from mrtui.backends.export import export_gguf

            self._exporter = export_gguf
        return self._exporter(model_dir, self.base_gguf, out, outtype=self.s.export_type)

    # -- the stage ------------------------------------------------------------------------
    def pairs(self) -> list[dict[str, Any]]:
        with self.log.reader() as con:
            return training_pairs(con, self.run_id, self.iteration, self.s)

    def run(self) -> TrainReport:
        pairs = self.pairs()
        counts = {k: sum(1 for p in pairs if p["kind"] == k) for k in ("actor", "judge")}
        report = TrainReport(self.iteration, counts)
        dataset = [[p["pair_key"], p["prompt"], p["chosen"], p["rejected"]] for p in pairs]
        dataset_sha = hashlib.sha256(canonical_json(dataset).encode()).hexdigest()
        dpo = self.s.dpo
        settings = dpo.to_dict() | {
            "export_type": self.s.export_type,
            "kinds": list(self.s.kinds_for(self.iteration)),
            "max_judge_share": self.s.max_judge_share,
        }
        train_key = content_key(
            "train", self.run_id, self.iteration, self.model.sha256, dataset_sha, settings
        )
        ckpt_key = content_key("checkpoint", self.run_id, self.iteration + 1, train_key)
        if self.log.has(ckpt_key):
            report.skipped = True
            report.checkpoint = self._checkpoint_from_log(ckpt_key)
            return report
        if not pairs:
            self.progress(
                Note(
                    f"iteration {self.iteration}: no training pairs; "
                    f"iteration {self.iteration + 1} reuses the same model"
                )
            )
            report.checkpoint = self.model
            self._log_checkpoint(ckpt_key, self.model, train_key=None, reason="no training pairs")
            return report

        logged = self.log.payload(train_key)
        if logged is not None:
            finished = ev.parse(ev.TrainingFinished, logged)
        elif self.cancel.cancelled:
            report.stopped = True
            return report
        else:
            try:
                finished = self._train(pairs, counts, dataset_sha, settings, dpo, train_key, report)
            except _Stopped:
                report.stopped = True
                return report
        model_dir = Path(from_log(self.log.path, finished.model_dir) or finished.model_dir)
        if not model_dir.is_dir():
            raise ConfigError(
                f"the trained model of iteration {self.iteration} is gone "
                f"(looked for {model_dir}); restore it (or move the log together with its "
                ".checkpoints folder), or start another run with --run"
            )
        ckpt = Checkpoint(
            f"{self.run_id}/iter-{self.iteration + 1}",
            finished.model_sha256 or finished.weights_sha256,
            None,
            str(model_dir),
            "hf",
            for_iteration=self.iteration + 1,
        )
        export = None
        if self._export_gguf:
            out = self.workdir / f"iter-{self.iteration + 1}" / f"model-{self.s.export_type}.gguf"
            self.progress(Note(f"exporting M_{self.iteration + 1} to {self.s.export_type} GGUF"))
            exported = self._export(model_dir, out)
            ckpt = replace(ckpt, gguf_path=str(exported.path), gguf_sha256=exported.sha256)
            export = {"outtype": exported.outtype, "wall_s": round(exported.wall_s, 3)}
        self._log_checkpoint(ckpt_key, ckpt, train_key=train_key, reason=None, export=export)
        report.checkpoint = ckpt
        report.steps = report.steps or finished.steps
        report.final = finished.final
        return report

    def _train(
        self,
        pairs: list[dict[str, Any]],
        counts: dict[str, int],
        dataset_sha: str,
        settings: dict[str, Any],
        dpo: Any,
        train_key: str,
        report: TrainReport,
    ) -> ev.TrainingFinished:
        from mrtui.backends.training import PreferencePair

        attempt = uuid.uuid4().hex[:12]
        base = self._hf_base()
        started = ev.TrainingStarted(
            attempt=attempt,
            settings=settings,
            dataset_sha256=dataset_sha,
            pairs=counts,
            pair_keys=[p["pair_key"] for p in pairs],
            pairs_used=[
                {k: p[k] for k in ("pair_key", "kind", "chosen_key", "rejected_key")} for p in pairs
            ],
            base_model_sha256=self.model.sha256,
            base_model_dir=log_relative(self.log.path, base),
            training_key=train_key,
            base_model_origin=self.base_origin(),
        )
        self.log.append([started.event(self.run_id, iteration=self.iteration)])
        n_steps = dpo.expected_steps(len(pairs))
        self.progress(StageBegan(self.iteration, "train", n_steps, 0))

        def on_step(m: Any) -> None:
            step = ev.TrainingStepLogged(attempt=attempt, **m.to_dict())
            self.log.append([step.event(self.run_id, iteration=self.iteration)])
            self.progress(UnitsDone(self.iteration, "train"))
            # the other processes of a launch cannot be told to stop mid-run (Ctrl+C stops all)
            if self.cancel.cancelled and (self._handoff is None or self._handoff.alone):
                raise _Stopped

        t0 = time.perf_counter()
        out_dir = self.workdir / f"iter-{self.iteration + 1}" / f"hf-{attempt}"
        chosen = [
            PreferencePair(p["pair_key"], p["kind"], p["prompt"], p["chosen"], p["rejected"])
            for p in pairs
        ]
        if self._handoff is not None:
            self._handoff.send(
                {
                    "run_id": self.run_id,
                    "iteration": self.iteration,
                    "attempt": attempt,
                    "base_model": str(base),
                    "out_dir": str(out_dir),
                    "settings": dpo.to_dict(),
                    "pairs": [dataclasses.asdict(p) for p in chosen],
                }
            )
        try:
            result = self._train_backend().train(base, chosen, out_dir, dpo, on_step)
        except _Stopped:
            wall = time.perf_counter() - t0
            self.progress(StageEnded(self.iteration, "train", 0, 0, wall, stopped=True))
            raise
        assert result is not None  # only the other processes of a launch get None
        wall = time.perf_counter() - t0
        self.progress(StageEnded(self.iteration, "train", result.steps, 0, wall))
        finished = ev.TrainingFinished(
            attempt=attempt,
            model_dir=log_relative(self.log.path, result.model_dir),
            weights_sha256=result.weights_sha256,
            steps=result.steps,
            wall_s=round(wall, 3),
            final=dict(result.final) if result.final is not None else None,
            base_model_sha256=self.model.sha256,
            dataset_sha256=dataset_sha,
            model_sha256=result.model_sha256,
        )
        self.log.append([finished.event(self.run_id, iteration=self.iteration, key=train_key)])
        report.steps, report.wall_s = result.steps, wall
        return finished

    def _log_checkpoint(
        self,
        key: str,
        ckpt: Checkpoint,
        *,
        train_key: str | None,
        reason: str | None,
        export: dict[str, Any] | None = None,
    ) -> None:
        record = ev.CheckpointCreated(
            for_iteration=self.iteration + 1,
            model_id=ckpt.model_id,
            model_sha256=ckpt.sha256,
            gguf_path=log_relative(self.log.path, ckpt.gguf_path) if ckpt.gguf_path else None,
            hf_dir=log_relative(self.log.path, ckpt.hf_dir) if ckpt.hf_dir else None,
            trained_from_sha256=self.model.sha256,
            training_key=train_key,
            reason=reason,
            export=export,
            model_format=ckpt.format,
            gguf_sha256=ckpt.gguf_sha256,
        )
        self.log.append([record.event(self.run_id, iteration=self.iteration, key=key)])

    def _checkpoint_from_log(self, key: str) -> Checkpoint:
        payload = self.log.payload(key)
        assert payload is not None  # callers check log.has(key) first
        return from_event(self.log.path, payload)
