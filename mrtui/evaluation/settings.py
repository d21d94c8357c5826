"""What an evaluation runs: suites, subset size, judge, and the sampling of answers and verdicts.

The settings are defined in :mod:`mrtui.loop.eval_settings`, beside the run config whose
``eval*`` keys they read (so the loop imports nothing from the evaluation, which builds on
it); this module keeps their names where the evaluation, ``mrtui eval`` and scripts import them.
"""

from __future__ import annotations

from mrtui.loop.eval_settings import (
    BASELINE_M1,
    BASELINE_SHIPPED,
    JUDGED,
    RUN_CONFIG_KEYS,
    SUITE_SETS,
    EvalConfigError,
    EvalSettings,
    from_run_config,
    parse_suites,
)

__all__ = [
    "BASELINE_M1",
    "BASELINE_SHIPPED",
    "JUDGED",
    "RUN_CONFIG_KEYS",
    "SUITE_SETS",
    "EvalConfigError",
    "EvalSettings",
    "from_run_config",
    "parse_suites",
]
