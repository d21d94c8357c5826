"""Two full Meta-Rewarding iterations through the real CLI on a tiny random Qwen2: llama.cpp
generates, judges and meta-judges; TRL trains with DPO; the result is exported to GGUF and
serves iteration 2. Constrained fallbacks make the random model's judgements parse."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mrtui.store import connect

from .helpers import mrtui

pytest.importorskip("trl")


def _q(db: Path, sql: str) -> list[tuple]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_two_iterations_train_and_chain_models(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "loop.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"prompt": f"Say something about topic {i}."}) for i in range(4))
    )
    args = [
        "run",
        "--db",
        db,
        "--model",
        tiny_gguf,
        "--prompts",
        prompts,
        "--iterations",
        "2",
        "--k",
        "3",
        "--n",
        "3",
        "--threads",
        "2",
    ]
    for name, value in [
        ("actor_max_tokens", 16),
        ("judge_max_tokens", 8),
        ("meta_max_tokens", 8),
        ("judge_fallback", "true"),
        ("meta_fallback", "true"),
        ("dpo_learning_rate", 1e-3),
        ("export_type", "f16"),
        ("judge_max_chars", 0),
    ]:
        args += ["--set", f"{name}={value}"]
    began = time.monotonic()
    out = mrtui(*args, timeout=900)
    wall = time.monotonic() - began
    assert out.returncode == 0, out.stderr[-3000:]
    assert "DPO final loss" in out.stdout

    # The cost table accounts for the run's wall time (the process's, measured here) within
    # 5%: start-up, each role's stages, training with its export, and the rest.
    (total,) = _q(db, "SELECT sum(wall_s) FROM role_costs")[0]
    assert abs(total - wall) <= 0.05 * wall, (total, wall)
    roles = {r for (r,) in _q(db, "SELECT DISTINCT role FROM role_costs")}
    assert roles == {"startup", "actor", "judge", "meta_judge", "training", "other"}

    ck = _q(
        db,
        "SELECT for_iteration, model_sha256, gguf_path, hf_dir, trained_from_sha256 "
        "FROM checkpoints ORDER BY for_iteration",
    )
    assert [c[0] for c in ck] == [2, 3]
    base_sha = _q(db, "SELECT model_sha256 FROM iteration_settings WHERE iteration = 1")[0][0]
    it2_sha = _q(db, "SELECT model_sha256 FROM iteration_settings WHERE iteration = 2")[0][0]
    assert ck[0][4] == base_sha and it2_sha == ck[0][1] != base_sha
    # iteration 2's generations were made by the trained checkpoint (identified by its HF
    # folder's content hash), read back from its GGUF export; paths are relative to the log
    used = {r[0] for r in _q(db, "SELECT DISTINCT model_sha256 FROM responses WHERE iteration = 2")}
    assert used == {ck[0][1]} and (db.parent / ck[0][2]).is_file()
    from mrtui.backends.hf_models import folder_sha256

    assert ck[0][1] == folder_sha256(db.parent / ck[0][3])
    # training changed the weights, and the second training started from the first's result
    runs = _q(
        db,
        "SELECT iteration, base_model_sha256, model_dir, steps FROM training_runs "
        "WHERE finished ORDER BY iteration",
    )
    assert [r[0] for r in runs] == [1, 2] and all(r[3] > 0 for r in runs)
    assert runs[1][1] == ck[0][1]
    from mrtui.backends.hf_models import materialize_hf

    before = _weights(materialize_hf(tiny_gguf))
    after = _weights(db.parent / runs[0][2])
    changed = [k for k in before if k in after and not (before[k] == after[k]).all()]
    assert changed, "DPO left every weight unchanged"
    steps = _q(db, "SELECT count(*), count(loss) FROM training_steps")[0]
    assert steps[0] >= 2 and steps[1] == steps[0]
    lineage = _q(db, "SELECT count(*) FROM checkpoint_lineage WHERE for_iteration = 2")[0][0]
    assert (
        lineage
        == _q(
            db,
            "SELECT actor_pairs + judge_pairs FROM training_runs WHERE finished AND iteration = 1",
        )[0][0]
    )

    again = mrtui(*args, timeout=600)  # everything is logged: nothing is redone
    assert again.returncode == 0 and "loading" not in again.stderr
    assert len(_q(db, "SELECT * FROM training_runs")) == 2
    train = mrtui("train", "--db", db, "--iteration", "1", timeout=600)  # the stage alone
    assert train.returncode == 0, train.stderr[-2000:]
    assert "already trained" in train.stdout and str(db.parent / ck[0][3]) in train.stdout
