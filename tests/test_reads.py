"""Code outside store/ reads the log through its views, never the raw event payloads: a view
is the one place a payload field gets its name, type and meaning (docs/log.md lists them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# store/ and backends/ are top-level folders (mrtui.store, mrtui.backends): everything under
# mrtui/ is a front end or the loop, and reads through views.
FRONT = ROOT / "mrtui"
# Reads that may stay on raw payloads, each with the reason (none today).
ALLOWED: dict[str, str] = {}

_SQL = re.compile(r"\b(SELECT|FROM|WHERE|JOIN|ILIKE|ORDER BY)\b")
_PAYLOAD = re.compile(r"\bpayload\b")
_EXTRACT = re.compile(r"\bpayload\s*->")


def reads_payload(text: str) -> bool:
    """Whether a string is SQL that touches a payload: a JSON extraction from one, or a
    query naming the column."""
    return bool(_EXTRACT.search(text)) or bool(_SQL.search(text) and _PAYLOAD.search(text))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose, not SQL)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def payload_reads(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each string in ``path`` that reads a payload in SQL."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and reads_payload(node.value)
    ]


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("SELECT payload FROM events WHERE key = ?", True),
        ("SELECT text, payload->>'$.source_id' FROM events", True),
        ("(p.text ILIKE $q OR p.payload->>'$.source_id' ILIKE $q)", True),
        ("AND f.payload ->> '$.attempt' = s.payload->>'$.attempt' ", True),
        ("SELECT prompt, source_id FROM prompts WHERE prompt_key = ?", False),
        ("the payload of the completed unit", False),
        ("SELECT payload_bytes FROM stats", False),
    ],
)
def test_the_check_tells_payload_sql_from_the_rest(text: str, reads: bool) -> None:
    assert reads_payload(text) is reads


def test_the_check_finds_a_payload_read_in_a_module(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        '"""Reads the payload."""\n'
        "def f(con):\n"
        '    """Not SQL: the payload."""\n'
        "    return con.execute(\n"
        '        "SELECT payload FROM events "\n'
        "        \"WHERE event_type = 'RunConfigured'\"\n"
        "    )\n"
        "def g(con, t):\n"
        "    return con.execute(f\"SELECT payload->>'$.x' FROM {t}\")\n",
        encoding="utf-8",
    )
    assert [line for line, _ in payload_reads(src)] == [5, 9]


def test_no_code_outside_store_reads_event_payloads() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()[:80]!r}"
        for path in sorted(FRONT.rglob("*.py"))
        if str(path.relative_to(ROOT)) not in ALLOWED
        for line, text in payload_reads(path)
    ]
    assert not found, (
        "SQL outside store/ reads raw event payloads; read a view instead (add one in "
        "store/views/, documented in docs/log.md):\n" + "\n".join(found)
    )
