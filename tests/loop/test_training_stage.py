"""Training orchestration on fakes: lineage across iterations, resume during training, pair
selection. The real TRL + GGUF path runs in tests/cli/test_iterations.py on a tiny model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends import registry
from mrtui.backends.export import ExportResult
from mrtui.backends.training import TrainResult
from mrtui.loop.runner import Runner, default_backend
from mrtui.loop.settings import load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.loop.training import TrainStage, select_pairs
from mrtui.store import EventLog, connect

pytest.importorskip("mrtui.backends.training")


class FakeTrainer:
    def __init__(self, crash: bool = False) -> None:
        self.crash = crash
        self.calls: list[tuple[Path, int]] = []

    def train(
        self, base: Path, pairs: list[Any], out_dir: Path, settings: Any, on_step: Any = None
    ) -> TrainResult:
        from mrtui.backends.training import StepMetrics

        self.calls.append((base, len(pairs)))
        out_dir.mkdir(parents=True, exist_ok=True)
        for step in (1, 2):
            on_step(StepMetrics(step, step / 2, 0.69 - 0.1 * step, 0.1, -0.1, 1.0, 0.2, 5e-5, {}))
            if self.crash:
                raise KeyboardInterrupt("killed during training")
        (out_dir / "weights").write_text(f"{base}|{len(pairs)}")
        return TrainResult(
            out_dir, hashlib.sha256(str(out_dir).encode()).hexdigest(), 2, 0.1, {"loss": 0.49}
        )


def fake_export(model_dir: Path, base_gguf: Path, out: Path, outtype: str) -> ExportResult:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"gguf of {model_dir}")
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    return ExportResult(out, sha, outtype, n_tensors=0, wall_s=0.01)


def _runner(log: EventLog, prompts: Path, trainer: FakeTrainer, **cli: Any) -> Runner:
    settings = load_config(None, {"prompts": str(prompts), "k": 3, "n": 3, "iterations": 2} | cli)

    def stage(*args: Any, **kw: Any) -> TrainStage:
        return TrainStage(
            *args,
            **kw,
            materialize=lambda p: Path(f"{p}.hf"),
            trainer=trainer,
            exporter=fake_export,
        )

    return Runner(
        log,
        settings,
        backend_factory=lambda s, m: FakeBackend(sha256=_sha(m)),
        resolver=lambda m: ModelIdentity(m, _sha(m), m),
        train_stage=stage,
    )


def _sha(ref: str) -> str:
    p = Path(ref)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "f" * 64


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": f"Question {i}?"}) for i in range(6)))
    return p


def test_two_iterations_chain_models_through_checkpoints(tmp_path: Path, prompts: Path) -> None:
    db = tmp_path / "log.duckdb"
    trainer = FakeTrainer()
    with EventLog(db) as log:
        runner = _runner(log, prompts, trainer)
        runner.run()
    assert len(trainer.calls) == 2
    assert trainer.calls[0][0].name.endswith(".hf")  # M_1 materialised from its GGUF
    with connect(db) as con:
        ck = con.execute(
            "SELECT for_iteration, model_sha256, gguf_path, trained_from_sha256 "
            "FROM checkpoints ORDER BY for_iteration"
        ).fetchall()
        it2_model = con.execute(
            "SELECT DISTINCT model_sha256 FROM iteration_settings WHERE iteration = 2"
        ).fetchall()[0][0]
        steps = con.execute("SELECT count(*) FROM training_steps").fetchall()[0][0]
        lineage = con.execute(
            "SELECT count(*), count(DISTINCT kind) FROM checkpoint_lineage WHERE for_iteration = 2"
        ).fetchall()[0]
        trained = con.execute(
            "SELECT actor_pairs, judge_pairs FROM training_runs ORDER BY iteration"
        ).fetchall()
    assert [c[0] for c in ck] == [2, 3]
    assert it2_model == ck[0][1]  # iteration 2 ran on the checkpoint trained in iteration 1
    assert ck[1][3] == ck[0][1]  # and iteration 2's training started from it
    assert steps == 4 and lineage[0] == sum(trained[0])
    # the second iteration's model directory is the first training's output
    assert "iter-2" in str(trainer.calls[1][0])


def test_a_crash_during_training_retrains_only_that_iteration(
    tmp_path: Path, prompts: Path
) -> None:
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log, pytest.raises(KeyboardInterrupt):
        _runner(log, prompts, FakeTrainer(crash=True), iterations=1).run()
    backend_calls: list[Any] = []
    trainer = FakeTrainer()
    with EventLog(db) as log:
        runner = _runner(log, prompts, trainer, iterations=1)
        factory = runner._backend_factory
        runner._backend_factory = lambda s, m: backend_calls.append(m) or factory(s, m)
        runner.run()
    assert backend_calls == [] and len(trainer.calls) == 1  # no data unit was redone
    with connect(db) as con:
        runs = con.execute("SELECT finished FROM training_runs ORDER BY started_at").fetchall()
        steps = con.execute("SELECT attempt, count(*) FROM training_steps GROUP BY 1").fetchall()
    assert runs == [(False,), (True,)] and len(steps) == 2


def test_pair_selection_follows_the_schedule_and_the_judge_share_cap() -> None:
    rows = [{"kind": "actor", "pair_key": f"a{i}"} for i in range(6)] + [
        {"kind": "judge", "pair_key": f"j{i}"} for i in range(4)
    ]
    assert len(select_pairs(rows, ("actor", "judge"), 1.0)) == 10
    assert len(select_pairs(rows, ("actor",), 1.0)) == 6
    capped = select_pairs(rows, ("actor", "judge"), 0.15)
    judge = [r for r in capped if r["kind"] == "judge"]
    assert len(judge) == 1 and len(judge) / len(capped) <= 0.15


def test_a_backend_of_hf_folders_gets_the_run_model_converted_then_each_checkpoint(
    tmp_path: Path, prompts: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--backend vllm` with the same config as llama.cpp: iteration 1 is served from the run's
    GGUF converted to an HF folder by the backend factory (once, cached), iteration 2 from the
    trained checkpoint's folder; identities stay the GGUF's."""
    pytest.importorskip("gguf", reason="converting a GGUF needs gguf: pip install gguf")
    pytest.importorskip("transformers", reason="converting a GGUF needs the train extra")
    monkeypatch.setenv("MRTUI_CACHE_DIR", str(tmp_path / "cache"))
    served: list[str] = []
    trainer = FakeTrainer()
    with EventLog(tmp_path / "log.duckdb") as log:
        runner = _runner(log, prompts, trainer, model=str(tiny_gguf), backend="vllm")
        runner._backend_factory = default_backend  # the real factory, vLLM's loading stood in
        monkeypatch.setattr(
            registry, "load_backend", lambda b, m, **o: served.append(m) or FakeBackend(sha256=None)
        )
        runner.run()
        checkpoints = log.query(
            "SELECT for_iteration, hf_dir, model_sha256 FROM checkpoints ORDER BY 1"
        )
        models = log.query("SELECT DISTINCT model_sha256 FROM responses ORDER BY 1")
    assert len(served) == 2
    first = Path(served[0])
    assert (first / "config.json").is_file() and first.is_relative_to(tmp_path / "cache")
    # iteration 2 ran on the first training's folder (recorded relative to the log)
    assert Path(served[1]) == tmp_path / checkpoints[0][1]
    assert sorted(m[0] for m in models) == sorted([_sha(str(tiny_gguf)), checkpoints[0][2]])
