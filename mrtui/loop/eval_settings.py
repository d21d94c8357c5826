"""What an evaluation runs: suites, subset size, judge, and the sampling of answers and verdicts.

One definition for ``mrtui eval``'s flags and a run config's ``eval*`` keys (which evaluate
each iteration's model as the run goes). Settings that change what is generated are part of
every unit's key, so evaluating again with other settings logs new units beside the old.

They live in the loop, beside the run config that holds them, so that reading a config needs
nothing from ``mrtui.evaluation`` (which builds on the loop); ``mrtui.evaluation.settings``
keeps their names where ``mrtui eval`` and its users import them. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

# suite -> the evaluation set its items come from (mrtui.datasets.evalsets)
SUITE_SETS = {
    "ifeval": "ifeval",
    "alpaca_eval": "alpaca_eval",
    "mt_bench": "mt_bench",
    "judge-ifeval": "ifeval",
    "arena_hard": "arena_hard",
}
JUDGED = ("alpaca_eval", "mt_bench", "arena_hard")  # suites that need --judge-model
# arena_hard's baseline: the run's M1 answers, or the answers shipped with Arena-Hard v2.0
BASELINE_M1, BASELINE_SHIPPED = "m1", "shipped"


class EvalConfigError(ValueError):
    """An evaluation setting is invalid; the message says which and how to fix it."""


@dataclass(frozen=True)
class EvalSettings:
    suites: tuple[str, ...] = ("ifeval",)
    limit: int | None = None  # items per suite: a deterministic stratified subset
    judge_model: str | None = None  # the fixed judge of alpaca_eval, mt_bench and arena_hard
    judge_backend: str | None = None  # the backend that serves it (default: the run's)
    allow_self_judge: bool = False  # let the judge be the model under evaluation
    max_tokens: int = 512  # longest answer
    judge_max_tokens: int = 320  # longest verdict
    structured: bool = True  # judges write a rationale, then their final line (constrained)
    rationale_max_chars: int = 400
    pair_samples: int = 4  # judge-ifeval: answers sampled per prompt to find verifiable pairs
    pair_temperature: float = 0.8
    seed: int = 0
    # arena_hard's baseline: "m1" (the run's iteration-1 answers), "shipped" (Arena-Hard
    # v2.0's own baseline answers), or answers logged by a model: its model id, sha256 (or a
    # prefix of 8+ characters), or RUN:ITERATION
    baseline: str = BASELINE_M1

    def __post_init__(self) -> None:
        unknown = [s for s in self.suites if s not in SUITE_SETS]
        if unknown or not self.suites:
            raise EvalConfigError(
                f"unknown suite(s) {unknown or '(none given)'}; choose from "
                + ", ".join(SUITE_SETS)
            )
        if self.limit is not None and self.limit < 1:
            raise EvalConfigError(f"--limit must be at least 1, got {self.limit}")
        for name in ("max_tokens", "judge_max_tokens", "pair_samples"):
            if getattr(self, name) < 1:
                raise EvalConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.pair_samples < 2 and "judge-ifeval" in self.suites:
            raise EvalConfigError("judge-ifeval needs pair_samples >= 2 to find pairs")
        if self.rationale_max_chars < 60:
            raise EvalConfigError("rationale_max_chars must be at least 60")
        if not 0 <= self.pair_temperature <= 2:
            raise EvalConfigError("pair_temperature must be in [0, 2]")
        if not self.baseline.strip() or self.baseline != self.baseline.strip():
            raise EvalConfigError(
                f"--baseline {self.baseline!r} is not a baseline; give m1, shipped, a logged "
                "model id or sha256, or RUN:ITERATION"
            )
        needs_judge = [s for s in self.suites if s in JUDGED]
        if needs_judge and not self.judge_model:
            raise EvalConfigError(
                f"{', '.join(needs_judge)} need{'s' if len(needs_judge) == 1 else ''} a judge: "
                "pass --judge-model (a packaged model name, a .gguf path or hf:REPO/FILE)"
            )

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["suites"] = list(self.suites)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalSettings:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise EvalConfigError(f"unknown evaluation setting(s) {sorted(unknown)}")
        values = dict(values)
        if "suites" in values:
            values["suites"] = parse_suites(values["suites"])
        return cls(**values)

    def with_changes(self, **changes: Any) -> EvalSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def parse_suites(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"ifeval,alpaca_eval"`` or a list -> a tuple of suite names, order kept, no repeats."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for p in (str(x).strip() for x in parts):
        if p and p not in out:
            out.append(p)
    return tuple(out)


# Run-config keys (top level of the TOML) -> EvalSettings fields.
RUN_CONFIG_KEYS = {
    "eval": "suites",
    "eval_limit": "limit",
    "eval_judge_model": "judge_model",
    "eval_judge_backend": "judge_backend",
    "eval_allow_self_judge": "allow_self_judge",
    "eval_max_tokens": "max_tokens",
    "eval_judge_max_tokens": "judge_max_tokens",
    "eval_baseline": "baseline",
}


def from_run_config(values: dict[str, Any]) -> EvalSettings | None:
    """The evaluation a run config asks for after each iteration (None: no ``eval`` key)."""
    if not values.get("eval"):
        return None
    return EvalSettings.from_dict({RUN_CONFIG_KEYS[k]: v for k, v in values.items()})
