"""The real thing: `mrtui run` on real llama.cpp, then the read commands on its log.

The demo on the packaged Qwen2.5-Coder 0.5B (the README's main job, one prompt per
iteration), and kill -9 / resume cycles on the tiny random Qwen2 model (fast, same code
path)."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from mrtui.backends.base import FinalLine
from mrtui.backends.constrain import final_line_regex
from mrtui.store import connect

from .helpers import mrtui

KILLPOINT = Path(__file__).resolve().parents[1] / "killpoint.py"


def _prompts(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"prompt": t}) for t in texts) + "\n")
    return path


def test_the_demo_on_the_packaged_qwen(qwen_gguf: Path, tmp_path: Path) -> None:
    """The README's main job (`mrtui demo`), cut to one prompt per iteration: two iterations
    of the packaged 0.5B with structured judging and DPO between them; then provenance, the
    read commands, and a rerun that finds nothing left to do. (One run of the packaged model
    serves every check of it: it is the suite's most expensive test.)"""
    db = tmp_path / "runs" / "demo.duckdb"
    args = ["demo", "--db", db, "--prompts", "1"]
    out = mrtui(*args, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"log at {db}" in out.stderr and "Explore:" in out.stdout
    assert "iter 2 judge" in out.stderr  # the progress bars were drawn
    _assert_structured(db)
    with connect(db) as con:
        counts = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
        prov = con.execute(
            "SELECT model_sha256, backend, backend_version, template_sha256, "
            "seed, prompt_tokens, completion_tokens, prompt_tokens_evaluated, "
            "wall_s, payload FROM judgements WHERE iteration = 1"
        ).fetchall()
        evaluated = con.execute(
            "SELECT judge_index, prompt_tokens, prompt_tokens_evaluated "
            "FROM judgements ORDER BY response_key, judge_index"
        ).fetchall()
    # K = 4 responses, N = 3 judgements each, per iteration; trained twice
    assert counts["ResponseGenerated"] == 8 and counts["JudgementRecorded"] == 24
    assert counts["TrainingFinished"] == 2 and counts["CheckpointCreated"] == 2
    for sha, backend, version, tsha, seed, pt, ct, pte, wall, payload in prov:
        assert sha == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
        assert backend == "llama.cpp" and version and len(tsha) == 64
        assert seed is not None and pt > 100 and ct > 0 and pte is not None and wall > 0
        assert json.loads(payload)["sampling"]["temperature"] == 0.8
    # A later judgement of a response re-evaluates (almost) nothing of the shared prompt.
    assert all(pte <= 2 for j, _, pte in evaluated if j >= 1)

    status = json.loads(mrtui("status", "--db", db, "--json").stdout)
    its = status["runs"][0]["iterations"]
    assert [(i["responses"], i["judgements"], i["finished"]) for i in its] == [(4, 12, True)] * 2
    sql = mrtui("sql", "--db", db, "--json", "SELECT * FROM preference_pairs")
    assert sql.returncode == 0 and json.loads(sql.stdout), sql.stderr
    export = mrtui("export", "pairs", "--db", db, "--out", tmp_path / "pairs.jsonl")
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "pairs.jsonl").read_text().strip()
    again = mrtui(*args)
    assert again.returncode == 0 and "loading" not in again.stderr  # nothing left to do
    with connect(db) as con:
        (trained,) = con.execute("SELECT count(*) FROM training_runs").fetchone()
    assert trained == 2


def _assert_structured(db: Path, min_words: int = 3) -> None:
    """Every judgement and verdict ran constrained; those that ended by themselves have the
    exact format; every judgement has a score line; no judge pair side lacks a rationale."""
    with connect(db) as con:
        rows = con.execute(
            "SELECT judgement, finish_reason, score, payload FROM judgements "
            "UNION ALL SELECT verdict, finish_reason, 0, payload FROM meta_verdicts"
        ).fetchall()
        sides = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE c.rationale_words >= ? AND c.valid "
            "AND r.rationale_words >= ? AND r.valid) FROM judge_pair_candidates p "
            "JOIN judgements c ON c.judgement_key = p.chosen_key "
            "JOIN judgements r ON r.judgement_key = p.rejected_key",
            [min_words, min_words],
        ).fetchall()[0]
    assert rows
    for text, finish, score, payload in rows:
        d = json.loads(payload)["structure"]
        spec = FinalLine(**{**d, "choices": tuple(d["choices"])})
        if finish == "stop":
            assert re.fullmatch(final_line_regex(spec), text), text
        assert score is not None, text  # structured or rescued: a score line always
    assert sides[0] == sides[1]


def _count(db: Path, sql: str) -> int:
    for _ in range(200):
        try:
            with connect(db, timeout=5) as con:
                return int(con.execute(sql).fetchall()[0][0])
        except Exception:  # the file may not exist yet
            time.sleep(0.05)
    raise AssertionError("log never became readable")


@pytest.mark.parametrize("scoring", ["sampled", "expected"])
def test_kill_9_mid_run_then_resume(tiny_gguf: Path, tmp_path: Path, scoring: str) -> None:
    """Killed mid-judging, under either scoring (expected: values from choice probabilities,
    read by follow-up requests), the same command completes the log as a clean run would."""
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
        "--set",
        f"judge_scoring={scoring}",
        "--set",
        f"meta_scoring={scoring}",
    ]
    # Sampled judgements are logged one by one: kill right after the fifth is on disk.
    # Expected ones are logged once their probabilities are read, after all the stage's
    # answers: kill right after the judge stage started.
    started = "SELECT count(*) FROM events WHERE event_type = 'StageStarted' AND iteration = 1 "
    point = (
        ["JudgementRecorded", "5"] if scoring == "sampled"
        else ["StageStarted", "1", "stage=judge"]
    )  # fmt: skip
    killed = subprocess.run(
        [sys.executable, str(KILLPOINT), *point, "--", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    partial = _count(db, "SELECT count(*) FROM events WHERE key IS NOT NULL")
    judged = _count(db, "SELECT count(*) FROM judgements")
    assert (5 <= judged < 54) if scoring == "sampled" else judged == 0
    assert (
        _count(
            db,
            started.replace("StageStarted", "StageFinished") + "AND payload->>'$.stage' = 'judge'",
        )
        == 0
    )  # fmt: skip  (killed mid-judging)

    time.sleep(2)  # idle between the kill and the resume: no role's cost
    out = mrtui(*args)  # the same command continues where the killed one stopped
    assert out.returncode == 0, out.stderr[-2000:]
    assert _count(db, "SELECT count(*) FROM events WHERE key IS NOT NULL") > partial
    _check_complete_log(db, prompts=6, k=3, n=3)
    # role_costs: the killed judge span ends at its last event; the wait is idle, in no role
    assert _count(db, "SELECT count(*) FROM cost_spans WHERE role = 'judge' AND NOT closed") == 1
    assert _count(db, "SELECT count(*) FROM cost_spans WHERE role = 'idle' AND wall_s >= 2") == 1
    assert _count(db, "SELECT count(*) FROM events WHERE event_type = 'SessionStarted'") == 2
    if scoring == "expected":
        assert _count(db, "SELECT count(*) FROM judgements WHERE scoring <> 'expected'") == 0
        assert _count(db, "SELECT count(*) FROM meta_verdicts WHERE p_first IS NULL") == 0


def _check_complete_log(db: Path, *, prompts: int, k: int, n: int) -> None:
    """A finished one-iteration run's log (here, after a kill -9 and a resume): a healthy DuckDB
    file whose ``seq`` runs 1..max without a gap, which holds every unit a clean run plans
    (``prompts`` × ``k`` responses, ``n`` judgements each, every ordered pair of the valid
    judgements of each meta-judged response) exactly once, and nothing else."""
    # A plain DuckDB connection, without mrtui: the file opens and every row of every table
    # reads back (DuckDB checks each block's checksum as it reads it). Errors are not caught.
    raw = duckdb.connect(str(db), read_only=True)
    try:
        tables = [
            t
            for (t,) in raw.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()
        ]
        assert "events" in tables
        for table in tables:
            raw.execute(f'SELECT * FROM "{table}"').fetchall()
        events = raw.execute("SELECT seq, event_type, key FROM events ORDER BY rowid").fetchall()
    finally:
        raw.close()

    # seq: dense from 1 and strictly increasing in the order the rows were written.
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))

    # No unit key twice, and exactly the keyed events a clean run writes.
    keys = Counter(key for _, _, key in events if key is not None)
    assert [key for key, times in keys.items() if times > 1] == []
    keyed = Counter(event_type for _, event_type, key in events if key is not None)

    with connect(db) as con:
        prompt_keys = {pk for (pk,) in con.execute("SELECT prompt_key FROM prompts").fetchall()}
        samples = con.execute(
            "SELECT prompt_key, list(sample_index ORDER BY sample_index) FROM responses "
            "GROUP BY prompt_key"
        ).fetchall()
        response_keys = {
            rk for (rk,) in con.execute("SELECT response_key FROM responses").fetchall()
        }
        judged = con.execute(
            "SELECT response_key, list(judge_index ORDER BY judge_index) FROM judgements "
            "GROUP BY response_key"
        ).fetchall()
        targets = con.execute(
            "SELECT t.response_key, list(j.judgement_key ORDER BY j.judgement_key) "
            "FILTER (WHERE j.valid) FROM meta_targets t "
            "JOIN judgements j ON j.response_key = t.response_key GROUP BY t.response_key"
        ).fetchall()
        verdicts = con.execute(
            "SELECT response_key, first_key, second_key FROM meta_verdicts"
        ).fetchall()
        planned = dict(
            con.execute(
                "SELECT payload->>'$.stage', (payload->>'$.planned')::INTEGER FROM events "
                "WHERE event_type = 'StageFinished' "
                "QUALIFY row_number() OVER (PARTITION BY payload->>'$.stage' ORDER BY seq DESC) = 1"
            ).fetchall()
        )

    assert len(prompt_keys) == prompts
    # K responses per prompt, sample indices 0..K-1; N judgements per response, 0..N-1.
    assert {pk: idx for pk, idx in samples} == {pk: list(range(k)) for pk in prompt_keys}
    assert {rk: idx for rk, idx in judged} == {rk: list(range(n)) for rk in response_keys}
    # Meta-judging: each ordered pair of a target's valid judgements, nothing else.
    want_verdicts = Counter(
        (rk, a, b) for rk, valid in targets for a, b in itertools.permutations(valid or [], 2)
    )
    assert Counter(verdicts) == want_verdicts
    responses, judgements = prompts * k, prompts * k * n
    assert planned == {"actor": responses, "judge": judgements, "meta": len(verdicts)}
    assert keyed == Counter(
        {
            "RunConfigured": 1,
            "PromptAdded": prompts,
            "TemplateRegistered": 3,  # actor, judge, meta-judge
            "IterationStarted": 1,
            "ResponseGenerated": responses,
            "JudgementRecorded": judgements,
            "MetaVerdictRecorded": len(verdicts),
            "IterationFinished": 1,
        }
    )  # (a Counter: a type with no event, e.g. no verdict at all, counts 0)


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
