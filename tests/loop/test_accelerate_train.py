"""`mrtui train` under `accelerate launch`: only the main process reads and writes the log.

The data of one iteration comes from the fake backend (its pairs are plain text); training is
real. One test launches `mrtui train` through accelerate with the packaged one-process CPU
config on the tiny random Qwen2 (real TRL, one process). The others run the launch logic in
this process with a stand-in for the process group: the main process sends the training to
the others exactly once (or word that there is none), and another process trains what it is
sent without ever opening the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends import distributed
from mrtui.loop.session import RunSession
from mrtui.loop.settings import ConfigError, load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.loop.training import TrainStage
from mrtui.store import EventLog, connect

from .test_training_stage import FakeTrainer, fake_export

CPU_CONFIG = "cpu_single.yaml"


@dataclass
class FakeRanks:
    """The process group as one process sees it: the main one records what it broadcasts;
    another one receives ``plan``."""

    rank: int
    num_processes: int = 2
    plan: Any = None
    sent: list[Any] = field(default_factory=list)
    closed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        if self.is_main:
            self.sent.append(obj)
            return obj
        return self.plan

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _data_log(tmp_path: Path, model: str, sha: str, **cli: Any) -> Path:
    """A log whose run finished iteration 1's data stages (fake backend) without training."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"Question {i}?"}) for i in range(6)))
    db = tmp_path / "log.duckdb"
    settings = load_config(
        None,
        {"prompts": str(prompts), "model": model, "k": 3, "n": 2, "train": False} | cli,
    )
    RunSession(
        db,
        settings,
        backend_factory=lambda s, m: FakeBackend(sha256=sha),
        resolver=lambda m: ModelIdentity(m, sha, m),
    ).run()
    with connect(db) as con:
        pairs = con.execute("SELECT count(*) FROM preference_pairs WHERE iteration = 1")
        assert pairs.fetchall()[0][0] >= 2
    return db


def _events(db: Path, kind: str) -> list[dict[str, Any]]:
    with connect(db) as con:
        rows = con.execute(
            "SELECT payload FROM events WHERE event_type = ? ORDER BY seq", [kind]
        ).fetchall()
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


def _count(db: Path) -> int:
    with connect(db) as con:
        return con.execute("SELECT count(*) FROM events").fetchall()[0][0]


def _fake_stage(trainer: FakeTrainer) -> Callable[..., TrainStage]:
    def stage(*args: Any, **kw: Any) -> TrainStage:
        return TrainStage(
            *args,
            **kw,
            materialize=lambda p: Path(f"{p}.hf"),
            trainer=trainer,
            exporter=fake_export,
        )

    return stage


# --- the launch logic, with a stand-in process group -------------------------------------------


def test_launch_markers() -> None:
    assert not distributed.launched({})
    assert distributed.launched({"ACCELERATE_MIXED_PRECISION": "no"})  # accelerate launch
    assert distributed.launched({"WORLD_SIZE": "4", "RANK": "1"})  # torchrun
    assert distributed.world_size({}) == 1 and distributed.world_size({"WORLD_SIZE": "4"}) == 4
    solo = distributed.Ranks(rank=0, num_processes=1)
    assert solo.is_main and solo.broadcast({"x": 1}) == {"x": 1}  # no process group needed
    solo.barrier()


def test_the_main_process_logs_and_sends_the_training_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _data_log(tmp_path, "model.gguf", "f" * 64, dpo_max_steps=1)
    main = FakeRanks(rank=0)
    monkeypatch.setattr(distributed, "ranks", lambda: main)
    trainer = FakeTrainer()

    def session(path: Path = db) -> RunSession:
        return RunSession(
            path,
            run_id="main",
            resolver=lambda m: ModelIdentity(m, "f" * 64, m),
            train_stage=_fake_stage(trainer),
        )

    report = session().train(1)
    assert report.main_process and report.checkpoint is not None and len(trainer.calls) == 1
    assert main.closed  # it left the process group

    (plan,) = main.sent  # exactly one message, before training
    started = _events(db, "TrainingStarted")
    assert len(started) == 1 and len(_events(db, "TrainingFinished")) == 1
    assert len(_events(db, "CheckpointCreated")) == 1
    assert [p["pair_key"] for p in plan["pairs"]] == started[0]["pair_keys"]
    assert plan["settings"]["max_steps"] == 1 and plan["iteration"] == 1
    assert plan["attempt"] == started[0]["attempt"]
    assert str(Path(plan["base_model"]).absolute()) == started[0]["base_model_dir"]
    assert Path(plan["out_dir"]).parent == db.parent / "log.checkpoints" / "main" / "iter-2"
    json.dumps(plan)  # plain data: it pickles for the broadcast

    # Nothing left to train: the others are told so, once, and nothing is logged but the
    # session itself (its start-up time is real, and mrtui status counts it).
    main.sent.clear()
    before = _count(db)
    again = session().train(1)
    assert again.skipped and main.sent == [None] and _count(db) == before + 1
    assert _events(db, "SessionStarted")[-1]["command"] == "train"
    # The main process fails before training: the others are still released.
    main.sent.clear()
    with pytest.raises(ConfigError, match="no event log"):
        session(tmp_path / "missing.duckdb").train(1)
    assert main.sent == [None]
    # `run` and `eval` refuse a multi-process launch before touching anything.
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="only `mrtui train`"):
        session().run()


def test_another_process_trains_what_it_is_sent_and_never_opens_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mrtui.backends import trl_dpo
    from mrtui.backends.training import DPOSettings
    from mrtui.cli.run_cmd import train

    db = _data_log(tmp_path, "model.gguf", "f" * 64)
    plan = {
        "run_id": "main",
        "iteration": 1,
        "attempt": "abc",
        "base_model": str(tmp_path / "base-hf"),
        "out_dir": str(tmp_path / "out"),
        "settings": DPOSettings(max_steps=1).to_dict(),
        "pairs": [
            {"pair_key": f"k{i}", "kind": "actor", "prompt": "p", "chosen": "c", "rejected": "r"}
            for i in range(3)
        ],
    }
    calls: list[tuple[Any, ...]] = []

    class Recorder:
        def train(self, *args: Any) -> None:
            calls.append(args)

    monkeypatch.setattr(trl_dpo, "TRLDPOBackend", Recorder)
    monkeypatch.setattr(distributed, "ranks", lambda: FakeRanks(rank=1, plan=plan))
    before, mtime = _count(db), db.stat().st_mtime_ns
    # The main process holds the log as its writer: opening it here would raise WriterLocked.
    with EventLog(db):
        train(db=db, iteration=1, run_id="main")  # the CLI command, as a launched process runs it
        report = RunSession(db, run_id="main").train(1)
    assert capsys.readouterr().out == ""  # the main process reports; the others say nothing
    assert not report.main_process and not report.skipped and report.pairs["actor"] == 3
    assert len(calls) == 2
    base, pairs, out_dir, settings, on_step = calls[0]
    assert (base, out_dir) == (Path(plan["base_model"]), Path(plan["out_dir"]))
    assert [p.pair_key for p in pairs] == ["k0", "k1", "k2"] and settings.max_steps == 1
    assert on_step is None  # steps are logged by the main process only
    assert _count(db) == before and db.stat().st_mtime_ns == mtime
    # Told there is nothing to train, it does nothing, even without a log at all.
    monkeypatch.setattr(distributed, "ranks", lambda: FakeRanks(rank=1, plan=None))
    idle = RunSession(tmp_path / "missing.duckdb", run_id="main").train(1)
    assert idle.skipped and not idle.main_process and len(calls) == 2
    assert not (tmp_path / "missing.duckdb").exists()


# --- real launches -------------------------------------------------------------------------------


def _trained_log(tmp_path: Path, tiny_gguf: Path, **cli: Any) -> Path:
    pytest.importorskip(
        "trl", reason="DPO training needs the train extra: pip install mrtui[train]"
    )
    return _data_log(
        tmp_path,
        str(tiny_gguf),
        _sha(tiny_gguf),
        dpo_max_steps=2,
        dpo_batch_size=1,
        dpo_learning_rate=1e-3,
        dpo_max_length=128,
        export_type="f16",
        **cli,
    )


def _launch(
    cmd: list[str], tmp_path: Path, converted: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a cache of its own that already holds the tiny GGUF's converted HF
    folder (``converted``, the session's), so the launch trains instead of converting again."""
    cache = tmp_path / "cache"
    if not (cache / "hf" / converted.name).exists():
        shutil.copytree(converted, cache / "hf" / converted.name)
    env = {**os.environ, "MRTUI_CACHE_DIR": str(cache), "COLUMNS": "200", **env}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


def _check_trained_once(db: Path, tiny_gguf: Path, processes: int, kind: str) -> dict[str, Any]:
    """One training, logged once by the main process, and a checkpoint that matches its log;
    returns the TrainingFinished event's ``final`` record."""
    from gguf import GGUFReader

    from mrtui.backends.hf_models import folder_sha256, weights_sha256

    (finished,) = _events(db, "TrainingFinished")
    (ckpt,) = _events(db, "CheckpointCreated")
    assert len(_events(db, "TrainingStarted")) == 1
    steps = _events(db, "TrainingStepLogged")
    assert [s["step"] for s in steps] == [1, 2] == list(range(1, finished["steps"] + 1))
    assert all(s["loss"] is not None for s in steps)
    final = finished["final"]
    assert (final["processes"], final["distributed_type"]) == (processes, kind)

    model_dir = db.parent / finished["model_dir"]  # recorded relative to the log
    assert weights_sha256(model_dir) == finished["weights_sha256"]
    assert not list(model_dir.parent.glob(".*partial"))
    assert not (model_dir / "saved").exists() and not (model_dir / "adapter_config.json").exists()
    gguf = db.parent / ckpt["gguf_path"]
    assert gguf.is_file() and _sha(gguf) == ckpt["gguf_sha256"] != _sha(tiny_gguf)
    assert ckpt["model_sha256"] == folder_sha256(model_dir) == finished["model_sha256"]
    assert ckpt["hf_dir"] == finished["model_dir"] and ckpt["for_iteration"] == 2
    assert len(GGUFReader(gguf).tensors) == len(GGUFReader(tiny_gguf).tensors)
    return dict(final)


def test_mrtui_train_under_accelerate_launch(
    tiny_gguf: Path, tiny_dequantised: Path, tmp_path: Path
) -> None:
    """The documented command, with the packaged one-process CPU config."""
    db = _trained_log(tmp_path, tiny_gguf)
    config = resources.files("mrtui.assets").joinpath("accelerate", CPU_CONFIG)
    with resources.as_file(config) as config_file:
        cmd = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(config_file), "--num_processes", "1",
            "-m", "mrtui", "train", "--db", str(db), "--iteration", "1",
        ]  # fmt: skip
        out = _launch(cmd, tmp_path, tiny_dequantised)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.count("iteration 1:") == 1 and "2 steps" in out.stdout
    _check_trained_once(db, tiny_gguf, 1, "NO")


def test_two_cpu_processes_train_together_and_the_main_one_logs(
    tiny_gguf: Path, tiny_dequantised: Path, tmp_path: Path
) -> None:
    """Two real processes in one gloo process group (DDP on the CPU; accelerate launches CPU
    processes through MPI only, so torchrun starts them, as accelerate's GPU launches do)."""
    db = _trained_log(tmp_path, tiny_gguf)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "mrtui", "train", "--db", str(db), "--iteration", "1",
    ]  # fmt: skip
    out = _launch(cmd, tmp_path, tiny_dequantised, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.count("iteration 1:") == 1 and "2 steps" in out.stdout
    _check_trained_once(db, tiny_gguf, 2, "MULTI_CPU")

    # Already trained: the main process says so and the other one is let go.
    before = _count(db)
    again = _launch(cmd, tmp_path, tiny_dequantised, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("already trained") == 1 and _count(db) == before + 1
    trains = [e for e in _events(db, "SessionStarted") if e["command"] == "train"]
    assert len(trains) == 2  # one per launch, the main process's
