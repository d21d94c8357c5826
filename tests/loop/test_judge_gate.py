"""The judge check before each iteration (setting judge_check): logged once, read back on
resume, and a judge no better than chance stops the run or leaves it actor pairs only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends.base import Request
from mrtui.loop.judge_gate import JudgeNoBetterThanChance
from mrtui.loop.runner import Runner
from mrtui.loop.settings import load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import EventLog, connect


class KnowingJudge(FakeBackend):
    """A fake judge that knows: responses saying GOOD get the high scores."""

    def choice_probs(self, req: Request) -> dict[str, float]:
        probs = super().choice_probs(req)
        content = req.messages[-1].content
        if "[Response]" in content and "[Judgment A]" not in content:
            good = "GOOD" in content.split("[Response]", 1)[1]
            weights = {c: (int(c) + 1) ** (3 if good else -3) for c in probs}
            total = sum(weights.values())
            return {c: w / total for c, w in weights.items()}
        return probs


def _files(tmp_path: Path, pairs: int = 16) -> tuple[str, str]:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"Question {i}?"}) for i in range(3)))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(
        json.dumps({"prompt": f"Task {i}?", "chosen": f"GOOD answer {i}.",
                    "rejected": f"weak answer {i}."})
        for i in range(pairs)
    ))  # fmt: skip
    return str(prompts), str(labels)


def _run(db: Path, backend: FakeBackend, **cli: Any) -> list[Any]:
    settings = load_config(None, {"train": False, "k": 2, "n": 2} | cli)
    with EventLog(db) as log:
        runner = Runner(
            log, settings, backend_factory=lambda s, m: backend,
            resolver=lambda m: ModelIdentity(m, "f" * 64),
        )  # fmt: skip
        try:
            return runner.run()
        finally:
            runner.close()


def _checks(db: Path) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(
            "SELECT iteration, n, pointwise_accuracy, pointwise_lo, better_than_chance, action "
            "FROM judge_checks"
        ).fetchall()


def test_a_judge_better_than_chance_is_logged_and_the_run_goes_on(tmp_path: Path) -> None:
    prompts, labels = _files(tmp_path)
    db = tmp_path / "log.duckdb"
    _run(db, KnowingJudge(), prompts=prompts, judge_check=labels, judge_scoring="expected")
    ((it, n, acc, lo, better, action),) = _checks(db)
    assert (it, n, better, action) == (1, 16, True, "continue")
    assert acc == 1.0 and lo > 0.5
    again = KnowingJudge()
    _run(db, again, prompts=prompts, judge_check=labels, judge_scoring="expected")
    assert again.calls == []  # read back from the log: neither the check nor a stage reruns
    assert len(_checks(db)) == 1


def test_a_judge_at_chance_stops_the_run_before_the_actor(tmp_path: Path) -> None:
    prompts, labels = _files(tmp_path)
    db = tmp_path / "log.duckdb"
    with pytest.raises(JudgeNoBetterThanChance, match=r"no better than chance .* actor"):
        _run(db, FakeBackend(), prompts=prompts, judge_check=labels)
    ((_, _, _, lo, better, action),) = _checks(db)
    assert not better and lo <= 0.5 and action == "stop"
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM responses").fetchall() == [(0,)]


def test_the_actor_action_trains_on_actor_pairs_only(tmp_path: Path) -> None:
    prompts, labels = _files(tmp_path)
    db = tmp_path / "log.duckdb"
    _run(db, FakeBackend(), prompts=prompts, judge_check=labels, judge_check_action="actor",
         judge_check_limit=8)  # fmt: skip
    ((_, n, _, _, better, action),) = _checks(db)
    assert (n, better, action) == (8, False, "actor")
    with connect(db) as con:
        (kinds,) = con.execute(
            "SELECT settings->>'$.train_kinds' FROM iteration_settings"
        ).fetchall()[0]
    assert kinds == "actor"


def test_a_missing_labels_file_is_one_clear_error(tmp_path: Path) -> None:
    from mrtui.loop.judgecheck import LabelsError

    prompts, _ = _files(tmp_path)
    with pytest.raises(LabelsError, match=r"labels file .*nope\.jsonl not found"):
        _run(tmp_path / "log.duckdb", FakeBackend(), prompts=prompts,
             judge_check=str(tmp_path / "nope.jsonl"))  # fmt: skip
