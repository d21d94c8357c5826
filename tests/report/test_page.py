"""The report without a browser: the embedded JSON cannot end its block, the page names no
outside resource and locks itself down with a CSP, every text is escaped, and the command's
options and errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mrtui.htmlreport.render import embed_json

from .conftest import ATTACK, write_report


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def test_embedded_json_cannot_close_its_script_or_open_markup() -> None:
    value = {"t": ATTACK + "</SCRIPT><!--", "n": float("nan"), "k": [1, None]}
    text = embed_json(value)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    back = json.loads(text)
    assert back == {"t": ATTACK + "</SCRIPT><!--", "n": None, "k": [1, None]}


def test_the_page_is_self_contained_and_escaped(adversarial_log: Path, tmp_path: Path) -> None:
    page = write_report(adversarial_log, tmp_path / "out")
    html = page.read_text(encoding="utf-8")
    parser = Tags()
    parser.feed(html)
    names = [t for t, _ in parser.tags]
    # exactly two scripts (the data block and the page's own), no element from model text
    assert names.count("script") == 2
    for tag in ("img", "iframe", "link", "object", "embed", "b"):
        assert tag not in names, tag
    assert "injected" not in {a.get("id") for _, a in parser.tags}
    # nothing outside the page: no src, no href but anchors; a CSP that forbids the network
    for tag, attrs in parser.tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    csp = next(
        a["content"] for t, a in parser.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert csp is not None and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", csp)
    # the data block holds the hostile text intact, the label note shows it escaped
    data = json.loads(parser.scripts[0])
    assert any(ATTACK in r["text"] for r in data)
    assert escape(ATTACK) in html


def test_a_log_without_labels_or_evaluation_says_so(report_log: Path, tmp_path: Path) -> None:
    from tui.conftest import build_log, write_prompts

    db = tmp_path / "plain.duckdb"
    build_log(db, write_prompts(tmp_path / "p.jsonl"), iterations=1, defaults={"train": False})
    html = write_report(db, tmp_path / "out").read_text()
    assert "no labels in this run" in html
    assert "No evaluation results in this run" in html
    # the labelled log, by contrast, lists its labels
    assert 'class="labels"' in write_report(report_log, tmp_path / "out2").read_text()


def _mrtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mrtui", *args], capture_output=True, text=True, timeout=120
    )


def test_the_command_writes_one_page_and_limits_prompts_and_runs(
    report_log: Path, tmp_path: Path
) -> None:
    out = tmp_path / "a" / "b"
    done = _mrtui("report", "--db", str(report_log), "--html", str(out), "--max-prompts", "2")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]
    assert re.match(r"wrote .*index\.html \(\d+ KiB, 4 battle rows\)", done.stdout)
    assert "from 2 of 6 prompts" in (out / "index.html").read_text()
    done = _mrtui("report", "--db", str(report_log), "--html", str(out), "--run", "main")
    assert done.returncode == 0 and 'id="run-main"' in (out / "index.html").read_text()
    done = _mrtui("report", "--db", str(report_log), "--html", str(tmp_path), "--run", "nope")
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: run 'nope' is not in {report_log} (runs: main); leave out --run for every run\n"
    )
    assert not (tmp_path / "index.html").exists()


def test_a_missing_log_is_an_error_that_says_how_to_make_one(tmp_path: Path) -> None:
    done = _mrtui("report", "--db", str(tmp_path / "none.duckdb"), "--html", str(tmp_path))
    assert done.returncode != 0
    assert "no event log at" in done.stderr
    assert not (tmp_path / "index.html").exists()


@pytest.mark.parametrize("name", ["report.css", "report.js"])
def test_the_assets_are_package_data(name: str) -> None:
    from importlib import resources

    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"mrtui.htmlreport" = ["assets/*.css", "assets/*.js"]' in pyproject
    assert resources.files("mrtui.htmlreport").joinpath("assets", name).is_file()
