"""The stage table (mrtui/loop/stage_table.py): every entry names real things, unknown stage
names fail clearly, and the unit keys of existing runs stay what they were."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from mrtui.loop.prompts import Template, load_template
from mrtui.loop.report import COST_ROLES
from mrtui.loop.runner import Runner
from mrtui.loop.settings import IterationSettings, load_config
from mrtui.loop.stage_table import (
    KINDS,
    STAGE_TABLE,
    STAGES,
    StageSpec,
    UnknownStage,
    answer_kind,
    stage_spec,
)
from mrtui.loop.stages import ModelIdentity, Stages, rationale_of, scoring_of
from mrtui.store import EventLog
from mrtui.store import events as ev

SETTING_NAMES = {f.name for f in fields(IterationSettings)}
NAMES = [spec.name for spec in STAGE_TABLE]


def test_the_table_holds_the_four_stages_under_their_logged_names() -> None:
    assert NAMES == ["actor", "judge", "meta", "pairwise"]
    assert {s.name: s.key_prefix for s in STAGE_TABLE} == {
        "actor": "resp",
        "judge": "judg",
        "meta": "meta",
        "pairwise": "cmp",
    }
    assert list(STAGES) == NAMES
    assert list(KINDS) == ["judge", "meta", "pairwise"]
    assert len({s.key_prefix for s in STAGE_TABLE}) == len(STAGE_TABLE)
    assert len({s.template_role for s in STAGE_TABLE}) == len(STAGE_TABLE)


@pytest.mark.parametrize("spec", STAGE_TABLE, ids=NAMES)
def test_every_entry_names_a_real_event_record(spec: StageSpec) -> None:
    assert ev.RECORDS[spec.record.TYPE] is spec.record
    if spec.answer is not None:
        assert spec.answer.record is spec.record
        assert spec.answer.stage == spec.name


@pytest.mark.parametrize("spec", STAGE_TABLE, ids=NAMES)
def test_every_entry_reads_settings_that_exist(spec: StageSpec) -> None:
    missing = set(spec.settings_read()) - SETTING_NAMES
    assert not missing, f"{spec.name} reads {sorted(missing)}, not on IterationSettings"
    s = IterationSettings()
    assert spec.template_name(s) == spec.default_template
    temperature, top_p, max_tokens = spec.sampling_settings(s)
    assert temperature >= 0 and 0 < top_p <= 1 and max_tokens >= 1
    assert spec.cost_role in COST_ROLES


@pytest.mark.parametrize("spec", STAGE_TABLE, ids=NAMES)
def test_every_entry_loads_its_built_in_template(spec: StageSpec) -> None:
    template = spec.load_template(IterationSettings())
    assert template == load_template(spec.default_template)
    assert spec.template_fields <= template.fields


def test_a_template_without_a_stages_placeholders_is_refused_by_its_label(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "meta.txt"
    bad.write_text("Compare {question} and {response}.")
    with pytest.raises(ValueError, match=r"meta-judge template .* must contain \{judgement_a\}"):
        stage_spec("meta").load_template(IterationSettings(meta_template=str(bad)))


def test_every_entry_names_a_view_of_a_fresh_log(tmp_path: Path) -> None:
    with EventLog(tmp_path / "log.duckdb") as log:
        for spec in STAGE_TABLE:
            rows = log.query(
                "SELECT sql FROM duckdb_views() WHERE view_name = ? AND NOT internal", [spec.view]
            )
            assert rows, f"{spec.name}: no view {spec.view!r}"
            assert f"'{spec.record.TYPE}'" in rows[0][0], f"{spec.view} reads no {spec.record}"
            assert log.query(f"SELECT {spec.view_key} FROM {spec.view}") == []


@pytest.mark.parametrize("lookup", [stage_spec, answer_kind])
def test_an_unknown_stage_fails_naming_the_known_ones(lookup: Any) -> None:
    with pytest.raises(UnknownStage, match="unknown stage 'meta_judge'; the stages are "
                       "actor, judge, meta, pairwise"):  # fmt: skip
        lookup("meta_judge")
    with pytest.raises(KeyError):  # what a lookup of the old tuple table raised
        lookup("nope")


def test_the_actor_has_no_answer_kind_and_says_which_stages_do() -> None:
    with pytest.raises(UnknownStage, match="judge-like stages are judge, meta, pairwise"):
        answer_kind("actor")
    s = IterationSettings()
    with pytest.raises(UnknownStage):
        scoring_of(s, "actor")


def test_stages_refuse_an_unknown_stage(tmp_path: Path) -> None:
    stages = _stages(IterationSettings())
    for method in (stages.unit_keys, stages.structure, stages.template_for, stages.scoring):
        with pytest.raises(UnknownStage, match="the stages are actor, judge, meta, pairwise"):
            method("critic")


def test_scoring_and_rationale_settings_come_from_the_table() -> None:
    s = IterationSettings(
        judge_scoring="expected", meta_scoring="sampled", pairwise_rationale=False
    )
    assert [scoring_of(s, n) for n in KINDS] == ["expected", "sampled", "expected"]
    assert [rationale_of(s, n) for n in KINDS] == [True, True, False]
    s = IterationSettings(meta_scoring="expected", judge_rationale=False)
    assert [scoring_of(s, n) for n in KINDS] == ["sampled", "expected", "sampled"]
    assert [rationale_of(s, n) for n in KINDS] == [False, False, True]


# --- unit keys of existing runs ---------------------------------------------------------------
# Computed with the code before the stage table (commit baa914e), for fixed settings: a run
# resumed after any change to the table must find its units under these keys.

MODEL = ModelIdentity("m", "ab" * 32)
ARGS: dict[str, tuple[Any, ...]] = {
    "actor": ("prompt:p1", 0),
    "judge": ("resp:r1", 2),
    "meta": ("resp:r1", "judg:a", "judg:b"),
    "pairwise": ("prompt:p1", "resp:a", "resp:b"),
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "tuned": dict(actor_temperature=0.5, judge_top_p=0.9, meta_max_tokens=100, seed=7),
    "fallback": dict(judge_fallback=True, meta_fallback=True),
    "structured": dict(structured_judging=True, rationale_max_chars=400),
    "expected": dict(judge_scoring="expected", meta_scoring="expected"),
    "no_rationale": dict(judge_rationale=False, pairwise_rationale=False),
    "mixed": dict(
        structured_judging=True, judge_rationale=False, meta_scoring="expected",
        judge_fallback=True,
    ),
}  # fmt: skip
PINNED = {
    "default": {
        "actor": "resp:a25482ddd9fee6ac4d8d50d5079171a8",
        "judge": "judg:9fe570f33ea1921895853f28735da812",
        "meta": "meta:b788ad788ab78e24db1cb4c93b2bcec7",
        "pairwise": "cmp:a995b48e4b33b178c0c5d34f372f6346",
    },
    "tuned": {
        "actor": "resp:cd6571c703776b462556a3e0f0f6d43a",
        "judge": "judg:34d8537bc2e952a2c95441d96b47fabf",
        "meta": "meta:5933a9feeb5741fbfe16d72e3e7620e6",
        "pairwise": "cmp:213ec5b7bbfe69e9a81fd26e38b13688",
    },
    "fallback": {
        "actor": "resp:a25482ddd9fee6ac4d8d50d5079171a8",
        "judge": "judg:45fef869e04938cba5e60a5d78b73e7e",
        "meta": "meta:256554ddf368dc7641e2e22ba08eb80a",
        "pairwise": "cmp:6291e0ee8beaaa5a504761721e3562df",
    },
    "structured": {
        "actor": "resp:a25482ddd9fee6ac4d8d50d5079171a8",
        "judge": "judg:c0def2f17134ba6dcbae6bec2691ce8c",
        "meta": "meta:0c6ba531fa073df55093b2902f90955f",
        "pairwise": "cmp:88ad213ece8456d78bd904938f64ec55",
    },
    "expected": {
        "actor": "resp:a25482ddd9fee6ac4d8d50d5079171a8",
        "judge": "judg:3d146b5c1988e7706ad11d34d325ef31",
        "meta": "meta:7b5d24d1d165696cea4897b4747ee16f",
        "pairwise": "cmp:5c95f7f87533eb1b3406e8237f2e2c92",
    },
    "no_rationale": {
        "actor": "resp:a25482ddd9fee6ac4d8d50d5079171a8",
        "judge": "judg:344f12bf2b9525f0959b04b625bdf191",
        "meta": "meta:7b9dcc7c47e03d2647290aaba75626c0",
        "pairwise": "cmp:c195030890b4ebea3d73995b92bad851",
    },
    "mixed": {
        "actor": "resp:a25482ddd9fee6ac4d8d50d5079171a8",
        "judge": "judg:2bc24eac5c3aab7c5433f6e522be496d",
        "meta": "meta:94cef2740322ab34c4181b739a633219",
        "pairwise": "cmp:399e95e76a5b90649abd49c658ede6e2",
    },
}


def _templates() -> dict[str, Template]:
    s = IterationSettings()
    return {spec.template_role: spec.load_template(s) for spec in STAGE_TABLE}


def _stages(s: IterationSettings) -> Stages:
    return Stages(None, "run-1", 2, s, MODEL, _templates(), _no_backend)  # type: ignore[arg-type]


def _no_backend() -> Any:
    raise AssertionError("keys need no backend")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unit_keys_of_existing_runs_do_not_change(variant: str) -> None:
    stages = _stages(IterationSettings().with_flat(**VARIANTS[variant]))
    keys = {name: stages.unit_keys(name)(*args) for name, args in ARGS.items()}
    assert keys == PINNED[variant]


# --- the table and a real iteration agree ---------------------------------------------------


def test_an_iteration_logs_each_stages_units_as_its_table_entry_says(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": f"Question {i}?"}) for i in range(3)))
    settings = load_config(
        None,
        {"train": False, "prompts": str(prompts), "actor_judging": "pairwise", "k": 3, "n": 3},
    )
    with EventLog(tmp_path / "log.duckdb") as log:
        runner = Runner(
            log,
            settings,
            backend_factory=lambda s, m: FakeBackend(),
            resolver=lambda m: ModelIdentity(m, "f" * 64),
        )
        runner.run()
        roles = {r[0] for r in log.query("SELECT payload->>'$.role' FROM events "
                                         "WHERE event_type = 'TemplateRegistered'")}  # fmt: skip
        assert roles == {spec.template_role for spec in STAGE_TABLE}
        started = {r[0] for r in log.query("SELECT payload->>'$.stage' FROM events "
                                           "WHERE event_type = 'StageStarted'")}  # fmt: skip
        assert started == set(NAMES)
        roles_by_stage = log.query("SELECT DISTINCT stage, role FROM cost_spans "
                                   "WHERE stage IS NOT NULL")  # fmt: skip
        assert set(roles_by_stage) == {(spec.name, spec.cost_role) for spec in STAGE_TABLE}
        for spec in STAGE_TABLE:
            logged = log.query(
                "SELECT key FROM events WHERE event_type = ? ORDER BY key", [spec.record.TYPE]
            )
            assert logged, f"no {spec.name} units"
            assert all(k.startswith(f"{spec.key_prefix}:") for (k,) in logged)
            seen = log.query(f"SELECT {spec.view_key} FROM {spec.view} ORDER BY 1")
            assert seen == logged
