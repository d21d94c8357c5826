"""Logs with evaluation data for the export and TUI tests (a helper module, not a conftest).

``eval_log`` runs a small fake loop (one iteration, no training, as test_eval_fake.py does),
hand-appends a ``CheckpointCreated`` for iteration 2 that points at a second fake model, and
evaluates both iterations on IFEval, AlpacaEval and MT-Bench with a fake judge. The second
model answers exactly like the first except on the items of :data:`REWRITTEN`, where it answers
with :data:`MARKUP` (Rich/Textual markup that a front end must show literally). So an item's
outcome can differ between the iterations only if it is one of those.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fakes import FakeBackend

from mrtui.backends.base import Request
from mrtui.evaluation.settings import EvalSettings
from mrtui.loop.session import RunSession
from mrtui.loop.settings import load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import EventLog, connect
from mrtui.store import events as ev

MODEL, JUDGE, SECOND = "f" * 64, "e" * 64, "d" * 64
SECOND_PATH = "/models/second.gguf"  # the checkpoint of iteration 2 (never opened)
MARKUP = "[bold]x[/bold] [red]BOOM[/] [@click=app.quit]quit[/] [link=http://x]y[/link]"
SUITES = ("ifeval", "alpaca_eval", "mt_bench")
LIMIT = 6


def rewritten(item_id: str) -> bool:
    """The items the second model answers differently (about half of them, by id)."""
    return sum(map(ord, item_id)) % 2 == 0


class SecondModel(FakeBackend):
    """The model of iteration 2: a <<title>>, :data:`MARKUP` and many words on the rewritten
    items' first turns (long, with commas, so rule checks and verdicts change)."""

    def __init__(self, items: dict[str, str]) -> None:
        super().__init__(sha256=SECOND)
        self.items = items  # the prompt text of each rewritten item -> its id

    def _answer(self, req: Request) -> str:
        answer = super()._answer(req)
        content = req.messages[-1].content
        if req.choices or req.structure is not None or len(req.messages) > 1:
            return answer
        if any(prompt in content for prompt in self.items):
            return f"<<A Title>>\n{MARKUP}\nYES, " + "Many, Words, " * 120
        return answer


def _rewritten_prompts() -> dict[str, str]:
    from mrtui.evaluation.run import items

    return {
        item.turns[0]: item.id
        for suite in SUITES
        for item in items(suite, LIMIT)
        if rewritten(item.id)
    }


def factory() -> Any:
    second = _rewritten_prompts()

    def make(settings: Any, model: str) -> FakeBackend:
        if model == "judge":
            return FakeBackend(sha256=JUDGE)
        if model == SECOND_PATH:
            return SecondModel(second)
        return FakeBackend(sha256=MODEL)

    return make


def resolver(name: str) -> ModelIdentity:
    return ModelIdentity(name, JUDGE if name == "judge" else MODEL)


def run_loop(tmp_path: Path) -> Path:
    """One iteration of the loop without training (no evaluation yet)."""
    db = tmp_path / "log.duckdb"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": t}) for t in ["a?", "b?"]))
    settings = load_config(None, {"prompts": str(prompts), "k": 2, "n": 2, "train": False})
    RunSession(db, settings, backend_factory=factory(), resolver=resolver).run()
    return db


def add_second_model(db: Path) -> None:
    """A hand-made checkpoint for iteration 2: the second fake model."""
    record = ev.CheckpointCreated(
        for_iteration=2,
        model_id="second",
        model_sha256=SECOND,
        gguf_path=SECOND_PATH,
        hf_dir=None,
        trained_from_sha256=MODEL,
        training_key=None,
        reason="test",
    )
    with EventLog(db) as log:
        log.append([record.event("main", iteration=1, key="ckpt-2")])


def evaluate(db: Path, iterations: list[int] | None, suites: tuple[str, ...] = SUITES) -> None:
    settings = EvalSettings(suites=suites, limit=LIMIT, judge_model="judge")
    RunSession(db, run_id="main", backend_factory=factory(), resolver=resolver).evaluate(
        iterations, settings
    )


def build_eval_log(tmp_path: Path) -> Path:
    """The loop, the second model, and both iterations evaluated on :data:`SUITES`."""
    db = run_loop(tmp_path)
    add_second_model(db)
    evaluate(db, [1, 2])
    return db


def changed_items(db: Path, suite: str, a: int, b: int) -> set[tuple[str, int, int]]:
    """(item id, turn, sample index) whose outcome differs between iterations a and b,
    computed in Python from ``eval_samples`` (an independent check of the TUI's join)."""
    with connect(db) as con:
        rows = con.execute(
            "SELECT iteration, item_id, turn, sample_index, judge_sha256, outcome_value "
            "FROM eval_samples WHERE run_id = 'main' AND suite = ?",
            [suite],
        ).fetchall()
    got: dict[int, dict[tuple[Any, ...], Any]] = {a: {}, b: {}}
    for it, item, turn, index, judge, value in rows:
        if it in got:
            got[it][(item, turn, index, judge)] = value
    return {k[:3] for k in got[a].keys() & got[b].keys() if got[a][k] != got[b][k]}
