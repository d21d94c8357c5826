"""One validated settings tree: every bad value of every iteration is refused, in one line,
when the config is loaded, before anything is generated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli.helpers import mrtui

from mrtui.loop.runner import _changed_settings
from mrtui.loop.settings import ConfigError, IterationSettings, load_config

FIXTURE_LOG = Path(__file__).parents[1] / "store" / "fixtures" / "v1_log.duckdb"


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"dpo_learning_rate": 2}, "dpo_learning_rate must be in (0, 1)"),
        ({"dpo_max_length": 4}, "dpo_max_length must be an integer >= 8"),
        ({"dpo_lora_r": 0}, "dpo_lora_r must be an integer >= 1"),
        ({"dpo_loss_type": "nope"}, "dpo_loss_type must be one of"),
        ({"dpo_beta": -1.0}, "dpo_beta must be > 0"),
        ({"k": "four"}, "k must be a int"),
        ({"judge_fallback": 1}, "judge_fallback must be a bool"),
        ({"rho": 1.5}, "rho must be in [0, 1)"),
        ({"weights_scope": "prompt"}, "weights_scope must be 'response' or 'iteration'"),
        ({"bogus": 1}, "unknown setting(s) ['bogus']"),
    ],
)
def test_bad_settings_are_refused_when_loaded(values: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, values)
    message = str(caught.value)
    assert needle in message and "\n" not in message


def test_a_bad_value_in_a_later_iteration_is_refused_up_front(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("iterations = 3\n[defaults]\nk = 2\n[iteration.3]\ndpo_learning_rate = 3.0\n")
    with pytest.raises(ConfigError, match=r"\[iteration\.3\]: dpo_learning_rate must be"):
        load_config(config, {})


def test_dpo_settings_sit_inside_the_iteration_settings() -> None:
    s = IterationSettings.from_flat({"k": 5, "dpo_beta": 0.2, "dpo_lora_alpha": 64, "seed": 7})
    assert (s.k, s.dpo.beta, s.dpo.lora_alpha, s.dpo.seed) == (5, 0.2, 64, 7)
    assert IterationSettings.from_flat(s.flat()) == s
    assert s.with_flat(dpo_epochs=3).dpo.epochs == 3
    with pytest.raises(ConfigError, match="dpo_epochs must be an integer >= 1"):
        s.with_flat(dpo_epochs=0)


def test_settings_logged_by_schema_1_load_and_count_as_unchanged() -> None:
    import duckdb

    con = duckdb.connect(str(FIXTURE_LOG), read_only=True)
    try:
        (payload,) = con.execute(
            "SELECT payload FROM events WHERE event_type = 'RunConfigured'"
        ).fetchall()[0]
    finally:
        con.close()
    old = json.loads(payload)["defaults"]
    s = IterationSettings.from_flat(old)
    assert "dpo_lora_alpha" not in old  # a setting schema 1 did not log ...
    assert _changed_settings(old, s.flat()) == []  # ... counts as its default


def test_the_cli_refuses_a_bad_dpo_setting_before_the_log_or_model(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    db = tmp_path / "log.duckdb"
    out = mrtui(
        "run", "--db", db, "--prompts", prompts, "--model", tmp_path / "missing.gguf",
        "--set", "dpo_learning_rate=2",
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "dpo_learning_rate must be in (0, 1)" in out.stderr
    assert not db.exists()
