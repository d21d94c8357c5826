"""DPO with TRL's stable ``DPOTrainer`` (TRL 1.16): the ``TrainingBackend`` mrtui trains with.

Pairs become TRL's conversational preference rows (prompt = the user turn, chosen/rejected =
one assistant turn each), so the tokenizer's chat template renders them exactly as inference
did. The reference model is M_t itself: with LoRA, TRL disables the adapter to get it; for a
full fine-tune a second copy is loaded from the same folder and passed as ``ref_model``. The
result is a full HF folder in the dtype the run trained in (bf16 with ``bf16``, else float32):
a LoRA adapter is merged (into a float32 copy of the base, also after bf16 training, then cast)
so the next iteration and the GGUF exporter need no peft, and the adapter itself is kept in
``adapter/``. Tied embeddings stay tied.

The run is written to a hidden sibling folder and renamed to ``out_dir`` when complete. No
checkpoints, no report_to integrations, no progress bars or printed logs: metrics reach the
caller through ``on_step`` only. torch, transformers, trl, peft and datasets are imported when
``train`` runs.

Under ``accelerate launch`` (see ``distributed.py``) every process calls ``train`` with the same
pairs and settings and TRL trains with DDP, FSDP or DeepSpeed as the launch configures. Then
``Trainer.save_model`` gathers the weights on every process (FSDP and ZeRO-3 shard them) and the
main process alone writes them; it reloads them (merging a LoRA adapter into a float32 copy of
the base) and writes the result as above. Weights that come back empty or misshapen
(ZeRO-3 gave an empty embedding on a GPU check, docs/training.md) are refused before anything is
written.
``on_step`` runs on the main process only, and ``train`` returns None on the others. The
launch's ``mixed_precision`` is overridden by ``DPOSettings.bf16``, so the logged settings say
how the model was trained.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import distributed
from .hf_models import check_hf_folder, folder_sha256, share_readable, weights_sha256
from .optional import TRAIN_HINT, require
from .training import (
    DPOSettings,
    PreferencePair,
    StepCallback,
    StepMetrics,
    TrainingError,
    TrainResult,
)

_T = TypeVar("_T")

TRAIN_INFO_FILE = "mrtui-train.json"  # provenance written next to the trained weights
ADAPTER_DIR = "adapter"  # a LoRA run's adapter, kept inside the merged model's folder

# TRL log key → StepMetrics field. Everything else numeric goes to StepMetrics.extra.
_METRIC_FIELDS = {
    "loss": "loss",
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/accuracies": "reward_accuracy",
    "rewards/margins": "reward_margin",
    "learning_rate": "learning_rate",
}
_SUMMARY_KEYS = (
    "train_runtime",
    "train_loss",
    "train_samples_per_second",
    "train_steps_per_second",
)
_LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def step_metrics(step: int, logs: Mapping[str, Any]) -> StepMetrics:
    """Map one TRL/Trainer log dict (``on_log``) to ``StepMetrics``."""
    mapped = {name: _number(logs.get(key)) for key, name in _METRIC_FIELDS.items()}
    extra = {
        k: n
        for k, v in logs.items()
        if k not in _METRIC_FIELDS and k not in ("epoch", "step") and (n := _number(v)) is not None
    }
    return StepMetrics(step=step, epoch=_number(logs.get("epoch")) or 0.0, extra=extra, **mapped)


def preference_row(pair: PreferencePair) -> dict[str, list[dict[str, str]]]:
    """A pair in TRL's conversational preference format."""
    prompt = [{"role": "user", "content": pair.prompt}]
    if pair.system is not None:
        prompt.insert(0, {"role": "system", "content": pair.system})
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No datasets/transformers progress bars while training (the caller shows progress)."""
    import datasets
    from transformers.utils import logging as hf_logging

    ds_on, hf_on = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if ds_on:
            datasets.enable_progress_bars()
        if hf_on:
            hf_logging.enable_progress_bar()


def _quietly(fn: Callable[..., _T], *args: Any) -> _T:
    with _quiet(), warnings.catch_warnings():
        # TRL 1.16 reads names transformers 5.2x renamed; not the caller's concern
        warnings.filterwarnings("ignore", "`.*` is deprecated and will be removed in v6")
        return fn(*args)


def _launch_stage(out: Path) -> Path:
    """The staging folder under a launch: the same name on every process."""
    return out.parent / f".{out.name}.partial"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {name: md.version(name) for name in _LIBRARIES}


class TRLDPOBackend:
    """``TrainingBackend`` on TRL's ``DPOTrainer``."""

    name = "trl"

    def train(
        self,
        base_model: Path,
        pairs: Sequence[PreferencePair],
        out_dir: Path,
        settings: DPOSettings,
        on_step: StepCallback | None = None,
    ) -> TrainResult | None:
        t0 = time.perf_counter()
        base = check_hf_folder(base_model)
        if not pairs:
            raise TrainingError("no preference pairs to train on; generate and judge first")
        out = Path(out_dir).expanduser().absolute()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise TrainingError(f"{out} already exists and is not empty; pass a new output folder")
        require(
            "datasets",
            "peft",
            "torch",
            "trl",
            what="DPO training",
            needs="the training extra",
            hint=TRAIN_HINT,
            error=TrainingError,
        )

        ranks = distributed.ranks()  # None unless started by accelerate launch or torchrun
        if ranks is not None and not ranks.is_main:
            _quietly(_train, base, pairs, _launch_stage(out), settings, None, ranks)
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        if ranks is None:
            stage = Path(
                tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
            )
        else:
            stage = _launch_stage(out)
            shutil.rmtree(stage, ignore_errors=True)  # left by a killed launch
            stage.mkdir()
        try:
            steps, final = _quietly(_train, base, pairs, stage, settings, on_step, ranks)
            info = {
                "base_model": str(base),
                "base_weights_sha256": weights_sha256(base),
                "settings": settings.to_dict(),
                "steps": steps,
                "final": final,
            }
            (stage / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
            share_readable(stage)
            if out.is_dir():
                out.rmdir()  # empty (checked above); rename needs the name free
            os.replace(stage, out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return TrainResult(
            model_dir=out,
            model_sha256=folder_sha256(out),
            weights_sha256=weights_sha256(out),
            steps=steps,
            wall_s=time.perf_counter() - t0,
            final=final,
        )


def _train(
    base: Path,
    pairs: Sequence[PreferencePair],
    stage: Path,
    s: DPOSettings,
    on_step: StepCallback | None,
    ranks: distributed.Ranks | None = None,
) -> tuple[int, dict[str, Any]]:
    """Train; on the main process (or alone) write the float32 model into ``stage``: load the
    tokenizer and the models, build the trainer, train, then save what was trained."""
    import torch
    from transformers import set_seed

    if ranks is not None:
        # the logged settings decide the precision, not the launch config's mixed_precision
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if s.bf16 else "no"
    set_seed(s.seed)
    tokenizer = _tokenizer(base)
    summary: dict[str, float] = {}
    trainer = _trainer(base, pairs, stage, s, tokenizer, _log_callback(summary, on_step))
    counts = _fit(trainer, s.max_length, len(pairs))
    steps = int(trainer.state.global_step)
    device = str(trainer.args.device)

    launch: dict[str, Any] = {}
    if ranks is None:
        trained = _merged(trainer.model, base, stage, torch) if s.lora else trainer.model
    else:
        launch = {
            "processes": ranks.num_processes,
            "distributed_type": str(trainer.accelerator.distributed_type.value),
        }
        # every process takes part (FSDP and ZeRO-3 gather their shards); the main one writes
        trainer.save_model(str(stage / "saved"))
        ranks.barrier()
        del trainer  # with it the policy and the reference, before the main process reloads
        if not ranks.is_main:
            return steps, {}
        trained = _reassembled(stage, base, s, torch)
    _save(trained, tokenizer, stage, s, torch)

    final: dict[str, Any] = {
        **summary,
        "seconds_per_step": summary.get("train_runtime", 0.0) / steps if steps else None,
        **counts,
        "device": device,
        "dtype": "bfloat16" if s.bf16 else "float32",
        **launch,
        "versions": _versions(),
    }
    return steps, final


def _tokenizer(base: Path) -> Any:
    """The base model's tokenizer, which must have a chat template to render the pairs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if not tokenizer.chat_template:
        raise TrainingError(
            f"the tokenizer in {base} has no chat template, so pairs cannot be rendered as "
            "chats; add one (tokenizer.chat_template = ...; save_pretrained) or use an "
            "instruction-tuned model"
        )
    return tokenizer


def _models(base: Path, s: DPOSettings) -> tuple[Any, Any, Any]:
    """The policy, the reference model (None under LoRA, where the adapter-free policy is the
    reference) and the LoRA config (None for a full fine-tune)."""
    import torch
    from transformers import AutoModelForCausalLM

    # LoRA in bf16 keeps the frozen base in bf16 (peft holds the adapter in fp32); a full
    # fine-tune keeps fp32 master weights under bf16 autocast, since bf16 weights would round
    # away updates of ~lr size.
    dtype = torch.bfloat16 if s.bf16 and s.lora else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    if not s.lora:
        # TRL would reload the reference by the policy's name; load it from M_t's folder here.
        return model, AutoModelForCausalLM.from_pretrained(base, dtype=dtype), None
    from peft import LoraConfig

    targets = s.lora_targets.strip()
    peft_config = LoraConfig(
        r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_dropout=s.lora_dropout,
        target_modules=targets
        if targets == "all-linear"
        else [t.strip() for t in targets.split(",")],
        bias="none",
        task_type="CAUSAL_LM",
    )
    return model, None, peft_config


def _dpo_config(stage: Path, s: DPOSettings) -> Any:
    """TRL's DPOConfig for the settings: no checkpoints, no evaluation, a log line a step."""
    import torch
    from transformers.utils import is_torch_bf16_gpu_available
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(stage / "trainer"),
        beta=s.beta,
        learning_rate=s.learning_rate,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        max_length=s.max_length,
        loss_type=[s.loss_type],
        bf16=s.bf16,
        fp16=False,
        use_cpu=s.bf16 and not is_torch_bf16_gpu_available(),  # bf16 on CPU needs it said
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=s.seed,
        data_seed=s.seed,
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        # transformers 5.2x renamed gradient_checkpointing (TRL still sets the old name to True)
        **{_checkpointing_field(DPOConfig): s.gradient_checkpointing},
    )


def _log_callback(summary: dict[str, float], on_step: StepCallback | None) -> Any:
    """A TrainerCallback that passes each step's metrics to ``on_step`` (on the main process)
    and keeps the end-of-training summary in ``summary``."""
    from transformers import TrainerCallback

    # TrainerCallback is Any to mypy: transformers is not followed (pyproject [tool.mypy]).
    class _OnLog(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs:
                return
            if "train_runtime" in logs:
                summary.update({k: float(logs[k]) for k in _SUMMARY_KEYS if k in logs})
            elif "loss" in logs and on_step is not None and state.is_world_process_zero:
                on_step(step_metrics(state.global_step, logs))

    return _OnLog()


def _trainer(
    base: Path,
    pairs: Sequence[PreferencePair],
    stage: Path,
    s: DPOSettings,
    tokenizer: Any,
    callback: Any,
) -> Any:
    """TRL's DPOTrainer over the pairs; it alone holds the models, so dropping it frees them."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOTrainer

    model, ref_model, peft_config = _models(base, s)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=_dpo_config(stage, s),
        train_dataset=Dataset.from_list([preference_row(p) for p in pairs]),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps the bars for printed logs
    return trainer


def _fit(trainer: Any, max_length: int | None, n_pairs: int) -> dict[str, int]:
    """Train, unless TRL kept no pair; the counts of pairs given, trained and cut."""
    counts = _pair_counts(trainer.train_dataset, max_length, n_pairs)
    if counts["pairs_trained"] == 0:
        raise TrainingError(
            f"every pair's prompt alone is at least max_length={max_length} tokens, so there "
            "is nothing to train on; raise max_length"
        )
    trainer.train()
    return counts


def _reassembled(stage: Path, base: Path, s: DPOSettings, torch: Any) -> Any:
    """After a launch, the float32 model that ``stage/saved`` holds, checked whole; a LoRA
    adapter is kept in ``stage/adapter``."""
    saved = stage / "saved"
    trained = _reloaded(saved, base, s, torch)
    _check_whole(trained, base)
    if s.lora:
        (stage / ADAPTER_DIR).mkdir()
        for f in saved.glob("adapter_*"):
            shutil.copy2(f, stage / ADAPTER_DIR / f.name)
    return trained


def _save(trained: Any, tokenizer: Any, stage: Path, s: DPOSettings, torch: Any) -> None:
    """Write the model and tokenizer into ``stage`` and drop the trainer's scratch folders."""
    if s.bf16:  # the checkpoint costs what the model costs: bf16 when it trained in bf16
        trained = trained.to(torch.bfloat16)
    trained.save_pretrained(stage)
    tokenizer.save_pretrained(stage)
    for scratch in ("trainer", "saved"):
        shutil.rmtree(stage / scratch, ignore_errors=True)


def _checkpointing_field(config_cls: Any) -> str:
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )


def _merged(peft_model: Any, base: Path, stage: Path, torch: Any) -> Any:
    """The LoRA adapter merged into a float32 copy of the base model; the adapter is saved in
    ``stage/adapter`` and kept."""
    adapter_dir = stage / ADAPTER_DIR
    peft_model.save_pretrained(adapter_dir)
    if all(p.dtype == torch.float32 for p in peft_model.get_base_model().parameters()):
        return peft_model.merge_and_unload()
    # Trained over a bf16 base: merge into the float32 original, not the rounded copy.
    return _merged_adapter(adapter_dir, base, torch)


def _merged_adapter(adapter_dir: Path, base: Path, torch: Any) -> Any:
    """A saved LoRA adapter merged into a float32 copy of the base model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(fresh, adapter_dir).merge_and_unload()


_NOT_SAVED = (
    "the launch saved no full weights (FSDP with a sharded state dict, or DeepSpeed ZeRO-3 "
    "without 16-bit gathering); set fsdp_state_dict_type: FULL_STATE_DICT or "
    "zero3_save_16bit_model: true in the accelerate config (examples in mrtui/assets/accelerate)"
)


def _reloaded(saved: Path, base: Path, s: DPOSettings, torch: Any) -> Any:
    """What ``Trainer.save_model`` wrote under a launch, as a float32 model: a LoRA adapter merged
    into a float32 copy of the base, or the full weights upcast to float32."""
    from transformers import AutoModelForCausalLM

    if s.lora:
        if not (saved / "adapter_config.json").is_file() or not any(saved.glob("adapter_model*")):
            raise TrainingError(_NOT_SAVED)
        return _merged_adapter(saved, base, torch)
    if not any(saved.glob("*.safetensors")) and not any(saved.glob("pytorch_model*.bin")):
        raise TrainingError(_NOT_SAVED)
    return AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)


def _check_whole(model: Any, base: Path) -> None:
    """Refuse weights that came back empty or misshapen from a sharded launch, before they are
    written and exported as a checkpoint."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):  # shapes only: no memory for the reference's weights
        reference = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    shapes = {n: tuple(p.shape) for n, p in reference.named_parameters()}
    bad = [
        f"{n} {tuple(p.shape)} (expected {shapes.get(n)})"
        for n, p in model.named_parameters()
        if p.numel() == 0 or shapes.get(n) != tuple(p.shape)
    ]
    if bad:
        raise TrainingError(
            f"the launch gave back incomplete weights: {', '.join(bad[:3])}; nothing was "
            "saved. Train with another accelerate config (fsdp.yaml or deepspeed_zero2.yaml)"
        )


def _pair_counts(dataset: Any, max_length: int | None, n_pairs: int) -> dict[str, int]:
    """How many pairs TRL kept (it drops prompts that fill max_length) and how many it cuts."""
    kept = len(dataset)
    truncated = 0
    if max_length is not None:
        for p, c, r in zip(
            dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True
        ):
            truncated += len(p) + max(len(c), len(r)) > max_length
    return {"pairs": n_pairs, "pairs_trained": kept, "pairs_truncated": truncated}
