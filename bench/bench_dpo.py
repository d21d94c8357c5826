"""DPO through mrtui vs the same TRL run written by hand, on the same pairs (target <= 1.05x).

Both sides start from the same HF folder (the tiny random Qwen2 materialised from its GGUF, or
the packaged 0.5B with --qwen), train LoRA r=16 on all linear layers in fp32 with beta 0.1,
batch 2, logging every step, then merge the adapter and save the full model with its
tokenizer. "mrtui" is the whole training stage: ``TrainStage`` reading the pairs from a real
event log, logging TrainingStarted / TrainingStepLogged / TrainingFinished, and calling
``TRLDPOBackend`` (export to GGUF is switched off on both sides). Runs alternate, median of
``--repeats``.

    .venv/bin/python bench/bench_dpo.py [--pairs 16] [--repeats 3] [--qwen]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]


def _pairs(n: int) -> list[dict[str, str]]:
    topics = ["lists", "tuples", "joins", "regexes", "threads", "tests", "git", "floats"]
    out = []
    for i in range(n):
        t = topics[i % len(topics)]
        out.append(
            {
                "prompt": f"Explain {t} in Python, example {i}.",
                "chosen": f"{t.capitalize()} are explained here clearly with example {i}: ...",
                "rejected": f"I don't know much about {t}. Maybe look it up (example {i}).",
            }
        )
    return out


def by_hand(base: Path, pairs: list[dict[str, str]], out: Path) -> float:
    """The TRL run a user would write: same settings as mrtui's defaults."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    t0 = time.perf_counter()
    set_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    rows = [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in pairs
    ]
    config = DPOConfig(
        output_dir=str(out / "trainer"),
        beta=0.1,
        learning_rate=5e-5,
        num_train_epochs=1,
        per_device_train_batch_size=2,
        max_length=1024,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        gradient_checkpointing=False,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    trainer.train()
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return time.perf_counter() - t0


def through_mrtui(base: Path, pairs: list[dict[str, str]], out: Path) -> float:
    from mrtui.loop.settings import IterationSettings
    from mrtui.loop.training import Checkpoint, TrainStage
    from mrtui.store import EventLog, NewEvent

    db = out / "log.duckdb"
    with EventLog(db) as log:  # a log holding exactly these pairs, as preference_pairs
        log.append(_log_events(pairs, NewEvent))
        settings = IterationSettings.from_flat(
            {"k": 2, "n": 2, "dpo_learning_rate": 5e-5, "judge_max_chars": 0}
        )
        stage = TrainStage(
            log,
            "bench",
            1,
            settings,
            Checkpoint("base", "0" * 64, "-", str(base)),
            base_gguf=Path("-"),
            workdir=out / "ckpt",
            exporter=lambda *a, **k: _NoExport(),
        )
        t0 = time.perf_counter()
        report = stage.run()
        wall = time.perf_counter() - t0
    assert report.steps > 0 and report.pairs["actor"] == len(pairs), report
    return wall


class _NoExport:
    path = Path("-")
    sha256 = "0" * 64
    outtype = "none"
    wall_s = 0.0


def _log_events(pairs: list[dict[str, str]], NewEvent: Any) -> list[Any]:
    """Events whose views yield one actor pair per given pair (scores 5 vs 1)."""
    ev = [
        NewEvent(
            "IterationStarted",
            "bench",
            {"settings": {"rho": 0.0, "k": 2, "n": 2}, "model": {"model_id": "base"}},
            iteration=1,
            key="it",
        ),
        NewEvent(
            "TemplateRegistered",
            "bench",
            {"name": "actor", "sha256": "ta", "segments": ["{prompt}"]},
            key="ta",
            text="{prompt}",
        ),
    ]
    for i, p in enumerate(pairs):
        ev.append(
            NewEvent("PromptAdded", "bench", {"index": i}, key=f"p:{i:04d}", text=p["prompt"])
        )
        for k, (text, score) in enumerate([(p["chosen"], 5), (p["rejected"], 1)]):
            rk = f"resp:{i:04d}{k}"
            ev.append(
                NewEvent(
                    "ResponseGenerated",
                    "bench",
                    {"sample_index": k, "template_sha256": "ta"},
                    iteration=1,
                    key=rk,
                    parent_key=f"p:{i:04d}",
                    text=text,
                )
            )
            ev.append(
                NewEvent(
                    "JudgementRecorded",
                    "bench",
                    {"judge_index": 0, "score": score, "prompt_key": f"p:{i:04d}"},
                    iteration=1,
                    key=f"judg:{i:04d}{k}",
                    parent_key=rk,
                    text=f"Score: {score}",
                )
            )
    return ev


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--qwen", action="store_true", help="the packaged 0.5B instead of tiny")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from mrtui.backends.hf_models import materialize_hf
    from mrtui.backends.models import resolve_model

    qwen = resolve_model("qwen2.5-coder-0.5b-instruct").path
    if args.qwen:
        gguf = qwen
    else:
        from mrtui.backends.gguf_io import build_tiny_qwen2

        gguf = build_tiny_qwen2(Path(tempfile.mkdtemp()), qwen)
    base = materialize_hf(gguf)
    pairs = _pairs(args.pairs)
    times: dict[str, list[float]] = {"hand": [], "mrtui": []}
    for r in range(args.repeats):
        for name, fn in (("hand", by_hand), ("mrtui", through_mrtui))[:: 1 if r % 2 == 0 else -1]:
            with tempfile.TemporaryDirectory() as tmp:
                times[name].append(fn(base, pairs, Path(tmp)))
            print(f"repeat {r} {name}: {times[name][-1]:.2f} s", flush=True)
    hand, ours = statistics.median(times["hand"]), statistics.median(times["mrtui"])
    ratio = ours / hand
    print(
        json.dumps(
            {
                "model": "qwen0.5b" if args.qwen else "tiny",
                "pairs": args.pairs,
                "repeats": args.repeats,
                "hand_s": times["hand"],
                "mrtui_s": times["mrtui"],
                "median_ratio": round(ratio, 3),
                "target": "<= 1.05",
                "met": ratio <= 1.05,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
