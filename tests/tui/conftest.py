"""Event logs for the TUI's tests, built by mrtui's own Runner on a deterministic fake backend.

``tui_log`` is a two-iteration run ("main") with a (fake) DPO training between the iterations,
unparseable judgements, ties and unparseable meta-verdicts, and prompts, responses, judgements
and verdicts that carry hostile text: Rich markup, an ANSI escape, a control character and a
Textual action link. ``tui_log_iteration`` holds a run whose position wins are counted per
iteration (``weights_scope = 'iteration'``) next to an ordinary run. ``tui_log_expected`` is
the same loop under expected scoring (judge and meta-judge scored from the fake backend's
choice probabilities, structured judging).

``build_log`` is importable on its own (``from tui.conftest import build_log``), so a
subprocess can write a log the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends.base import Request, Result
from mrtui.backends.export import ExportResult
from mrtui.backends.training import TrainResult
from mrtui.loop.runner import Runner
from mrtui.loop.settings import IterationSettings, RunSettings
from mrtui.loop.stages import ModelIdentity
from mrtui.loop.training import TrainStage
from mrtui.store import EventLog

RUN_ID = "main"
K, N = 4, 3
UNPARSEABLE_EVERY = 4
TRAIN_STEPS = 3

# Everything a terminal UI must show as text, never interpret.
HOSTILE = (
    "[bold red]BOOM[/] [link=http://x]y[/link] \x1b[31mRED\x1b[0m bell\x07 [@click=app.quit]quit[/]"
)
HOSTILE_INDEX = 2

PROMPTS: list[dict[str, Any]] = [
    {"prompt": "Question 0: what is a list?", "id": "src-0"},
    {"prompt": "What is 50% of 10?", "id": "src-1"},
    {"prompt": f"Repeat after me: {HOSTILE}", "id": "src-2"},
    {"prompt": "Name a snake_case identifier.", "id": "src-3"},
    {"prompt": "Question 4: why is the sky blue?"},
    {"prompt": 'Summarise: ünïcödé ✓ and "quotes"', "id": "src-5"},
]


def hostile_prompt_index() -> int:
    """The index (file order) of the prompt whose text contains :data:`HOSTILE`."""
    return HOSTILE_INDEX


class HostileFakeBackend(FakeBackend):
    """``FakeBackend`` whose answers about the hostile prompt echo the hostile text, and whose
    meta-judge sometimes declares a tie or gives no winner line. ``delay`` seconds per request
    stand in for a model's time, for tests that read a log while it is written."""

    def __init__(self, *, delay: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.delay = delay

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for result in super().generate(requests):
            if self.delay:
                time.sleep(self.delay)
            yield result

    def _answer(self, req: Request) -> str:
        content = req.messages[-1].content
        answer = super()._answer(req)
        if req.choices:
            return answer
        if "[Judgment A]" in content:
            h = int(hashlib.sha256(content.encode()).hexdigest()[:8], 16)
            if h % 9 == 0:
                answer = "Both judgments are equally good.\nWinner: tie"
            elif h % 9 == 1:
                answer = "I cannot decide between them."
        if "BOOM" not in content:
            return answer
        if "[Response]" in content:  # judge or meta-judge: quote it, keep the final line
            return f"The response says {HOSTILE}\n{answer}"
        return f"{answer}\n{HOSTILE}"  # actor


class FakeTrainer:
    """Logs ``TRAIN_STEPS`` steps with a falling loss and writes a stand-in model folder."""

    def train(
        self, base: Path, pairs: list[Any], out_dir: Path, settings: Any, on_step: Any = None
    ) -> TrainResult:
        from mrtui.backends.training import StepMetrics

        out_dir.mkdir(parents=True, exist_ok=True)
        for step in range(1, TRAIN_STEPS + 1):
            on_step(
                StepMetrics(
                    step, step / TRAIN_STEPS, 0.69 - 0.1 * step, 0.1, -0.1, 1.0, 0.2, 5e-5, {}
                )
            )
        weights = f"{base}|{len(pairs)}"
        (out_dir / "weights").write_text(weights)
        return TrainResult(
            out_dir,
            hashlib.sha256(str(out_dir).encode()).hexdigest(),
            TRAIN_STEPS,
            0.1,
            {"loss": 0.69 - 0.1 * TRAIN_STEPS},
            # the checkpoint's identity: from the weights, not the (random) folder name, so
            # every build logs the same model (and the fake backend the same answers); the
            # same value as its export's hash, which identified checkpoints before
            model_sha256=hashlib.sha256(f"gguf of {weights}".encode()).hexdigest(),
        )


def fake_export(model_dir: Path, base_gguf: Path, out: Path, outtype: str) -> ExportResult:
    out.parent.mkdir(parents=True, exist_ok=True)
    # from the weights, not the (random) folder name, so every build logs the same model
    out.write_text(f"gguf of {(model_dir / 'weights').read_text()}")
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    return ExportResult(out, sha, outtype, n_tensors=0, wall_s=0.01)


def _sha(ref: str) -> str:
    p = Path(ref)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "f" * 64


def write_prompts(path: Path, prompts: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(
        "\n".join(json.dumps(p, ensure_ascii=False) for p in prompts or PROMPTS) + "\n",
        encoding="utf-8",
    )
    return path


def build_log(
    db: Path,
    prompts: Path,
    *,
    run_id: str = RUN_ID,
    iterations: int = 2,
    defaults: dict[str, Any] | None = None,
    overrides: dict[int, dict[str, Any]] | None = None,
    flush_interval: float = 0.5,
    delay: float = 0.0,
) -> None:
    """Run the whole loop on ``db`` with the hostile fake backend and the fake trainer."""
    settings = RunSettings(
        prompts=str(prompts),
        model="fake-model",
        backend="fake",
        run_id=run_id,
        iterations=iterations,
        defaults=IterationSettings(**({"k": K, "n": N} | (defaults or {}))),
        overrides=overrides or {},
    )

    def stage(*args: Any, **kw: Any) -> TrainStage:
        return TrainStage(
            *args,
            **kw,
            materialize=lambda p: Path(f"{p}.hf"),
            trainer=FakeTrainer(),
            exporter=fake_export,
        )

    with EventLog(db, flush_interval=flush_interval) as log:
        Runner(
            log,
            settings,
            backend_factory=lambda s, m: HostileFakeBackend(
                sha256=_sha(m), unparseable_every=UNPARSEABLE_EVERY, delay=delay
            ),
            resolver=lambda m: ModelIdentity(m, _sha(m), m),
            train_stage=stage,
        ).run()


@pytest.fixture(scope="session")
def tui_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("tui-prompts") / "prompts.jsonl")


@pytest.fixture(scope="session")
def tui_log(tmp_path_factory: pytest.TempPathFactory, tui_prompts: Path) -> Path:
    """Run "main": 6 prompts, K=4, N=3, iteration 1 trained (3 logged steps) into the model
    of iteration 2, which does not train and drops judge pairs with equal scores."""
    db = tmp_path_factory.mktemp("tui-log") / "log.duckdb"
    build_log(db, tui_prompts, overrides={2: {"train": False, "drop_same_score": True}})
    return db


@pytest.fixture(scope="session")
def tui_log_iteration(tmp_path_factory: pytest.TempPathFactory, tui_prompts: Path) -> Path:
    """Two runs in one file: "other" (per-response position weights), then "wide" (per
    iteration weights), one iteration each without training, on the same prompts."""
    db = tmp_path_factory.mktemp("tui-log-iteration") / "log.duckdb"
    build_log(db, tui_prompts, run_id="other", iterations=1, defaults={"train": False})
    build_log(
        db,
        tui_prompts,
        run_id="wide",
        iterations=1,
        defaults={"train": False, "weights_scope": "iteration", "seed": 7},
    )
    return db


EXPECTED = {"judge_scoring": "expected", "meta_scoring": "expected", "structured_judging": True}


@pytest.fixture(scope="session")
def tui_log_expected(tmp_path_factory: pytest.TempPathFactory, tui_prompts: Path) -> Path:
    """Run "main" as ``tui_log`` (iteration 1 trained, iteration 2 not) under :data:`EXPECTED`:
    scores are Σ s·p(s), verdicts carry P(first better), battles soft outcomes."""
    db = tmp_path_factory.mktemp("tui-log-expected") / "log.duckdb"
    build_log(db, tui_prompts, defaults=EXPECTED, overrides={2: {"train": False}})
    return db


@pytest.fixture
def tui_log_copy(tui_log: Path, tmp_path: Path) -> Path:
    """A private copy of ``tui_log``'s database file (no lock file, no checkpoints)."""
    dst = tmp_path / tui_log.name
    shutil.copyfile(tui_log, dst)
    return dst
