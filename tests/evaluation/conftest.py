"""Evaluation tests: an IFEval instruction the checker cannot run is an error here, not a
skip that a test would pass over (``MRTUI_IFEVAL_FORBID_SKIPS``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _ifeval_skips_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MRTUI_IFEVAL_FORBID_SKIPS", "1")
