"""The README stays one screen and keeps the set-up commands CI runs; the pages under docs/ link
to files that exist, name every view and command, and their SQL examples run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# Drafts of documentation others are writing; they are merged into the pages into the pages.
DRAFTS = DOCS / "_drafts"

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text outside code blocks and inline code, where a link is a link."""
    text = FENCE.sub("", text)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return INLINE_CODE.sub("", text)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def _code(text: str) -> list[str]:
    """Inline code spans and fenced blocks: where a page names a view, a column or a file."""
    return [*FENCE.findall(text), *INLINE_CODE.findall(FENCE.sub("", text))]


def _documented_text() -> str:
    pages = [*_pages(), *sorted(DRAFTS.glob("*.md"))]
    return "\n".join(p.read_text() for p in pages)


def test_the_readme_fits_on_one_screen() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_keeps_both_setup_commands_where_ci_finds_them() -> None:
    text = README.read_text()
    commands = re.findall(r"^    (python3 -m venv \.venv && .*)$", text, flags=re.M)
    assert len(commands) == 2, commands
    assert commands[0].endswith("&& .venv/bin/mrtui demo")
    assert commands[1].endswith("&& .venv/bin/pytest")
    # .ci/run takes the first line that matches its pattern: it must be the test command
    ci = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r"grep -m1 -E '([^']+)' README\.md", ci)
    assert pattern is not None, "the CI script no longer greps README.md for its command"
    first = next(line for line in text.splitlines() if re.search(pattern.group(1), line))
    assert first == "    " + commands[1]


def test_every_relative_link_points_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for page in _pages():
        for target in LINK.findall(_prose(page.read_text())):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# A title\n\n[ok](p.md#a-title) [bad](nope.md) `[code](x.md)`\n")
    links = LINK.findall(_prose(page.read_text()))
    assert links == ["p.md#a-title", "nope.md"]
    assert _slug("Checking a judge: `mrtui judge check`") == "checking-a-judge-mrtui-judge-check"
    assert "a-title" in _anchors(page)


def test_the_readme_links_every_docs_page() -> None:
    text = README.read_text() + (DOCS / "index.md").read_text()
    missing = [
        p.name
        for p in DOCS.glob("*.md")
        if p.name != "index.md" and f"docs/{p.name}" not in text and f"({p.name})" not in text
    ]
    assert not missing, f"pages neither the README nor docs/index.md link: {missing}"


def test_every_view_and_macro_is_named_in_the_docs() -> None:
    from mrtui.store.db import view_sql

    made = re.compile(r"CREATE\s+OR\s+REPLACE\s+(?:VIEW|MACRO)\s+(\w+)", re.I)
    names = {n for _, sql in view_sql() for n in made.findall(sql)}
    assert {"events_typed", "actor_pairs", "iteration_health"} - names == {"events_typed"}
    code = " ".join(_code(_documented_text()))
    missing = sorted(n for n in names if not re.search(rf"\b{n}\b", code))
    assert not missing, (
        f"views or macros no page documents: {missing}; name them in docs/log.md (or in a "
        "draft under docs/_drafts/ until the lead merges it)"
    )


def test_every_command_is_named_in_the_docs() -> None:
    import typer

    from mrtui.cli.app import _register, app

    _register()
    root = typer.main.get_command(app)
    commands = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        commands += [f"mrtui {name} {s}" for s in subs] if subs else [f"mrtui {name}"]
    assert "mrtui export pairs" in commands and "mrtui status" in commands
    text = _documented_text()
    missing = [c for c in commands if not re.search(re.escape(c) + r"\b", text)]
    assert not missing, (
        f"commands no page documents: {missing}; describe them in docs/ (or in a draft under "
        "docs/_drafts/ until the lead merges it)"
    )


def _sql_examples() -> list[str]:
    text = (DOCS / "log.md").read_text()
    section = text.split("## SQL examples", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def test_the_sql_examples_of_the_log_page_run(tmp_path: Path) -> None:
    from mrtui.store import EventLog, connect

    examples = _sql_examples()
    assert len(examples) >= 5
    db = tmp_path / "log.duckdb"
    shutil.copyfile(ROOT / "tests" / "store" / "fixtures" / "v1_log.duckdb", db)
    EventLog(db).close()  # a writer migrates the old log to the current schema
    with connect(db) as con:
        run = con.execute("SELECT min(run_id) FROM events").fetchall()[0][0]
        for sql in examples:
            con.execute(sql.replace("'demo'", f"'{run}'")).fetchall()
        with pytest.raises(Exception, match="no_such_column"):
            con.execute("SELECT no_such_column FROM iteration_health").fetchall()
