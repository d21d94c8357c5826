"""The real thing: `mrtui run` on real llama.cpp, then the read commands on its log.

One run on the packaged Qwen2.5-Coder 0.5B (2 prompts, K=2, N=2), and a kill -9 / resume
cycle on the tiny random Qwen2 model (fast, same code path)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from mrtui.store import connect

from .helpers import mrtui


def _prompts(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"prompt": t}) for t in texts) + "\n")
    return path


def test_one_iteration_on_the_packaged_qwen(qwen_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "runs" / "demo.duckdb"
    prompts = _prompts(
        tmp_path / "p.jsonl",
        ["What is the capital of France?", "Write a Python one-liner to reverse a string."],
    )
    args = [
        "run",
        "--db",
        db,
        "--model",
        "qwen2.5-coder-0.5b-instruct",
        "--prompts",
        prompts,
        "--k",
        "2",
        "--n",
        "2",
        "--set",
        "actor_max_tokens=96",
        "--set",
        "judge_max_tokens=160",
        "--set",
        "meta_max_tokens=160",
        "--set",
        "train=false",
    ]
    out = mrtui(*args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "iter 1 judge" in out.stderr  # the progress bars were drawn
    with connect(db) as con:
        counts = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
        prov = con.execute(
            "SELECT model_sha256, backend, backend_version, template_sha256, "
            "seed, prompt_tokens, completion_tokens, prompt_tokens_evaluated, "
            "wall_s, payload FROM judgements"
        ).fetchall()
        evaluated = con.execute(
            "SELECT judge_index, prompt_tokens, prompt_tokens_evaluated "
            "FROM judgements ORDER BY response_key, judge_index"
        ).fetchall()
    assert counts["ResponseGenerated"] == 4 and counts["JudgementRecorded"] == 8
    for sha, backend, version, tsha, seed, pt, ct, pte, wall, payload in prov:
        assert sha == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
        assert backend == "llama.cpp" and version and len(tsha) == 64
        assert seed is not None and pt > 100 and ct > 0 and pte is not None and wall > 0
        assert json.loads(payload)["sampling"]["temperature"] == 0.8
    # The second judgement of a response re-evaluates (almost) nothing of the shared prompt.
    assert all(pte <= 2 for j, _, pte in evaluated if j == 1)

    status = json.loads(mrtui("status", "--db", db, "--json").stdout)
    it = status["runs"][0]["iterations"][0]
    assert it["responses"] == 4 and it["judgements"] == 8 and it["finished"]
    sql = mrtui("sql", "--db", db, "--json", "SELECT * FROM actor_pairs")
    assert sql.returncode == 0, sql.stderr
    export = mrtui("export", "pairs", "--db", db, "--out", tmp_path / "pairs.jsonl")
    assert export.returncode == 0, export.stderr
    again = mrtui(*args)
    assert again.returncode == 0 and "loading" not in again.stderr  # nothing left to do


def _count(db: Path, sql: str) -> int:
    for _ in range(200):
        try:
            with connect(db, timeout=5) as con:
                return int(con.execute(sql).fetchall()[0][0])
        except Exception:  # the file may not exist yet
            time.sleep(0.05)
    raise AssertionError("log never became readable")


def test_kill_9_mid_run_then_resume(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "kill.duckdb"
    prompts = _prompts(tmp_path / "p.jsonl", [f"Tell me fact number {i}." for i in range(6)])
    args = [
        "run",
        "--db",
        str(db),
        "--model",
        str(tiny_gguf),
        "--prompts",
        str(prompts),
        "--k",
        "3",
        "--n",
        "3",
        "--set",
        "actor_max_tokens=24",
        "--set",
        "judge_max_tokens=24",
        "--set",
        "meta_max_tokens=24",
        "--set",
        "train=false",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrtui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and _count(db, "SELECT count(*) FROM judgements") >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _count(db, "SELECT count(*) FROM events WHERE key IS NOT NULL")
    assert 0 < _count(db, "SELECT count(*) FROM judgements") < 54

    out = mrtui(*args)  # the same command continues where the killed one stopped
    assert out.returncode == 0, out.stderr[-2000:]
    assert _count(db, "SELECT count(*) FROM responses") == 18
    assert _count(db, "SELECT count(*) FROM judgements") == 54
    assert (
        _count(db, "SELECT count(*) - count(DISTINCT key) FROM events WHERE key IS NOT NULL") == 0
    )
    assert _count(db, "SELECT count(*) FROM events WHERE key IS NOT NULL") > partial
    assert _count(db, "SELECT count(*) FROM events WHERE event_type = 'IterationFinished'") == 1
    raw = duckdb.connect(str(db), read_only=True)  # still a healthy plain DuckDB file
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() is not None
    except duckdb.Error:
        pass
    finally:
        raw.close()


def test_readers_can_watch_a_run_while_it_writes(tiny_gguf: Path, tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    prompts = _prompts(tmp_path / "p.jsonl", [f"Question {i}?" for i in range(3)])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mrtui",
            "run",
            "--db",
            str(db),
            "--model",
            str(tiny_gguf),
            "--prompts",
            str(prompts),
            "--k",
            "2",
            "--n",
            "2",
            "--set",
            "actor_max_tokens=32",
            "--set",
            "judge_max_tokens=32",
            "--set",
            "meta_max_tokens=32",
            "--set",
            "train=false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = []
    try:
        while proc.poll() is None:
            if db.exists():
                out = mrtui("status", "--db", db, "--json", timeout=60)
                if out.returncode == 0:
                    seen.append(json.loads(out.stdout)["events"])
                else:
                    assert "Traceback" not in out.stderr, out.stderr
            time.sleep(0.5)
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    assert len(seen) >= 2 and seen == sorted(seen)
