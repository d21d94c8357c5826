"""The training contract: preference pairs and DPO settings in, a full HF model folder out.

A ``TrainingBackend`` turns M_t (an HF folder) and iteration t's preference pairs into M_{t+1}
(another HF folder, LoRA already merged, tokenizer included), reporting each logged step through
a callback. Everything here is plain data; the TRL implementation lives in ``trl_dpo.py`` and
imports torch, transformers, trl and peft only when it trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .base import BackendError

# TRL 1.16 DPOConfig.loss_type values usable without further knobs ('exo_pair' needs
# label_smoothing > 0, which mrtui does not expose).
LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)


class TrainingError(BackendError):
    """Training could not start or finish. The message says what to do about it."""


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class DPOSettings:
    """DPO hyperparameters for one iteration (names follow TRL's DPOConfig where they overlap).

    The default learning rate suits the default LoRA run: a rank-16 adapter starts at zero and
    needs roughly ten times the step size of a full fine-tune to move the model as far, so LoRA
    uses 5e-5 and a full fine-tune (``lora=False``) should use ~5e-6 (the Self-Rewarding /
    Meta-Rewarding line trains full models with learning rates of that order).
    """

    beta: float = _help("DPO beta: higher keeps M_{t+1} closer to M_t (Self-Rewarding: 0.1)", 0.1)
    learning_rate: float = _help(
        "AdamW learning rate; 5e-5 suits LoRA, use ~5e-6 for a full fine-tune", 5e-5
    )
    epochs: int = _help("passes over the pairs", 1)
    batch_size: int = _help("pairs per device batch (each pair is two sequences)", 2)
    grad_accum: int = _help("batches accumulated per optimizer step", 1)
    max_length: int | None = _help(
        "longest prompt+response in tokens; longer ones lose their end, pairs whose prompt alone "
        "fills it are dropped (None: no limit). TRL 1.16 has no separate prompt limit",
        1024,
    )
    lora: bool = _help("train a LoRA adapter (merged at the end) instead of every weight", True)
    lora_r: int = _help("LoRA rank", 16)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r)", 32)
    lora_dropout: float = _help("LoRA dropout", 0.0)
    lora_targets: str = _help(
        "modules the adapter wraps: 'all-linear' or comma-separated names (q_proj,v_proj)",
        "all-linear",
    )
    bf16: bool = _help(
        "bf16 autocast (LoRA: the frozen base is also held in bf16); fp32 otherwise. The saved "
        "model is in the dtype it trained in (bf16 or float32; LoRA is merged in float32)",
        False,
    )
    gradient_checkpointing: bool = _help(
        "recompute activations in the backward pass: less memory, ~20-30% slower", False
    )
    seed: int = _help("seed for the adapter init, shuffling and dropout", 0)
    max_steps: int = _help("stop after this many optimizer steps (-1: run all epochs)", -1)
    loss_type: str = _help(f"TRL loss: {', '.join(LOSS_TYPES)}", "sigmoid")

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        if not (math.isfinite(self.beta) and self.beta > 0):
            raise bad("beta", "> 0")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate < 1):
            raise bad("learning_rate", "in (0, 1)")
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "lora_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "an integer >= 1")
        if self.max_length is not None and (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or self.max_length < 8
        ):
            raise bad("max_length", "an integer >= 8 or None")
        if not 0 <= self.lora_dropout < 1:
            raise bad("lora_dropout", "in [0, 1)")
        if not self.lora_targets.strip() or any(
            not t.strip() for t in self.lora_targets.split(",")
        ):
            raise bad("lora_targets", "'all-linear' or comma-separated module names")
        if isinstance(self.max_steps, bool) or self.max_steps == 0 or self.max_steps < -1:
            raise bad("max_steps", "-1 or >= 1")
        if self.loss_type not in LOSS_TYPES:
            raise bad("loss_type", f"one of {', '.join(LOSS_TYPES)}")

    @classmethod
    def help(cls) -> dict[str, str]:
        """Each field's help text, for CLIs and config files."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def expected_steps(self, n_pairs: int) -> int:
        """Optimizer steps a run over ``n_pairs`` pairs takes (as transformers' Trainer counts
        them, before TRL drops pairs whose prompt alone fills ``max_length``). ``max_steps`` wins
        when set: the Trainer then cycles through the pairs as often as it needs."""
        if self.max_steps > 0:
            return self.max_steps
        batches = -(-max(n_pairs, 0) // self.batch_size)
        return (-(-batches // self.grad_accum) if batches else 0) * self.epochs


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example. ``prompt`` is the user message; ``chosen``/``rejected`` the assistant
    replies. Training renders them with the model's chat template, as inference did.
    ``system`` is an optional system message used when the responses were generated with one.
    """

    pair_key: str
    kind: str  # "actor" or "judge"
    prompt: str
    chosen: str
    rejected: str
    system: str | None = None

    def __post_init__(self) -> None:
        for name in ("pair_key", "kind", "prompt", "chosen", "rejected"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"PreferencePair.{name} must be a string")
        if not self.pair_key:
            raise ValueError("PreferencePair.pair_key must not be empty")


@dataclass(frozen=True)
class StepMetrics:
    """One logged optimizer step, with TRL's metric names mapped to fields.

    ``rewards_*`` are β·log(π/π_ref) averaged over the step's pairs (0 while the model still
    equals the reference); ``reward_accuracy`` is the share of pairs whose chosen reward beats
    the rejected one. ``extra`` holds every other number TRL logged (grad_norm, logps/chosen,
    logps/rejected, logits/*, entropy, num_tokens, ...) under TRL's own names.
    """

    step: int
    epoch: float
    loss: float | None
    rewards_chosen: float | None
    rewards_rejected: float | None
    reward_accuracy: float | None
    reward_margin: float | None
    learning_rate: float | None
    extra: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d


@dataclass(frozen=True)
class TrainResult:
    """A finished run. ``model_dir`` is a full HF model folder (config, safetensors in the dtype
    it trained in, tokenizer; a LoRA run keeps its adapter in ``adapter/``) that
    ``from_pretrained`` and the GGUF exporter read without peft. ``weights_sha256`` is the
    hash of its weights (see ``hf_models.weights_sha256``), ``model_sha256`` its content hash
    (``hf_models.folder_sha256``, the identity the log gives the checkpoint; None from a
    backend that does not compute it). ``final`` holds the run summary:
    TRL's train_* numbers, pair counts (pairs, pairs_trained, pairs_truncated), device, dtype and
    library versions.
    """

    model_dir: Path
    weights_sha256: str
    steps: int
    wall_s: float
    final: Mapping[str, Any]
    model_sha256: str | None = None


StepCallback = Callable[[StepMetrics], None]


@runtime_checkable
class TrainingBackend(Protocol):
    """DPO from ``base_model`` (an HF folder; also the reference model) into ``out_dir``.

    ``out_dir`` must not exist or be empty; it appears only once the model is completely
    written. ``on_step`` is called after every optimizer step; an exception it raises stops the
    run and nothing is written. Under ``accelerate launch`` every process calls ``train`` with
    the same arguments; the main process writes ``out_dir`` and gets the result, the others get
    None.
    """

    def train(
        self,
        base_model: Path,
        pairs: Sequence[PreferencePair],
        out_dir: Path,
        settings: DPOSettings,
        on_step: StepCallback | None = None,
    ) -> TrainResult | None: ...
