"""The training stage: DPO on iteration t's pairs turns M_t into M_{t+1}, exported to GGUF.

Events: ``TrainingStarted`` (settings, dataset hash, the pair keys used), one
``TrainingStepLogged`` per logged step, ``TrainingFinished`` (the unit: its key covers M_t,
the dataset and the settings; payload has the model folder and its sha256) and
``CheckpointCreated`` (the GGUF that serves iteration t+1). A crash during training leaves no
``TrainingFinished``, so the next run trains this iteration again and nothing else.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrtui.store import EventLog, NewEvent, canonical_json, content_key
from mrtui.store import events as ev

from .progress import NullProgress, ProgressSink
from .settings import ConfigError, IterationSettings


@dataclass(frozen=True)
class Checkpoint:
    """The model an iteration runs on: a GGUF for llama.cpp plus, once trained, its HF folder."""

    model_id: str
    sha256: str
    gguf_path: str
    hf_dir: str | None = None


@dataclass
class TrainReport:
    iteration: int
    pairs: dict[str, int]
    steps: int = 0
    wall_s: float = 0.0
    skipped: bool = False
    checkpoint: Checkpoint | None = None
    final: dict[str, Any] | None = None


def dpo_settings(s: IterationSettings) -> Any:
    from mrtui.backends.training import DPOSettings

    return DPOSettings(
        beta=s.dpo_beta,
        learning_rate=s.dpo_learning_rate,
        epochs=s.dpo_epochs,
        batch_size=s.dpo_batch_size,
        grad_accum=s.dpo_grad_accum,
        max_length=s.dpo_max_length,
        lora=s.dpo_lora,
        lora_r=s.dpo_lora_r,
        bf16=s.dpo_bf16,
        seed=s.seed,
    )


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


class TrainStage:
    def __init__(
        self,
        log: EventLog,
        run_id: str,
        iteration: int,
        settings: IterationSettings,
        model: Checkpoint,
        base_gguf: Path,
        workdir: Path,
        progress: ProgressSink | None = None,
        materialize: Callable[[Path], Path] | None = None,
        trainer: Any = None,
        exporter: Callable[..., Any] | None = None,
    ) -> None:
        self.log = log
        self.run_id = run_id
        self.iteration = iteration
        self.s = settings
        self.model = model
        self.base_gguf = base_gguf
        self.workdir = workdir
        self.progress = progress or NullProgress()
        self._materialize = materialize
        self._trainer = trainer
        self._exporter = exporter

    # -- pieces that need the training extra, loaded only when used ----------------------
    def _hf_base(self) -> Path:
        if self.model.hf_dir:
            return Path(self.model.hf_dir)
        if self._materialize is None:
            from mrtui.backends.hf_models import materialize_hf

            self._materialize = materialize_hf
        self.progress.message(
            f"materialising HF weights of {self.model.model_id} (once per model file)"
        )
        return self._materialize(Path(self.model.gguf_path))

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
            cur = con.execute(
                "SELECT pair_key, kind, prompt, chosen, rejected FROM preference_pairs "
                "WHERE run_id = ? AND iteration = ? ORDER BY kind, pair_key",
                [self.run_id, self.iteration],
            )
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        return select_pairs(rows, self.s.kinds_for(self.iteration), self.s.max_judge_share)

    def run(self) -> TrainReport:
        pairs = self.pairs()
        counts = {k: sum(1 for p in pairs if p["kind"] == k) for k in ("actor", "judge")}
        report = TrainReport(self.iteration, counts)
        dataset = [[p["pair_key"], p["prompt"], p["chosen"], p["rejected"]] for p in pairs]
        dataset_sha = hashlib.sha256(canonical_json(dataset).encode()).hexdigest()
        dpo = dpo_settings(self.s)
        from dataclasses import asdict

        settings = asdict(dpo) | {
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
            self.progress.message(
                f"iteration {self.iteration}: no training pairs; "
                f"iteration {self.iteration + 1} reuses the same model"
            )
            report.checkpoint = self.model
            self._log_checkpoint(ckpt_key, self.model, train_key=None, reason="no training pairs")
            return report

        finished = self.log.payload(train_key)
        if finished is None:
            finished = self._train(pairs, counts, dataset_sha, settings, dpo, train_key, report)
        model_dir = Path(finished["model_dir"])
        if not model_dir.is_dir():
            raise ConfigError(
                f"the trained model of iteration {self.iteration} is gone "
                f"({model_dir}); restore it or start another run with --run"
            )
        out = self.workdir / f"iter-{self.iteration + 1}" / f"model-{self.s.export_type}.gguf"
        self.progress.message(f"exporting M_{self.iteration + 1} to {self.s.export_type} GGUF")
        exported = self._export(model_dir, out)
        ckpt = Checkpoint(
            f"{self.run_id}/iter-{self.iteration + 1}",
            exported.sha256,
            str(exported.path),
            str(model_dir),
        )
        self._log_checkpoint(
            ckpt_key,
            ckpt,
            train_key=train_key,
            reason=None,
            export={"outtype": exported.outtype, "wall_s": round(exported.wall_s, 3)},
        )
        report.checkpoint = ckpt
        report.steps = report.steps or int(finished.get("steps", 0))
        report.final = finished.get("final")
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
    ) -> dict[str, Any]:
        from mrtui.backends.training import PreferencePair

        attempt = uuid.uuid4().hex[:12]
        base = self._hf_base()
        self.log.append(
            [
                NewEvent(
                    ev.TRAINING_STARTED,
                    self.run_id,
                    {
                        "attempt": attempt,
                        "settings": settings,
                        "dataset_sha256": dataset_sha,
                        "pairs": counts,
                        "pair_keys": [p["pair_key"] for p in pairs],
                        "base_model_sha256": self.model.sha256,
                        "base_model_dir": str(base),
                        "training_key": train_key,
                    },
                    iteration=self.iteration,
                )
            ]
        )
        n_steps = dpo.expected_steps(len(pairs))
        self.progress.stage_started(self.iteration, "train", n_steps, 0)

        def on_step(m: Any) -> None:
            payload = {
                "attempt": attempt,
                "step": m.step,
                "epoch": m.epoch,
                "loss": m.loss,
                "rewards_chosen": m.rewards_chosen,
                "rewards_rejected": m.rewards_rejected,
                "reward_accuracy": m.reward_accuracy,
                "reward_margin": m.reward_margin,
                "learning_rate": m.learning_rate,
                "extra": m.extra,
            }
            self.log.append(
                [NewEvent(ev.TRAINING_STEP_LOGGED, self.run_id, payload, iteration=self.iteration)]
            )
            self.progress.advanced(1)

        t0 = time.perf_counter()
        out_dir = self.workdir / f"iter-{self.iteration + 1}" / f"hf-{attempt}"
        result = self._train_backend().train(
            base,
            [
                PreferencePair(p["pair_key"], p["kind"], p["prompt"], p["chosen"], p["rejected"])
                for p in pairs
            ],
            out_dir,
            dpo,
            on_step,
        )
        wall = time.perf_counter() - t0
        self.progress.stage_finished(self.iteration, "train", result.steps, 0)
        finished = {
            "attempt": attempt,
            "model_dir": str(result.model_dir),
            "weights_sha256": result.weights_sha256,
            "steps": result.steps,
            "wall_s": round(wall, 3),
            "final": result.final,
            "base_model_sha256": self.model.sha256,
            "dataset_sha256": dataset_sha,
        }
        self.log.append(
            [
                NewEvent(
                    ev.TRAINING_FINISHED,
                    self.run_id,
                    finished,
                    iteration=self.iteration,
                    key=train_key,
                )
            ]
        )
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
        self.log.append(
            [
                NewEvent(
                    ev.CHECKPOINT_CREATED,
                    self.run_id,
                    {
                        "for_iteration": self.iteration + 1,
                        "model_id": ckpt.model_id,
                        "model_sha256": ckpt.sha256,
                        "gguf_path": ckpt.gguf_path,
                        "hf_dir": ckpt.hf_dir,
                        "trained_from_sha256": self.model.sha256,
                        "training_key": train_key,
                        "reason": reason,
                        "export": export,
                    },
                    iteration=self.iteration,
                    key=key,
                )
            ]
        )

    def _checkpoint_from_log(self, key: str) -> Checkpoint:
        payload = self.log.payload(key)
        assert payload is not None  # callers check log.has(key) first
        return Checkpoint(
            payload["model_id"], payload["model_sha256"], payload["gguf_path"], payload["hf_dir"]
        )
