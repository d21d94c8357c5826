"""Run and per-iteration settings: dataclasses whose fields carry their help, validated early.

A TOML config file holds run-level keys, a ``[defaults]`` table of iteration settings and
``[iteration.N]`` tables that override them for iteration N; command-line flags override the
file. Paper values (Wu et al. 2024) are noted where our CPU-sized defaults differ.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mrtui.backends.training import DPOSettings
from mrtui.store.events import SENTENCE_WORDS

from .eval_settings import RUN_CONFIG_KEYS, EvalConfigError, EvalSettings
from .eval_settings import from_run_config as eval_from_run_config

DPO_PREFIX = "dpo_"
MIN_RATIONALE_CHARS = 40  # structured judging: the shortest rationale the grammar allows
SCORINGS = ("sampled", "expected")  # judge_scoring and meta_scoring


class ConfigError(ValueError):
    """A setting or config file is invalid; the message says which and how to fix it."""


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class IterationSettings:
    k: int = _help("responses sampled per prompt (paper: 7)", 4)
    n: int = _help("judgements per response (paper: 11)", 3)
    actor_temperature: float = _help("actor sampling temperature (paper: 0.8)", 0.8)
    actor_top_p: float = _help("actor nucleus sampling (paper: 0.95)", 0.95)
    actor_max_tokens: int = _help("longest response, in tokens", 384)
    judge_temperature: float = _help("judge sampling temperature", 0.8)
    judge_top_p: float = _help("judge nucleus sampling", 0.95)
    judge_max_tokens: int = _help("longest judgement, in tokens", 256)
    meta_temperature: float = _help("meta-judge sampling temperature", 0.8)
    meta_top_p: float = _help("meta-judge nucleus sampling", 0.95)
    meta_max_tokens: int = _help("longest meta-verdict, in tokens", 256)
    rho: float = _help("length-control ρ in [0, 1); 0 is plain best vs worst", 0.0)
    max_chosen_chars: int = _help(
        "cap on a chosen response's length; 0: none (paper: 2500 in iteration 1)", 0
    )
    judge_max_chars: int = _help(
        "drop a judge pair whose chosen judgement is longer; 0: none (paper: about 1000-1100)", 1100
    )
    drop_same_score: bool = _help(
        "drop judge pairs whose two judgements give the same score", False
    )
    weights_scope: str = _help("count position wins per 'response' or per 'iteration'", "response")
    judge_fallback: bool = _help(
        "when a judgement has no valid score line, ask for just the "
        "score with a one-token constrained continuation",
        False,
    )
    meta_fallback: bool = _help("the same for meta-verdicts without a winner line", False)
    structured_judging: bool = _help(
        "judge and meta-judge must write a one-paragraph rationale, then their final line "
        "(Score: N / Winner: Judgment X), enforced by the backend's constrained decoding",
        False,
    )
    rationale_max_chars: int = _help(
        "longest rationale structured judging allows (it ends at a sentence end)", 600
    )
    min_rationale_words: int = _help(
        "judgements whose rationale has fewer words (not counting lines copied from the "
        "prompt) are left out of meta-judging and judge pairs; 0 keeps them all",
        SENTENCE_WORDS,
    )
    judge_scoring: str = _help(
        "how a judgement's score is read: 'sampled' (the number its final line names, as in "
        "the paper) or 'expected' (the mean of the scores weighted by the model's probability "
        "of each at the final line; needs a backend with choice probabilities)",
        "sampled",
    )
    meta_scoring: str = _help(
        "how a meta-verdict is read: 'sampled' (the winner its final line names; battles "
        "weighted by ω as in the paper) or 'expected' (P(first judgement better) from the "
        "winner's probabilities; both orders averaged into a soft outcome)",
        "sampled",
    )
    judge_rationale: bool = _help(
        "judge and meta-judge write their reasoning before the final line; off: the final "
        "line comes right after the prompt (cheaper, no reasoning to read; pairwise "
        "comparisons follow pairwise_rationale)",
        True,
    )
    actor_judging: str = _help(
        "where actor pairs come from: 'pointwise' (each response's mean judge score, as in the "
        "paper) or 'pairwise' (the judge compares every two responses of a prompt in both "
        "orders; a Bradley-Terry fit of the outcomes ranks them)",
        "pointwise",
    )
    pairwise_rationale: bool = _help(
        "the judge writes its reasoning before naming the better of two responses "
        "(pairwise actor judging, the judge check's pairwise part); off: the verdict comes "
        "right after the prompt",
        True,
    )
    pairwise_template: str = _help(
        "template the judge compares two responses with (pairwise actor judging, judge check)",
        "eval_pairwise",
    )
    judge_check: str = _help(
        "before each iteration, check the judge on a labelled preference set (JSONL with "
        "prompt, chosen, rejected; 'shipped' for the packaged set) and log the result; "
        "'': no check",
        "",
    )
    judge_check_action: str = _help(
        "when the checked judge is no better than chance (the 95% interval of its pointwise "
        "accuracy reaches 0.5): 'stop' the run with an alarm, or train on 'actor' pairs only",
        "stop",
    )
    judge_check_limit: int = _help("labelled pairs the check uses; 0: all of them", 0)
    score_decimals: bool = _help(
        "accept decimal scores ('Score: 4.5'); off: such a judgement is unparsed", False
    )
    skip_unused_meta: bool = _help(
        "skip the meta-judge stage in iterations whose training uses no judge pairs", True
    )
    prompts_per_iteration: int = _help(
        "prompts each iteration draws from the run's pool (deterministic, by seed); "
        "0: every iteration uses every prompt",
        0,
    )
    prompts_disjoint: bool = _help(
        "iterations draw disjoint prompt slices (the paper's fresh prompts per iteration); "
        "off: each iteration draws from the whole pool",
        True,
    )
    bt_prior_games: float = _help(
        "strength of the Bradley-Terry prior: virtual games (half won) per judgement against "
        "a fixed opponent; toward 1e-9 (the smallest) it approaches the plain maximum-likelihood "
        "fit",
        1.0,
    )
    seed: int = _help("base seed; each unit's seed derives from it and the unit's key", 0)
    train: bool = _help("train M_t on this iteration's pairs with DPO to make M_{t+1}", True)
    train_kinds: str = _help(
        "pairs to train on: 'auto' (actor and judge pairs in iterations 1-2, actor pairs "
        "after, as in the paper), 'both', 'actor' or 'judge'",
        "auto",
    )
    max_judge_share: float = _help(
        "largest share of judge pairs in the training set; 1.0: no cap (too many judge pairs "
        "can collapse the judge to 'always 5'; one re-implementation keeps them <= 0.15)",
        1.0,
    )
    dpo: DPOSettings = field(
        default_factory=DPOSettings,
        metadata={"help": "DPO hyperparameters; each is also a flat dpo_<name> setting"},
    )
    export_type: str = _help(
        "GGUF type llama.cpp serves an HF model in (a trained checkpoint, or an HF --model): "
        "f16, q8_0 (faster on CPUs) or q4_k_m; HF-native backends serve the folder itself",
        "f16",
    )
    judge_template: str = _help("judge template: built-in name or path", "judge")
    meta_template: str = _help("meta-judge template: built-in name or path", "meta_judge")
    actor_template: str = _help("actor template: built-in name or path", "actor")

    def __post_init__(self) -> None:
        for name in (
            "k",
            "n",
            "actor_max_tokens",
            "judge_max_tokens",
            "meta_max_tokens",
            "rationale_max_chars",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.rho < 1.0:
            raise ConfigError(f"rho must be in [0, 1), got {self.rho}")
        for name in ("actor", "judge", "meta"):
            if getattr(self, f"{name}_temperature") < 0:
                raise ConfigError(f"{name}_temperature must be >= 0")
            if not 0 < getattr(self, f"{name}_top_p") <= 1:
                raise ConfigError(f"{name}_top_p must be in (0, 1]")
        if self.weights_scope not in ("response", "iteration"):
            raise ConfigError(
                f"weights_scope must be 'response' or 'iteration', got {self.weights_scope!r}"
            )
        for name in ("judge_scoring", "meta_scoring"):
            if getattr(self, name) not in SCORINGS:
                raise ConfigError(
                    f"{name} must be 'sampled' or 'expected', got {getattr(self, name)!r}"
                )
        if self.actor_judging not in ("pointwise", "pairwise"):
            raise ConfigError(
                f"actor_judging must be 'pointwise' or 'pairwise', got {self.actor_judging!r}"
            )
        if self.judge_check_action not in ("stop", "actor"):
            raise ConfigError(
                f"judge_check_action must be 'stop' or 'actor', got {self.judge_check_action!r}"
            )
        if self.judge_check_limit < 0:
            raise ConfigError("judge_check_limit must be >= 0 (0: every pair)")
        if self.train_kinds not in ("auto", "both", "actor", "judge"):
            raise ConfigError(
                f"train_kinds must be 'auto', 'both', 'actor' or 'judge', got {self.train_kinds!r}"
            )
        if not 0.0 <= self.max_judge_share <= 1.0:
            raise ConfigError(f"max_judge_share must be in [0, 1], got {self.max_judge_share}")
        if self.export_type not in ("f16", "q8_0", "q4_k_m"):
            raise ConfigError(f"export_type must be f16, q8_0 or q4_k_m, got {self.export_type!r}")
        if self.max_chosen_chars < 0 or self.judge_max_chars < 0:
            raise ConfigError("length caps must be >= 0 (0 means no cap)")
        if self.rationale_max_chars < MIN_RATIONALE_CHARS + 20:
            raise ConfigError(
                f"rationale_max_chars must be at least {MIN_RATIONALE_CHARS + 20}, "
                f"got {self.rationale_max_chars}"
            )
        if self.min_rationale_words < 0 or self.prompts_per_iteration < 0:
            raise ConfigError("min_rationale_words and prompts_per_iteration must be >= 0")
        if not 1e-9 <= self.bt_prior_games <= 100.0:
            raise ConfigError(f"bt_prior_games must be in [1e-9, 100], got {self.bt_prior_games}")

    # Settings that decide what gets generated or trained; the rest only change derived views.
    GENERATION_FIELDS = (
        "actor_temperature",
        "actor_top_p",
        "actor_max_tokens",
        "judge_temperature",
        "judge_top_p",
        "judge_max_tokens",
        "meta_temperature",
        "meta_top_p",
        "meta_max_tokens",
        "judge_fallback",
        "meta_fallback",
        "structured_judging",
        "rationale_max_chars",
        "min_rationale_words",
        "score_decimals",
        "judge_scoring",
        "meta_scoring",
        "judge_rationale",
        "actor_judging",
        "pairwise_rationale",
        "pairwise_template",
        "judge_check",
        "judge_check_action",
        "judge_check_limit",
        "prompts_per_iteration",
        "prompts_disjoint",
        "seed",
        "judge_template",
        "meta_template",
        "actor_template",
        "train",
        "train_kinds",
        "max_judge_share",
        *(f"{DPO_PREFIX}{f.name}" for f in fields(DPOSettings)),
        "export_type",
    )

    @classmethod
    def from_flat(cls, values: dict[str, Any], where: str = "settings") -> IterationSettings:
        """Build and validate from flat names (``dpo_beta`` for ``dpo.beta``), as config files,
        ``--set`` and the log write them. Every bad value is a :class:`ConfigError`."""
        unknown = set(values) - ITERATION_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown setting(s) {sorted(unknown)}; known: "
                + ", ".join(sorted(ITERATION_KEYS))
            )
        plain = {k: v for k, v in values.items() if not k.startswith(DPO_PREFIX)}
        dpo = {k[len(DPO_PREFIX) :]: v for k, v in values.items() if k.startswith(DPO_PREFIX)}
        dpo.setdefault("seed", plain.get("seed", 0))
        for name, value in {**plain, **{DPO_PREFIX + k: v for k, v in dpo.items()}}.items():
            _check_type(name, value, where)
        try:
            return cls(**plain, dpo=DPOSettings(**dpo))
        except ValueError as exc:  # DPOSettings' own checks name the field without the prefix
            msg = str(exc)
            if not isinstance(exc, ConfigError) and not msg.startswith(DPO_PREFIX):
                msg = DPO_PREFIX + msg
            raise ConfigError(f"{where}: {msg}") from None

    def flat(self) -> dict[str, Any]:
        """Flat names and values (``dpo_beta``, ...): what config files and the log hold."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dpo"}
        d.update({DPO_PREFIX + k: v for k, v in self.dpo.to_dict().items()})
        return d

    def with_flat(self, **changes: Any) -> IterationSettings:
        """A copy with some flat settings changed, validated."""
        return IterationSettings.from_flat({**self.flat(), **changes})

    @property
    def needs_choice_probs(self) -> bool:
        """Whether the backend must give choice probabilities (``CHOICE_PROBS``)."""
        return "expected" in (self.judge_scoring, self.meta_scoring)

    def kinds_for(self, iteration: int) -> tuple[str, ...]:
        """Which pair kinds train this iteration's model."""
        if self.train_kinds == "auto":
            return ("actor", "judge") if iteration <= 2 else ("actor",)
        return ("actor", "judge") if self.train_kinds == "both" else (self.train_kinds,)


def _field_help() -> dict[str, str]:
    out = {f.name: f.metadata.get("help", "") for f in fields(IterationSettings) if f.name != "dpo"}
    out.update({DPO_PREFIX + k: v for k, v in DPOSettings.help().items()})
    return out


# Every iteration setting by its flat name, with its help: the names config files, --set and
# the log use.
ITERATION_HELP = _field_help()
ITERATION_KEYS = frozenset(ITERATION_HELP)


def _check_type(name: str, value: Any, where: str) -> None:
    """Refuse a value of the wrong type (TOML gives ints, floats, bools and strings)."""
    if name.startswith(DPO_PREFIX):
        default = getattr(DPOSettings(), name[len(DPO_PREFIX) :])
    else:
        default = getattr(_DEFAULTS, name)
    if default is None or value is None:
        return
    ok = (
        isinstance(value, bool)
        if isinstance(default, bool)
        else isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, float)
        else isinstance(value, int) and not isinstance(value, bool)
        if isinstance(default, int)
        else isinstance(value, type(default))
    )
    if not ok:
        raise ConfigError(f"{where}: {name} must be a {type(default).__name__}, got {value!r}")


@dataclass(frozen=True)
class RunSettings:
    prompts: str | None = None
    model: str = "qwen2.5-coder-0.5b-instruct"
    backend: str = "llama.cpp"
    run_id: str = "main"
    iterations: int = 1
    prompt_limit: int | None = None  # use only the first N prompts of the file
    backend_options: dict[str, Any] = field(default_factory=dict)
    defaults: IterationSettings = field(default_factory=IterationSettings)
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)
    # evaluate each iteration's model as the run goes (run-config keys eval, eval_limit, ...)
    evaluation: EvalSettings | None = None

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"iterations must be at least 1, got {self.iterations}")
        if not self.run_id or not self.run_id.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"run id {self.run_id!r} must be letters, digits, - or _")

    def for_iteration(self, iteration: int) -> IterationSettings:
        changes = self.overrides.get(iteration)
        return self.defaults.with_flat(**changes) if changes else self.defaults


RUN_KEYS = {
    "prompts",
    "model",
    "backend",
    "run_id",
    "iterations",
    "backend_options",
    "prompt_limit",
}
_DEFAULTS = IterationSettings()


def load_config(path: Path | None, cli: dict[str, Any]) -> RunSettings:
    """Merge a TOML file (if any) with command-line values (None means 'not given'), and
    validate every setting of every iteration now, before anything runs."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    tables = {"defaults", "iteration", *RUN_CONFIG_KEYS}
    unknown = set(data) - RUN_KEYS - tables
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {sorted(unknown)}; top-level keys are "
            + ", ".join(sorted(RUN_KEYS | tables))
        )
    defaults = dict(data.get("defaults", {}))
    overrides: dict[int, dict[str, Any]] = {}
    for key, table in dict(data.get("iteration", {})).items():
        if not str(key).isdigit() or int(key) < 1:
            raise ConfigError(f"{path}: [iteration.{key}] must name an iteration number >= 1")
        overrides[int(key)] = dict(table)
    run = {k: v for k, v in data.items() if k in RUN_KEYS}
    try:
        evaluation = eval_from_run_config({k: v for k, v in data.items() if k in RUN_CONFIG_KEYS})
    except (EvalConfigError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if path is not None and isinstance(run.get("prompts"), str):
        prompts = Path(run["prompts"])  # relative to the config file, not the shell
        run["prompts"] = str(prompts if prompts.is_absolute() else Path(path).parent / prompts)
    unknown = set(cli) - RUN_KEYS - ITERATION_KEYS
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {sorted(unknown)}; known: "
            + ", ".join(sorted(RUN_KEYS | ITERATION_KEYS))
        )
    for key, value in cli.items():
        if value is None:
            continue
        if key in ITERATION_KEYS:
            defaults[key] = value
        else:
            run[key] = value
    base = IterationSettings.from_flat(defaults, f"{path or 'settings'} [defaults]")
    for it, table in overrides.items():  # validate every iteration now, not mid-run
        IterationSettings.from_flat({**base.flat(), **table}, f"{path} [iteration.{it}]")
    try:
        return RunSettings(defaults=base, overrides=overrides, evaluation=evaluation, **run)
    except TypeError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None
