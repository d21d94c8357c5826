"""Turning known errors into one line on stderr with the right exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .output import safe

USAGE = 2
RUNTIME = 1


def known_errors() -> tuple[tuple[type[BaseException], int], ...]:
    from mrtui.backends.base import BackendError
    from mrtui.datasets import DatasetError
    from mrtui.evaluation.settings import EvalConfigError
    from mrtui.loop.judge_gate import JudgeNoBetterThanChance
    from mrtui.loop.prompts import TemplateError
    from mrtui.loop.settings import ConfigError
    from mrtui.store import ReadOnlyViolation, StoreError

    return (
        (ConfigError, USAGE),
        (EvalConfigError, USAGE),
        (TemplateError, USAGE),
        (ReadOnlyViolation, USAGE),
        (StoreError, RUNTIME),
        (BackendError, RUNTIME),
        (DatasetError, RUNTIME),
        (JudgeNoBetterThanChance, RUNTIME),
    )


def fail(message: str, code: int) -> None:
    sys.stderr.write(f"Error: {safe(message)}\n")
    raise SystemExit(code)


def guarded(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        for cls, code in known_errors():
            if isinstance(exc, cls):
                fail(str(exc).splitlines()[0] if str(exc) else cls.__name__, code)
        raise
