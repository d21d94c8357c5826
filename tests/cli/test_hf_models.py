"""HF model folders as the model format: a run on `--model <HF folder>` trains from the folder's
own weights, writes checkpoints as HF folders in the dtype it trained in, serves them to the
next iteration (the folder itself on the transformers backend, a cached GGUF conversion on
llama.cpp), and finds them from the log wherever the log is moved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrtui.store import connect

from .helpers import mrtui

pytest.importorskip("trl")

SETTINGS = [
    ("actor_max_tokens", 12),
    ("judge_max_tokens", 8),
    ("meta_max_tokens", 8),
    ("judge_fallback", "true"),
    ("meta_fallback", "true"),
    ("dpo_learning_rate", 1e-3),
    ("dpo_bf16", "true"),
    ("judge_max_chars", 0),
]


def _q(db: Path, sql: str) -> list[tuple]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


def _args(
    db: Path, model: Path, prompts: Path, backend: str, iterations: int = 2
) -> list[str | Path]:
    args: list[str | Path] = ["run", "--db", db, "--model", model, "--prompts", prompts]
    args += ["--backend", backend, "--iterations", str(iterations), "--k", "3", "--n", "3"]
    for name, value in SETTINGS:
        args += ["--set", f"{name}={value}"]
    return args


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": f"Name a colour, number {i}."}) for i in range(3)))
    return p


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_transformers_backend_runs_two_iterations_on_an_hf_folder(
    tiny_hf: Path, prompts: Path, tmp_path: Path
) -> None:
    from mrtui.backends.hf_models import folder_sha256

    db = tmp_path / "runs" / "hf.duckdb"
    out = mrtui(*_args(db, tiny_hf, prompts, "transformers"), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    config = _q(db, "SELECT payload FROM events WHERE event_type = 'RunConfigured'")[0][0]
    config = json.loads(config)
    assert config["model_format"] == "hf" and config["model_origin"] == "local"
    assert config["model_sha256"] == folder_sha256(tiny_hf)

    runs = _q(
        db,
        "SELECT iteration, base_model_origin, model_dir, model_sha256 FROM training_runs "
        "WHERE finished ORDER BY iteration",
    )
    assert [r[0] for r in runs] == [1, 2]
    assert {r[1] for r in runs} == {"hf weights"}  # never a dequantised copy
    started = json.loads(
        _q(db, "SELECT payload FROM events WHERE event_type = 'TrainingStarted' LIMIT 1")[0][0]
    )
    assert Path(started["base_model_dir"]) == tiny_hf.absolute()

    ck = _q(
        db,
        "SELECT for_iteration, model_sha256, model_format, gguf_path, hf_dir "
        "FROM checkpoints ORDER BY 1",
    )
    assert [c[0] for c in ck] == [2, 3] and {c[2] for c in ck} == {"hf"}
    assert all(c[3] is None for c in ck)  # an HF-native backend needs no GGUF export
    assert ck[0][4] == runs[0][2] and not Path(ck[0][4]).is_absolute()  # relative to the log
    folder = db.parent / ck[0][4]
    assert ck[0][1] == folder_sha256(folder) == runs[0][3]
    # iteration 2 ran on the trained folder
    used = _q(db, "SELECT DISTINCT model_sha256 FROM responses WHERE iteration = 2")
    assert used == [(ck[0][1],)]

    # the checkpoint costs what the model costs: bf16 (it trained in bf16), adapter kept,
    # embeddings still tied, and what LoRA does not touch is the original weights bit for bit
    import torch

    before, after = _tensors(tiny_hf), _tensors(folder)
    assert {t.dtype for t in after.values()} == {torch.bfloat16}
    assert (
        "lm_head.weight" not in after
        and json.loads((folder / "config.json").read_text())["tie_word_embeddings"]
    )
    assert (folder / "adapter" / "adapter_config.json").is_file()
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert torch.equal(before["model.norm.weight"], after["model.norm.weight"])
    assert any(not torch.equal(before[k], after[k]) for k in before if "proj" in k)

    # status says what the weights trained from
    status = mrtui("status", "--db", db)
    assert status.returncode == 0 and "hf weights" in status.stdout

    # a log moved together with its checkpoints folder works from any directory
    moved = tmp_path / "moved" / "hf.duckdb"
    shutil.copytree(db.parent, moved.parent)
    shutil.rmtree(db.parent)
    again = mrtui(*_args(moved, tiny_hf, prompts, "transformers"), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_q(moved, "SELECT * FROM training_runs")) == 2  # nothing retrained
    train = mrtui("train", "--db", moved, "--iteration", "1", "--run", "main", timeout=600)
    assert train.returncode == 0 and "already trained" in train.stdout
    assert str(moved.parent / ck[0][4]) in train.stdout
    # a missing checkpoint is named, with the hash it should have (iteration 3 runs on M_3)
    shutil.rmtree(moved.parent / ck[1][4])
    gone = mrtui(*_args(moved, tiny_hf, prompts, "transformers", iterations=3), timeout=600)
    assert gone.returncode != 0
    assert str(moved.parent / ck[1][4]) in gone.stderr and ck[1][1][:12] in gone.stderr


def test_llamacpp_serves_an_hf_folder_through_a_cached_gguf_conversion(
    tiny_hf: Path, prompts: Path, tmp_path: Path
) -> None:
    from mrtui.backends.hf_models import folder_sha256
    from mrtui.backends.model_ref import gguf_cache_dir

    db = tmp_path / "cpp.duckdb"
    # one iteration: it serves the folder and trains from it; serving a trained checkpoint's
    # GGUF export is the GGUF loop's path (tests/cli/test_iterations.py)
    args = [*_args(db, tiny_hf, prompts, "llama.cpp", iterations=1), "--set", "export_type=f16"]
    out = mrtui(*args, "--threads", "2", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    used = _q(db, "SELECT DISTINCT model_sha256 FROM responses WHERE iteration = 1")
    assert used == [(folder_sha256(tiny_hf),)]  # the folder's identity, whatever file served it
    assert any(gguf_cache_dir().glob(f"{folder_sha256(tiny_hf)[:32]}-f16.gguf"))
    ck = _q(db, "SELECT model_format, gguf_path, gguf_sha256 FROM checkpoints ORDER BY 1")
    assert ck and all(c[0] == "hf" and c[1] and c[2] for c in ck)
    assert _q(db, "SELECT DISTINCT base_model_origin FROM training_runs") == [("hf weights",)]


def test_export_gguf_writes_an_hf_folder_as_a_gguf(tiny_hf: Path, tmp_path: Path) -> None:
    from mrtui.backends.model_ref import resolve_reference

    out = tmp_path / "tiny-f16.gguf"
    done = mrtui("export", "gguf", "--model", tiny_hf, "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote" in done.stdout and resolve_reference(str(out)).quantization == "F16"
    again = mrtui("export", "gguf", "--model", out, "--out", tmp_path / "x.gguf")
    assert again.returncode == 2 and "already a GGUF" in again.stderr
