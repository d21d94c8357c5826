"""Code outside store/ reads the log through its views, never the raw event payloads: a view
is the one place a payload field gets its name, type and meaning (docs/log.md lists them)."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

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


# --- The reads moved onto views behave as before (fake backend, real DuckDB) ---------------


def _runner(log: Any, **cli: Any) -> Any:
    from fakes import FakeBackend

    from mrtui.loop.runner import Runner
    from mrtui.loop.settings import load_config
    from mrtui.loop.stages import ModelIdentity

    backend = FakeBackend()
    return Runner(
        log,
        load_config(None, {"train": False} | cli),
        backend_factory=lambda s, m: backend,
        resolver=lambda m: ModelIdentity(m, "f" * 64),
    )


def _prompt_file(tmp_path: Path, n: int) -> str:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": f"Question {i}?", "id": i}) for i in range(n)))
    return str(p)


def _checkpoint(log: Any, run_id: str, sha: str) -> None:
    from mrtui.store import content_key
    from mrtui.store import events as ev

    record = ev.CheckpointCreated(
        for_iteration=2,
        model_id=f"m-{sha[:4]}",
        model_sha256=sha * 64,
        gguf_path=None,
        hf_dir=f"ckpt-{sha}",
        trained_from_sha256="f" * 64,
        training_key=None,
        reason="test",
        model_format="hf",
    )
    log.append([record.event(run_id, iteration=1, key=content_key("ckpt", run_id, sha))])


def test_runner_reads_settings_checkpoints_and_draws_through_views(tmp_path: Path) -> None:
    from mrtui.loop import pool
    from mrtui.loop.progress import ignore
    from mrtui.loop.settings import ConfigError
    from mrtui.store import EventLog, connect

    db = tmp_path / "log.duckdb"
    cli = {"prompts": _prompt_file(tmp_path, 6), "k": 2, "n": 2, "prompts_per_iteration": 3}
    with EventLog(db) as log:
        _runner(log, run_id="r", **cli).run()
    with connect(db) as con:
        (drawn,) = con.execute("SELECT prompt_keys FROM prompt_draws WHERE run_id = 'r'").fetchone()
        prompts = con.execute(
            "SELECT prompt_key, prompt FROM prompts WHERE run_id = 'r' ORDER BY prompt_index"
        ).fetchall()
        assert con.execute("SELECT count(*) FROM runs WHERE run_id = 'r'").fetchone() == (1,)
    assert len(drawn) == 3 and len(prompts) == 6
    with EventLog(db) as log:
        runner = _runner(log, run_id="r", **cli)
        s = runner.settings.for_iteration(1)
        # A resume takes the logged draw: the same keys in the same order.
        assert [k for k, _ in pool.draw(log, "r", 1, s, prompts, ignore)] == drawn
        # A started iteration refuses other generation settings, and another model.
        hotter = _runner(log, run_id="r", actor_temperature=0.123, **cli)
        with pytest.raises(
            ConfigError, match=r"was started with actor_temperature=0.8 \(now 0.123\)"
        ):
            hotter.start_iteration(1, hotter.settings.for_iteration(1), runner.model())
        other = replace(runner.model(), sha256="0" * 64)
        with pytest.raises(ConfigError, match="a different model"):
            runner.start_iteration(1, s, other)
        runner.start_iteration(1, s, runner.model())  # the same: nothing to refuse
        # Iteration 2 runs on the latest checkpoint made for it.
        with pytest.raises(ConfigError, match="no trained model yet"):
            runner.checkpoint_for(2)
        _checkpoint(log, "r", "a")
        _checkpoint(log, "r", "b")
        assert runner.checkpoint_for(2).sha256 == "b" * 64
