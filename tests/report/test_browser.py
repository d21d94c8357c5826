"""The report in a real browser (Debian's chromium, headless): it loads from file:// with no
console error and no request but its own file, its numbers are those of `mrtui sql`, the
battle filters narrow the list, and hostile model text stays text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mrtui.evaluation.compare import signed
from mrtui.evaluation.report import format_metric
from mrtui.store.labels import format_measure

from .conftest import ATTACK, mrtui_sql, write_report


class Opened:
    """A page of the report with what the browser said while showing it."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.url = path.resolve().as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=10_000)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.text_content() or ""

    def shown(self) -> int:
        return int(self.page.get_attribute("#f-count", "data-shown") or -1)

    def rows(self) -> int:
        return self.page.locator("#battle-list tr.battle-row").count()

    def pwned(self) -> Any:
        return self.page.evaluate("() => window.__pwned")

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.requests == [self.url], self.requests  # nothing but the page itself


@pytest.fixture
def opened(browser: Any) -> Iterator[Any]:
    pages: list[Opened] = []

    def open_(path: Path) -> Opened:
        pages.append(Opened(browser, path))
        return pages[-1]

    yield open_
    for p in pages:
        p.page.close()


@pytest.fixture(scope="module")
def report_page(report_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(report_log, tmp_path_factory.mktemp("report-html"))


@pytest.fixture(scope="module")
def adversarial_page(adversarial_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(adversarial_log, tmp_path_factory.mktemp("adversarial-html"))


def test_the_page_loads_with_no_error_and_fetches_nothing(
    opened: Any, report_page: Path, adversarial_page: Path, expected_log: Path, tmp_path: Path
) -> None:
    for path in (report_page, adversarial_page, write_report(expected_log, tmp_path)):
        page = opened(path)
        page.page.click("#battle-list tr.battle-row >> nth=0")
        page.page.check("#f-split")
        page.assert_clean()
        assert page.page.locator("svg.chart").count() >= 6  # the overview's plots are there


def test_the_numbers_are_those_of_mrtui_sql(
    opened: Any, report_page: Path, report_log: Path
) -> None:
    page = opened(report_page)
    health = {r["iteration"]: r for r in mrtui_sql(report_log, "SELECT * FROM iteration_health")}

    def cell(it: int, name: str) -> str:
        return page.text(f'td[data-run="main"][data-iteration="{it}"][data-field="{name}"]')

    for it, h in health.items():
        assert cell(it, "share_of_fives").startswith(f"{h['share_of_fives']:.0%}")
        assert cell(it, "mean_judge_score") == str(round(h["mean_judge_score"], 3))
        assert cell(it, "judgements").startswith(f"{h['judgements']}/")
        consistency = cell(it, "position_consistency")
        assert consistency.startswith(f"{h['position_consistency']:.0%}")
        assert consistency.endswith(f" of {h['verdict_pairs']} pairs")
        # the alarm of store/health.py: consistency < 50% over at least 10 pairs
        on = h["verdict_pairs"] >= 10 and h["position_consistency"] < 0.5
        assert ("ALARM (< 50%)" in consistency) is on
        alarm = page.page.locator(f'li[data-alarm="position_bias"][data-iteration="{it}"]')
        assert alarm.count() == int(on)
    assert any(
        h["verdict_pairs"] >= 10 and h["position_consistency"] < 0.5 for h in health.values()
    )
    # the battle browser: a row per prompt and iteration with responses; its AB≠BA counts add
    # up to the pairs the health counts as inconsistent; its pair filters to the pair views
    (units,) = mrtui_sql(
        report_log, "SELECT count(DISTINCT (prompt_key, iteration)) AS n FROM responses"
    )
    assert page.shown() == units["n"] == page.rows()
    split = page.page.evaluate(
        "() => JSON.parse(document.getElementById('battle-data').textContent)"
        ".reduce((s, r) => s + r.split, 0)"
    )
    assert split == sum(h["verdict_pairs"] - h["consistent_pairs"] for h in health.values())
    for choice, view in (("actor pair", "actor_pairs"), ("judge pair", "judge_pairs")):
        page.page.select_option("#f-pairs", choice)
        (n,) = mrtui_sql(report_log, f"SELECT count(*) AS n FROM {view}")
        assert page.shown() == n["n"] > 0, choice
    # human labels and the judge's agreement with them
    agreement = mrtui_sql(report_log, "SELECT * FROM judge_human_agreement")
    assert agreement
    for a in agreement:
        sel = f'td[data-iteration="{a["iteration"]}"][data-measure="{a["measure"]}"]'
        assert page.text(sel) == format_measure(a["measure"], a)
    assert any(a["n"] > 0 and a["value"] is not None for a in agreement)
    (labels,) = mrtui_sql(report_log, "SELECT count(*) AS n FROM human_labels")
    assert page.page.locator("table.labels tbody tr").count() == labels["n"]


def test_cost_per_role_is_the_role_costs_view(
    opened: Any, report_page: Path, report_log: Path
) -> None:
    page = opened(report_page)
    costs = mrtui_sql(
        report_log, "SELECT * FROM role_costs WHERE run_id = 'main' AND iteration IS NOT NULL"
    )
    assert {c["role"] for c in costs} >= {"actor", "judge", "meta_judge"}
    for c in costs:
        sel = f'td[data-iteration="{c["iteration"]}"][data-role="{c["role"]}"]'
        cells = page.page.locator(sel).all_text_contents()
        assert cells[1] == c["role"]
        assert cells[2] == str(c["units"])
        tokens = c["completion_tokens"]
        assert cells[4] == ("-" if tokens is None else str(tokens))
        assert cells[5] == f"{c['wall_s']:.1f}"
    for it in {c["iteration"] for c in costs}:
        total = sum(c["wall_s"] for c in costs if c["iteration"] == it)
        sel = f'td[data-iteration="{it}"][data-role="total"][data-col="5"]'
        assert page.text(sel) == f"{total:.1f}"


def test_the_evaluation_and_its_paired_comparison_are_those_of_the_cli(
    opened: Any, eval_report_log: Path, tmp_path: Path
) -> None:
    page = opened(write_report(eval_report_log, tmp_path))
    page.assert_clean()
    rows = mrtui_sql(
        eval_report_log,
        "SELECT * FROM eval_results WHERE suite IN ('ifeval', 'alpaca_eval') "
        "AND metric IN ('prompt_strict', 'win_rate')",
    )
    assert len(rows) == 4
    for r in rows:
        sel = (
            f'table.eval td[data-suite="{r["suite"]}"][data-metric="{r["metric"]}"]'
            f'[data-iteration="{r["iteration"]}"]'
        )
        assert page.text(sel) == format_metric(r)
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "mrtui", "eval", "compare", "--db", str(eval_report_log), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    compared = json.loads(out.stdout)
    assert compared
    for r in compared:
        sel = (
            f'td[data-paired="1-2"][data-suite="{r["suite"]}"][data-metric="{r["metric"]}"]'
            '[data-col="5"]'
        )
        m = r["metric"]
        assert page.text(sel) == f"{signed(r['difference'], m)} [{signed(r['lo'], m)}, " + (
            f"{signed(r['hi'], m)}]"
        )


def test_filters_narrow_the_battle_list(opened: Any, report_page: Path, report_log: Path) -> None:
    page = opened(report_page)
    everything = page.rows()
    assert everything == page.shown() > 0
    page.page.check("#f-split")
    split = page.rows()
    assert 0 < split < everything and page.shown() == split
    page.page.uncheck("#f-split")
    page.page.select_option("#f-iteration", "2")
    (it2,) = mrtui_sql(
        report_log, "SELECT count(DISTINCT prompt_key) AS n FROM responses WHERE iteration = 2"
    )
    assert page.rows() == it2["n"] < everything
    page.page.select_option("#f-iteration", "")
    page.page.fill("#f-search", "SNAKE_case")
    assert page.rows() == 2  # the prompt, in both iterations
    assert all("snake_case" in t for t in page.page.locator("td.preview").all_text_contents())
    page.page.fill("#f-search", "")
    assert page.rows() == everything
    # in a battle, the filter leaves only the pairs whose two orders disagree
    page.page.click("#battle-list tr.battle-row >> nth=0")
    pairs = page.page.locator("#detail .pair").count()
    page.page.check("#f-split")
    marked = page.page.locator("#detail .pair.split").count()
    assert page.page.locator("#detail .pair").count() == marked <= pairs


def test_hostile_text_shows_as_text_and_nothing_runs(
    opened: Any, adversarial_page: Path, adversarial_log: Path
) -> None:
    page = opened(adversarial_page)
    assert page.pwned() is None
    raw = page.page.content()
    assert '<b id="injected"' not in raw and "&lt;b id=" in raw  # escaped wherever it is
    (prompt,) = mrtui_sql(
        adversarial_log,
        "SELECT key, text FROM events WHERE event_type = 'PromptAdded' AND text LIKE '%PWN%'",
    )
    assert ATTACK in prompt["text"]
    page.page.fill("#f-search", "echo this back")
    assert page.rows() == 1
    page.page.click("#battle-list tr.battle-row >> nth=0")
    assert page.text("#detail pre.prompt-text") == prompt["text"]
    responses = mrtui_sql(
        adversarial_log,
        f"SELECT response_key, response FROM responses WHERE prompt_key = '{prompt['key']}'",
    )
    assert responses and all(ATTACK in r["response"] for r in responses)
    for r in responses:
        assert page.text(f'pre.response-text[data-key="{r["response_key"]}"]') == r["response"]
    verdicts = page.page.locator("#detail pre.verdict-text").all_text_contents()
    assert verdicts and any(ATTACK in v for v in verdicts)
    # the other hostile prompt, which is nothing but a closing tag and a script
    page.page.fill("#f-search", "</script>")
    assert page.rows() >= 1
    page.page.click("#battle-list tr.battle-row >> nth=0")
    # nothing became an element, nothing ran, nothing was fetched
    for tag in ("img", "script", "svg", "b", "iframe"):
        assert page.page.locator(f"#detail {tag}").count() == 0, tag
    assert page.page.locator("#injected").count() == 0
    assert page.page.evaluate("() => document.images.length") == 0
    assert page.page.evaluate("() => document.scripts.length") == 2  # data block and ours
    # the label's note and author are rendered by the server: escaped, shown verbatim
    notes = page.page.locator("table.labels td").all_text_contents()
    assert ATTACK in notes
    assert page.pwned() is None
    page.assert_clean()


def test_a_label_shows_beside_what_it_labels(
    opened: Any, report_page: Path, report_log: Path
) -> None:
    page = opened(report_page)
    labels = mrtui_sql(
        report_log,
        "SELECT l.target_key, l.label, l.target, r.prompt_key, l.iteration FROM human_labels l "
        "JOIN responses r USING (response_key) ORDER BY l.seq",
    )
    assert {x["target"] for x in labels} == {"response", "judgement", "verdict"}
    data = page.page.evaluate(
        "() => JSON.parse(document.getElementById('battle-data').textContent)"
    )
    for x in labels:
        # a key in the labels table opens the battle row of its prompt and iteration
        page.page.click(f'td[data-label-key="{x["target_key"]}"]')
        row = data[int(page.page.get_attribute("#battle-list tr.open", "data-row") or -1)]
        assert (row["prompt"], row["iteration"]) == (x["prompt_key"], x["iteration"])
        human = page.page.locator(f'#detail .human[data-for="{x["target_key"]}"]')
        assert human.count() == 1
        assert (human.text_content() or "").startswith(f"human: {x['label']} (ann)")
    page.assert_clean()
