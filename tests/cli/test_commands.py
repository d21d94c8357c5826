"""The read commands (status, sql, export) and error handling, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fakes import FakeBackend

from mrtui.loop.runner import Runner
from mrtui.loop.settings import load_config
from mrtui.loop.stages import ModelIdentity
from mrtui.store import EventLog, NewEvent

from .helpers import mrtui

HOSTILE = "[bold red]boom[/] \x1b[31mred\x1b[0m \x07 {response} Score: 5"


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    prompts = tmp / "p.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"prompt": t}) for t in ["What is 2+2?", "Name a colour.", HOSTILE])
    )
    db = tmp / "log.duckdb"
    with EventLog(db) as ev:
        Runner(
            ev,
            load_config(None, {"prompts": str(prompts), "k": 3, "n": 3, "train": False}),
            backend_factory=lambda s, m: FakeBackend(),
            resolver=lambda m: ModelIdentity(m, "f" * 64),
        ).run()
    return db


def _events(db: Path) -> list[list[object]]:
    out = mrtui("sql", "--db", db, "--json", "SELECT seq, key FROM events ORDER BY seq")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_status_json_reports_progress(log: Path) -> None:
    out = mrtui("status", "--db", log, "--json")
    assert out.returncode == 0, out.stderr
    it = json.loads(out.stdout)["runs"][0]["iterations"][0]
    assert (it["prompts"], it["responses"], it["judgements"]) == (3, 9, 27)
    assert it["responses_planned"] == 9 and it["judgements_planned"] == 27
    assert it["verdicts"] == it["verdicts_planned"] and it["finished"] is True
    table = mrtui("status", "--db", log)
    assert table.returncode == 0 and "judgements" in table.stdout and "27/27" in table.stdout


def test_sql_reads_views_and_prints_json(log: Path) -> None:
    out = mrtui(
        "sql",
        "--db",
        log,
        "--json",
        "SELECT kind, count(*) AS n FROM preference_pairs GROUP BY kind ORDER BY kind",
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows and {r["kind"] for r in rows} <= {"actor", "judge"}


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO events SELECT * FROM events",
        "DELETE FROM events",
        "UPDATE events SET text = 'x'",
        "DROP VIEW responses",
        "CREATE TABLE t AS SELECT 1",
        "ATTACH 'other.duckdb' AS o",
        "COPY events TO 'out.csv'",
        "INSTALL httpfs",
        "LOAD json",
        "SET threads = 1",
        "SELECT 1; DELETE FROM events",
    ],
)
def test_sql_is_read_only(log: Path, statement: str, tmp_path: Path) -> None:
    before = _events(log)
    out = mrtui("sql", "--db", log, statement)
    assert out.returncode == 2
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1
    assert "read-only" in out.stderr
    assert _events(log) == before
    assert not (tmp_path / "out.csv").exists()


def test_sql_cannot_reach_files_through_select(log: Path) -> None:
    out = mrtui("sql", "--db", log, "SELECT * FROM read_csv('/etc/passwd')")
    assert out.returncode == 1 and "Error:" in out.stderr and "root:" not in out.stdout


def test_model_text_is_never_rendered_as_markup(log: Path) -> None:
    out = mrtui("sql", "--db", log, "SELECT prompt FROM prompts WHERE prompt LIKE '%boom%'")
    assert out.returncode == 0
    assert "[bold red]boom[/]" in out.stdout  # shown literally
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert "\\x1b[31mred" in out.stdout  # escapes made visible


def test_export_pairs_jsonl_and_parquet(log: Path, tmp_path: Path) -> None:
    out = mrtui("export", "pairs", "--db", log, "--out", tmp_path / "pairs.jsonl")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert (
        rows
        and {
            "prompt",
            "chosen",
            "rejected",
            "kind",
            "pair_key",
            "model_sha256",
            "chosen_key",
            "rejected_key",
            "iteration",
            "run_id",
        }
        <= rows[0].keys()
    )
    assert f"wrote {len(rows)} pairs" in out.stdout
    out = mrtui(
        "export",
        "pairs",
        "--db",
        log,
        "--out",
        tmp_path / "pairs.parquet",
        "--kind",
        "actor",
        "--conversational",
    )
    assert out.returncode == 0, out.stderr
    table = pq.read_table(tmp_path / "pairs.parquet").to_pylist()
    assert table and all(r["kind"] == "actor" for r in table)
    assert table[0]["prompt"][0]["role"] == "user"
    assert table[0]["chosen"][0]["role"] == "assistant"


def test_export_can_rederive_with_another_rho(log: Path, tmp_path: Path) -> None:
    before = _events(log)
    out = mrtui(
        "export",
        "pairs",
        "--db",
        log,
        "--out",
        tmp_path / "p.jsonl",
        "--rho",
        "0.4",
        "--kind",
        "actor",
    )
    assert out.returncode == 0, out.stderr
    assert _events(log) == before


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["status", "--db", "missing.duckdb"], 1, "mrtui run --db"),
        (
            ["run", "--db", "x.duckdb", "--prompts", "nope.jsonl", "--model", "{tiny}"],
            2,
            "not found",
        ),
        (
            ["run", "--db", "x.duckdb", "--prompts", "{bad_prompts}", "--model", "{tiny}"],
            2,
            "line 2: not valid JSON",
        ),
        (
            ["run", "--db", "x.duckdb", "--prompts", "{prompts}", "--model", "missing.gguf"],
            1,
            "missing.gguf",
        ),
        (["run", "--db", "x.duckdb", "--set", "bogus=1"], 2, "--set 'bogus=1'"),
        (
            ["run", "--db", "x.duckdb", "--rho", "1.5", "--prompts", "{prompts}"],
            2,
            "rho must be in [0, 1)",
        ),
        (["export", "pairs", "--db", "{log}", "--out", "x.csv"], 2, ".jsonl or .parquet"),
    ],
)
def test_bad_input_gets_one_line_that_names_the_fix(
    log: Path,
    tmp_path: Path,
    args: list[str],
    code: int,
    needle: str,
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "ok"}\n')
    fake_gguf = tmp_path / "tiny.gguf"
    fake_gguf.write_bytes(b"GGUF" + b"\0" * 64)
    subs = {
        "{bad_prompts}": str(bad),
        "{prompts}": str(good),
        "{log}": str(log),
        "{tiny}": str(fake_gguf),
    }
    out = mrtui(*[subs.get(a, a) for a in args])
    assert out.returncode == code, (out.stdout, out.stderr)
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1, out.stderr
    assert needle in out.stderr
    assert "Traceback" not in out.stderr


def test_a_second_writer_is_refused_with_the_holder(log: Path, tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "ok"}\n')
    with EventLog(db) as ev:
        ev.append([NewEvent("PromptAdded", "main", {}, key="x", text="x")])
        out = mrtui("run", "--db", db, "--prompts", good)
    assert out.returncode == 1
    assert "being written by another mrtui process" in out.stderr
    assert out.stderr.count("\n") == 1
