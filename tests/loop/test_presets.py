"""The shipped presets load as they are and say where each value comes from."""

from __future__ import annotations

import re
from importlib import resources

from mrtui.loop.settings import RunSettings, load_config

PRESETS = resources.files("mrtui.assets").joinpath("presets")


def _load(name: str) -> RunSettings:
    with resources.as_file(PRESETS.joinpath(name)) as path:
        return load_config(path, {})


def test_the_paper_preset_has_the_papers_setup() -> None:
    s = _load("paper.toml")
    assert s.iterations == 4
    one, two, three, four = (s.for_iteration(i) for i in (1, 2, 3, 4))
    assert (one.k, one.n, one.actor_temperature, one.actor_top_p) == (7, 11, 0.8, 0.95)
    assert one.kinds_for(1) == two.kinds_for(2) == ("actor", "judge")
    assert three.kinds_for(3) == four.kinds_for(4) == ("actor",)
    assert one.max_chosen_chars == 2500 and two.max_chosen_chars == 0
    assert (one.judge_max_chars, two.judge_max_chars) == (1100, 1000)
    assert not one.dpo.lora and one.dpo.beta == 0.1
    assert one.prompts_per_iteration == 5000 and one.prompts_disjoint
    assert [s.for_iteration(i).rho for i in (1, 2, 3, 4)] == [0.0, 0.1, 0.2, 0.2]


def test_every_value_of_the_paper_preset_says_where_it_comes_from() -> None:
    text = PRESETS.joinpath("paper.toml").read_text(encoding="utf-8")
    values = [line for line in text.splitlines() if re.match(r"^\w+\s*=", line)]
    assert len(values) > 30
    for line in values:
        comment = line.partition("#")[2]
        assert re.search(r"paper|Self-Rewarding|our reading|our choice", comment), line


def test_the_demo_preset_judges_with_structure_on_fresh_prompts() -> None:
    s = _load("demo.toml").defaults
    assert s.structured_judging and s.prompts_per_iteration == 4 and s.prompts_disjoint
