"""Judgements worth learning from, on the fake backend and hand-picked judge answers:
structured judging, fallback-rescued texts, the minimum rationale, meta-judging skipped when
no judge pair trains, and prompt pools drawn per iteration."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.backends.base import Request
from mrtui.backends.constrain import final_line_regex
from mrtui.loop import report
from mrtui.loop.pool import draw
from mrtui.loop.progress import ignore
from mrtui.loop.runner import Runner
from mrtui.loop.settings import ConfigError, load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import EventLog, connect


class ScriptedJudge(FakeBackend):
    """The fake model, except that free-text judgements cycle through ``answers``."""

    def __init__(self, answers: list[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.answers = answers
        self.judged = 0

    def _answer(self, req: Request) -> str:
        content = req.messages[-1].content
        judge = "[Response]" in content and "[Judgment A]" not in content
        if judge and not req.choices and req.structure is None:
            self.judged += 1
            return self.answers[(self.judged - 1) % len(self.answers)]
        return super()._answer(req)


def _prompts(tmp_path: Path, n: int = 4) -> Path:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": f"Question {i}?", "id": i}) for i in range(n)))
    return p


def _run(db: Path, backend: FakeBackend, config: Path | None = None, **cli: Any) -> Runner:
    settings = load_config(config, {"train": False} | cli)
    with EventLog(db) as log:
        runner = Runner(
            log,
            settings,
            backend_factory=lambda s, m: backend,
            resolver=lambda m: ModelIdentity(m, "f" * 64),
        )
        runner.run()
    return runner


def _rows(db: Path, sql: str) -> list[Any]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


def test_structured_judging_sends_the_format_and_records_it(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    backend = FakeBackend()
    _run(db, backend, prompts=str(_prompts(tmp_path)), k=3, n=3, structured_judging=True)
    judged = [c for c in backend.calls if c.structure is not None]
    assert {c.structure.lead for c in judged} == {"Score: ", "Winner: Judgment "}
    assert all(
        c.structure is None for c in backend.calls if "[Response]" not in c.messages[0].content
    )
    rows = _rows(db, "SELECT judgement, structured, rationale_words, payload FROM judgements")
    assert len(rows) == 36
    for text, structured, words, payload in rows:
        spec = json.loads(payload)["structure"]
        assert structured and spec["lead"] == "Score: " and spec["max_chars"] == 600
        assert text.startswith("Reasoning: ") and words >= 3
    verdicts = _rows(db, "SELECT structured, winner FROM meta_verdicts")
    assert verdicts and all(s and w in ("A", "B") for s, w in verdicts)


def test_structured_and_free_judging_are_different_units(tmp_path: Path) -> None:
    """Switching structured judging on is a new generation setting: the judge's unit keys
    change (and a started iteration refuses the switch)."""
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path))
    _run(db, FakeBackend(), prompts=prompts, k=2, n=2)
    with pytest.raises(ConfigError, match="structured_judging"):
        _run(db, FakeBackend(), prompts=prompts, k=2, n=2, structured_judging=True)
    other = tmp_path / "other.duckdb"
    _run(other, FakeBackend(), prompts=prompts, k=2, n=2, structured_judging=True)
    free = {k for (k,) in _rows(db, "SELECT judgement_key FROM judgements")}
    structured = {k for (k,) in _rows(other, "SELECT judgement_key FROM judgements")}
    assert free and structured and not free & structured


def test_a_rescued_judgement_keeps_its_recovered_score_line(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    answers = ["0", "The answer is right and complete, a clear explanation.\nScore: 4"]
    backend = ScriptedJudge(answers)
    _run(db, backend, prompts=str(_prompts(tmp_path, 2)), k=2, n=2, judge_fallback=True)
    rows = _rows(
        db,
        "SELECT judgement, score, rationale_words, eligible, payload "
        "FROM judgements WHERE fallback_used",
    )
    assert rows
    for text, score, words, eligible, payload in rows:
        fb = json.loads(payload)["fallback"]
        assert text == f"0\nScore: {fb['text'].strip()}" and score == int(fb["text"])
        assert words == 0 and not eligible  # a lone "0" is no rationale
    # the meta-judge never saw it, and no judge pair has it on either side
    shown = [
        c.messages[0].content for c in backend.calls if "[Judgment A]" in c.messages[0].content
    ]
    assert not any(re.search(r"\[Judgment [AB]\]\n0\n", s) for s in shown)
    sides = _rows(db, "SELECT chosen_key, rejected_key FROM judge_pair_candidates")
    rescued = {k for (k,) in _rows(db, "SELECT judgement_key FROM judgements WHERE fallback_used")}
    assert not {k for pair in sides for k in pair} & rescued


def test_bare_scores_stay_out_of_meta_judging_and_judge_pairs(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    answers = [
        "Score: 5",
        "It names the right city and explains why.\nScore: 4",
        "**Score:** 1",
        "It is off topic and says nothing useful here.\nScore: 1",
        "Score: 3",
        "The answer covers the basics but misses the example.\nScore: 3",
    ]
    backend = ScriptedJudge(answers)
    _run(db, backend, prompts=str(_prompts(tmp_path, 3)), k=2, n=6)
    words = dict(_rows(db, "SELECT judgement_key, rationale_words FROM judgements"))
    assert sorted(set(words.values())) == [0, 8, 9]
    shown = [
        c.messages[0].content for c in backend.calls if "[Judgment A]" in c.messages[0].content
    ]
    assert shown and not any(re.search(r"\[Judgment [AB]\]\n(\*\*)?Score", s) for s in shown)
    sides = _rows(db, "SELECT chosen_key, rejected_key FROM judge_pair_candidates")
    assert sides and all(words[c] >= 3 and words[r] >= 3 for c, r in sides)
    # min_rationale_words = 0 keeps them all
    db0 = tmp_path / "all.duckdb"
    _run(
        db0,
        ScriptedJudge(answers),
        prompts=str(_prompts(tmp_path, 3)),
        k=2,
        n=6,
        min_rationale_words=0,
    )
    assert _rows(db0, "SELECT bool_and(eligible) FROM judgements")[0][0]


def test_meta_judging_is_skipped_when_no_judge_pair_trains(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    runner = _run(db, FakeBackend(), prompts=str(_prompts(tmp_path)), k=2, n=2)
    assert _rows(db, "SELECT count(*) FROM meta_verdicts")[0][0] > 0  # train=false: kept
    s = load_config(None, {"train": True, "train_kinds": "actor"}).defaults
    assert not runner.meta_needed(1, s)
    assert runner.meta_needed(1, s.with_flat(skip_unused_meta=False))
    auto = s.with_flat(train_kinds="auto")
    assert runner.meta_needed(2, auto) and not runner.meta_needed(3, auto)


def test_iterations_draw_disjoint_prompt_slices_that_resume_reuses(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    prompts = str(_prompts(tmp_path, 7))
    _run(
        db,
        FakeBackend(),
        prompts=prompts,
        k=2,
        n=2,
        prompts_per_iteration=3,
    )
    # iteration 2 would need a trained model: draw its prompts directly
    settings = load_config(None, {"prompts": prompts, "prompts_per_iteration": 3, "k": 2})
    with EventLog(db) as log:
        runner = Runner(log, settings, resolver=lambda m: ModelIdentity(m, "f" * 64))
        pool = runner.configure()
        first = draw(log, "main", 1, settings.defaults, pool, ignore)
        second = draw(log, "main", 2, settings.defaults, pool, ignore)
        assert draw(log, "main", 2, settings.defaults, pool, ignore) == second  # logged, reused
    assert len(first) == len(second) == 3 and not {k for k, _ in first} & {k for k, _ in second}
    drawn = _rows(
        db,
        "SELECT iteration, count(*), any_value(pool_size) FROM iteration_prompts "
        "GROUP BY 1 ORDER BY 1",
    )
    assert drawn == [(1, 3, 7), (2, 3, 7)]
    asked = {r[0] for r in _rows(db, "SELECT DISTINCT prompt_key FROM responses")}
    assert asked == {k for k, _ in first}
    with connect(db) as con:  # status plans the draw, not the pool
        (it1,) = report.status(con)["runs"][0]["iterations"]
    assert (it1["prompts"], it1["responses_planned"], it1["judgements_planned"]) == (3, 6, 12)


def test_a_pool_too_small_for_disjoint_slices_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    db = tmp_path / "log.duckdb"
    with pytest.raises(ConfigError, match="pool holds 4"):
        _run(
            db,
            FakeBackend(),
            prompts=str(_prompts(tmp_path)),
            prompts_per_iteration=3,
            iterations=2,
        )
    assert _rows(db, "SELECT count(*) FROM responses")[0][0] == 0
    # drawing from the whole pool each time is allowed
    _run(
        db,
        FakeBackend(),
        prompts=str(_prompts(tmp_path)),
        prompts_per_iteration=3,
        prompts_disjoint=False,
        k=2,
        n=2,
    )
    assert _rows(db, "SELECT count(*) FROM iteration_prompts")[0][0] == 3


def test_final_line_regex_is_what_the_fake_backend_writes(tmp_path: Path) -> None:
    backend = FakeBackend()
    _run(
        tmp_path / "l.duckdb",
        backend,
        prompts=str(_prompts(tmp_path, 1)),
        k=2,
        n=2,
        structured_judging=True,
    )
    for req in backend.calls:
        if req.structure is not None:
            (c,) = list(FakeBackend().generate([req]))
            assert re.fullmatch(final_line_regex(req.structure), c.text)
