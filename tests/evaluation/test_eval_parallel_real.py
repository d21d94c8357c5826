"""Evaluation on real llama.cpp with the packaged Qwen 0.5B: a run that set no ``parallel``
is evaluated with batched decoding, whose greedy answers begin as the sequential path's do,
and a second run of the same model copies them without loading it.

Batched greedy decoding is not token for token the sequential path's on llama.cpp's CPU
kernels: a batch of several sequences takes other matrix kernels, whose rounding differs, and
where the two best next tokens are close an answer can go another way after a few tokens
(tests/backends compare the two paths' probabilities, equal to 1e-3, not their texts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mrtui.backends.base import InferenceBackend
from mrtui.evaluation.run import EVAL_PARALLEL
from mrtui.evaluation.settings import EvalSettings
from mrtui.loop.runner import Runner, default_backend
from mrtui.loop.session import RunSession
from mrtui.loop.settings import RunSettings, load_config
from mrtui.store import EventLog, connect

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python: pip install 'mrtui[llama]'")
pytest.importorskip("langdetect", reason='the IFEval checker needs pip install -e ".[eval]"')

LIMIT, MAX_TOKENS = 4, 24


def _configure(db: Path, tmp_path: Path, model: Path, run_id: str, **options: Any) -> None:
    """Log a run's configuration (no loop): enough for ``mrtui eval`` of its M_1."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Say hi."}))
    cli = {"prompts": str(prompts), "model": str(model), "run_id": run_id}
    settings = load_config(None, {**cli, "backend_options": {"n_ctx": 1024, **options}})
    with EventLog(db) as log:
        Runner(log, settings).configure()


def _evaluate(db: Path, run_id: str) -> list[InferenceBackend]:
    """Evaluate M_1 on IFEval; the backends it started."""
    started: list[InferenceBackend] = []

    def factory(settings: RunSettings, model: str) -> InferenceBackend:
        started.append(default_backend(settings, model))
        return started[-1]

    settings = EvalSettings(suites=("ifeval",), limit=LIMIT, max_tokens=MAX_TOKENS)
    RunSession(db, run_id=run_id, backend_factory=factory).evaluate([1], settings)
    return started


def _answers(db: Path, run_id: str) -> dict[str, tuple[Any, ...]]:
    with connect(db) as con:
        rows = con.execute(
            "SELECT item_id, response, completion_tokens, finish_reason, cached_from "
            "FROM eval_generations WHERE run_id = ?",
            [run_id],
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.slow
def test_parallel_eval_logs_the_sequential_answers(qwen_gguf: Path, tmp_path: Path) -> None:
    one, batched = tmp_path / "one.duckdb", tmp_path / "batched.duckdb"
    _configure(one, tmp_path, qwen_gguf, "main", parallel=1)
    _configure(batched, tmp_path, qwen_gguf, "main")  # no parallel: evaluation picks it
    (seq,) = _evaluate(one, "main")
    (par,) = _evaluate(batched, "main")
    assert seq.info().extra["parallel"] == 1
    assert par.info().extra["parallel"] == EVAL_PARALLEL
    expected, got = _answers(one, "main"), _answers(batched, "main")
    assert len(expected) == LIMIT and got.keys() == expected.keys()
    for item, (text, tokens, reason, cached_from) in got.items():
        assert cached_from is None and text.strip() and 0 < tokens <= MAX_TOKENS
        assert reason in ("stop", "length")
        assert text.split()[0] == expected[item][0].split()[0], item  # greedy: the same start

    _configure(batched, tmp_path, qwen_gguf, "again")  # another run of the same model
    assert _evaluate(batched, "again") == []  # nothing to generate: the model never loaded
    again = _answers(batched, "again")
    assert {k: v[:3] for k, v in again.items()} == {k: v[:3] for k, v in got.items()}
    assert all(v[3] is not None for v in again.values())
