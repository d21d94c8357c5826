"""A human label made in `mrtui tui` in a real terminal (tmux, as ``test_tmux_smoke``) lands in
the log's views and moves the judge-human agreement.

The log already holds two labels of one prompt's responses, made elsewhere and ordered as the
judge orders them (pairwise accuracy 1 of 1). In the TUI: ``p`` → the prompt → ``Enter`` → down
to a third response → ``l`` → ``0`` (the person thinks it is the worst) → ``q``. Then
``mrtui sql --json`` must show the label in ``human_labels`` (by the author of
``$MRTUI_AUTHOR``) and the agreement computed over three responses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mrtui.store import connect
from mrtui.store.labels import Label, record_labels

from .conftest import RUN_ID
from .test_tmux_smoke import MRTUI, POLL_S, Pane, _table_rows

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

AUTHOR = "tmux-tester"


def sql(db: Path, query: str) -> list[dict[str, Any]]:
    """``mrtui sql --json`` over ``db``: what a user would see."""
    out = subprocess.run(
        [str(MRTUI), "sql", "--db", str(db), "--json", query],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def pick(db: Path) -> tuple[int, int, list[tuple[str, float]]]:
    """A prompt whose last iteration has four responses with four different mean judge
    scores: its row in the prompt list, that iteration, and (response key, mean score) in the
    order the prompt detail lists them (sample index)."""
    with connect(db) as con:
        prompts = [
            k
            for (k,) in con.execute(
                "SELECT key FROM events WHERE event_type = 'PromptAdded' AND run_id = ? "
                "ORDER BY (payload->>'$.index')::INTEGER, seq",
                [RUN_ID],
            ).fetchall()
        ]
        last = con.execute(
            "SELECT max(iteration) FROM responses WHERE run_id = ?", [RUN_ID]
        ).fetchall()[0][0]
        for row, key in enumerate(prompts):
            scores = con.execute(
                "SELECT r.response_key, s.mean_score FROM responses r JOIN response_scores s "
                "USING (response_key) WHERE r.run_id = ? AND r.prompt_key = ? "
                "AND r.iteration = ? ORDER BY r.sample_index, r.response_key",
                [RUN_ID, key, last],
            ).fetchall()
            means = [m for _, m in scores]
            if len(scores) == 4 and None not in means and len(set(means)) == 4:
                return row, last, scores
    pytest.fail("the log holds no prompt with four differently scored responses", pytrace=False)


def test_label_in_tmux_moves_the_agreement(tui_log_copy: Path, tmp_path: Path) -> None:
    db = tui_log_copy
    row, iteration, scores = pick(db)
    by_score = sorted(range(len(scores)), key=lambda i: scores[i][1])
    low, high = by_score[0], by_score[-1]
    target = by_score[1]  # labelled 0 in the TUI: below the judge's worst, a pair disagrees
    record_labels(
        db, [Label(scores[low][0], 1, "elsewhere"), Label(scores[high][0], 5, "elsewhere")]
    )
    measure = (
        "SELECT n, value, lo, hi FROM judge_human_agreement WHERE run_id = 'main' "
        f"AND iteration = {iteration} AND measure = 'judge_pairwise_accuracy'"
    )
    before = sql(db, measure)
    assert [(r["n"], r["value"]) for r in before] == [(1, 1.0)]

    pane = Pane(tmp_path)
    t0 = time.monotonic()
    try:
        pane.start(
            ["env", f"MRTUI_AUTHOR={AUTHOR}", str(MRTUI), "tui", "--db", str(db)],
        )
        pane.wait_for(
            lambda s: "human labels, iteration" in s and "pairwise accuracy 100%" in s,
            30,
            "the overview with the agreement of the labels made elsewhere",
        )
        pane.send("p")
        pane.wait_for(
            lambda s: (
                "search prompt text or id" in s
                and len(rows := _table_rows(s)) > row
                and all(re.search(r"\s[A·][J·]\s*$", r) for r in rows)
            ),
            15,
            "the prompt list with its pair column",
        )
        for _ in range(row):
            pane.send("Down")
        time.sleep(0.5)
        pane.send("Enter")
        pane.wait_for(
            lambda s: f"prompt #{row} " in s and f"iteration {iteration} of" in s,
            10,
            "the prompt detail",
        )
        for _ in range(target):
            pane.send("Down")
        time.sleep(0.3)
        pane.send("l")
        screen = pane.wait_for(lambda s: "score it 0–5" in s, 10, "the label modal")
        assert f"response {target} · iteration {iteration}" in screen
        pane.send("0")
        pane.wait_for(
            lambda s: f"response: human label: 0 ({AUTHOR})" in s,
            15,
            "the new label on the prompt detail",
        )
        pane.send("q")
        deadline = time.monotonic() + 10
        status = pane.exit_status()
        while status is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
            status = pane.exit_status()
        assert status == "0", f"exit status {status}:\n{pane.capture(history=True)}"
    finally:
        pane.close()

    labelled = sql(
        db,
        "SELECT target, target_key, label, human_score, author, revisions FROM human_labels "
        f"WHERE run_id = 'main' AND author = '{AUTHOR}'",
    )
    assert labelled == [
        {
            "target": "response",
            "target_key": scores[target][0],
            "label": "0",
            "human_score": 0.0,
            "author": AUTHOR,
            "revisions": 1,
        }
    ]
    after = sql(db, measure)
    # three labelled responses, three pairs; the new one (judge: above the lowest, human: below
    # it) disagrees with the judge against the lowest and agrees against the highest
    assert [(r["n"], round(r["value"], 4)) for r in after] == [(3, round(2 / 3, 4))]
    assert after != before
    print(f"tmux label walk: {time.monotonic() - t0:.1f} s")
