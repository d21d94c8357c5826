"""What the report shows, read from the log with the functions the CLI and the TUI use.

- health, alarms and evaluation results: :func:`mrtui.loop.report.status` (``mrtui status``);
- the overview plots: per-iteration :class:`mrtui.store.health.Health` and the DPO losses, read
  by the TUI's :class:`mrtui.tui.source.LogSource` (no Textual there);
- paired comparisons: :func:`mrtui.evaluation.compare.compare`, each evaluated iteration
  against the one before it (what the TUI's Evaluation screen shows);
- the battle browser: :meth:`LogSource.focus` per prompt (the TUI's prompt and battle screens),
  with the AB≠BA test of :func:`mrtui.store.health.orders_agree`;
- human labels: the ``human_labels`` view, and the judges against them as ``mrtui status``
  reads them (:func:`mrtui.store.labels.agreement`, the ``judge_human_agreement`` view);
- cost per role: each status row's ``costs`` (the ``role_costs`` view).

Nothing here renders; :mod:`.render` turns the result into the page.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrtui.store.health import Health, orders_agree

from . import MAX_PROMPTS


@dataclass
class RunData:
    run_id: str
    model: str | None
    backend: str | None
    iterations: list[dict[str, Any]]  # mrtui status rows (progress, health, alarms)
    evaluation: list[dict[str, Any]]  # eval_results / arena_results rows
    paired: list[tuple[int, int, list[dict[str, Any]]]]  # (A, B, compare rows)
    health: dict[int, Health]
    losses: dict[int, list[tuple[int, float]]]
    labels: list[dict[str, Any]]  # human_labels rows
    agreement: dict[int, dict[str, Any]]  # iteration -> measure -> {n, value, lo, hi}
    prompts_total: int = 0
    prompts_shown: int = 0


@dataclass
class ReportData:
    db: Path
    events: int
    last_seq: int | None
    last_event_at: Any
    generated_at: dt.datetime
    runs: list[RunData] = field(default_factory=list)
    battles: list[dict[str, Any]] = field(default_factory=list)  # JSON for the browser


def _rows(con: Any, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _paired(con: Any, run_id: str) -> list[tuple[int, int, list[dict[str, Any]]]]:
    from itertools import pairwise

    from mrtui.evaluation.compare import Side, compare, evaluated

    return [
        (a, b, compare(con, Side(run_id, a), Side(run_id, b)))
        for a, b in pairwise(evaluated(con, run_id))
    ]


def gather(db: Path, run_id: str | None = None, *, max_prompts: int = MAX_PROMPTS) -> ReportData:
    """Everything the page shows, for every run in the log or only ``run_id``. One read-only
    connection does the reading (a log whose stored views are older than this mrtui pays for
    installing them on each connection, ~0.5 s)."""
    from mrtui.loop.report import status
    from mrtui.store import connect
    from mrtui.store import health as store_health
    from mrtui.store import labels as labels_api
    from mrtui.tui.source import LogSource

    with connect(db) as con:
        st = status(con, run_id)
        if run_id is not None and not st["runs"]:
            from mrtui.store import StoreError

            runs = [
                r
                for (r,) in con.execute("SELECT DISTINCT run_id FROM events ORDER BY 1").fetchall()
            ]
            raise StoreError(
                f"run {run_id!r} is not in {db} (runs: {', '.join(runs) or 'none'}); "
                "leave out --run for every run"
            )
        agreement = labels_api.agreement(con, run_id)
        health = store_health.read(con)
        data = ReportData(
            db, st["events"], st["last_seq"], st["last_event_at"], dt.datetime.now(dt.UTC)
        )
        for r in st["runs"]:
            rid = r["run_id"]
            run = RunData(
                rid,
                r.get("model"),
                r.get("backend"),
                r["iterations"],
                r["evaluation"],
                _paired(con, rid),
                {it: h for (run_, it), h in health.items() if run_ == rid},
                {},
                labels=_rows(
                    con,
                    "SELECT * FROM human_labels WHERE run_id = ? ORDER BY iteration, seq",
                    [rid],
                ),
                agreement={it: m for (run_, it), m in agreement.items() if run_ == rid},
            )
            labels = {x["target_key"]: x for x in run.labels}
            keys = [
                k
                for (k,) in con.execute(
                    "SELECT prompt_key FROM prompts WHERE run_id = ? ORDER BY prompt_index, seq",
                    [rid],
                ).fetchall()
            ]
            run.prompts_total, run.prompts_shown = len(keys), min(len(keys), max_prompts)
            for key in keys[:max_prompts]:
                data.battles.extend(_battle_rows(rid, _focus(con, rid, key), labels))
            data.runs.append(run)
    for run in data.runs:
        run.losses = LogSource(db, run.run_id).losses()
    return data


def _focus(con: Any, run_id: str, prompt_key: str) -> Any:
    """One prompt as the TUI reads it (``LogSource.focus``), on this connection: its events
    copied into a scoped ``events`` that shadows the log's, then the whole log again for
    battles whose position wins are counted per iteration."""
    from mrtui.tui.focus import BattleData, apply_battles, battle_keys, read_battles, read_focus
    from mrtui.tui.focus import scope as scoped

    scoped(con, run_id, prompt_key)
    try:
        focus = read_focus(con, run_id, prompt_key)
        battles = read_battles(con, run_id, battle_keys(focus, "response"))
    finally:
        con.execute("DROP TABLE IF EXISTS temp.events")
    wide = battle_keys(focus, "iteration")
    if wide:
        more = read_battles(con, run_id, wide)
        for name in BattleData.FIELDS:
            getattr(battles, name).extend(getattr(more, name))
    apply_battles(focus, battles)
    return focus


def _num(v: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _label(labels: dict[str, dict[str, Any]], key: str) -> dict[str, Any] | None:
    x = labels.get(key)
    if x is None:
        return None
    return {"label": str(x.get("label")), "author": x.get("author"), "note": x.get("note")}


def _battle_rows(run_id: str, focus: Any, labels: dict[str, dict[str, Any]]) -> list[dict]:
    """One browser row per iteration of a prompt: its responses with their judgements, and
    the meta-judged response's verdicts, each marked when its pair's two orders disagree."""
    out = []
    for it, itf in sorted(focus.iterations.items()):
        responses = []
        for r in itf.responses:
            responses.append(
                {
                    "key": r.key,
                    "index": r.sample_index,
                    "text": r.text,
                    "chars": r.chars,
                    "finish": r.finish_reason,
                    "mean": _num(r.mean),
                    "valid": r.valid,
                    "judged": r.judged,
                    "role": r.role,
                    "meta": r.meta_target,
                    "label": _label(labels, r.key),
                    "judgements": [
                        {
                            "key": j.key,
                            "judge": j.judge_index,
                            "score": _num(j.score),
                            "text": j.text,
                            "error": j.parse_error,
                            "fallback": j.fallback_used,
                            "elo": _num(j.elo),
                            "wins": j.wins,
                            "label": _label(labels, j.key),
                        }
                        for j in r.judgements
                    ],
                }
            )
        means = [x["mean"] for x in responses if x["mean"] is not None]
        battle = None
        b = itf.battle
        if b is not None:
            verdicts = []
            for (first, second), v in b.verdicts.items():
                other = b.verdicts.get((second, first))
                verdicts.append(
                    {
                        "key": v.key,
                        "first": first,
                        "second": second,
                        "winner": v.winner,
                        "text": v.text,
                        "error": v.parse_error,
                        "p_first": _num(v.p_first),
                        # both orders judged and they do not name the same judgement
                        "split": other is not None and not orders_agree(v.winner, other.winner),
                        "label": _label(labels, v.key),
                    }
                )
            battle = {
                "response": b.response_key,
                "scope": b.scope,
                "omega1": _num(b.omega1),
                "omega2": _num(b.omega2),
                "win_1st": b.win_1st,
                "win_2nd": b.win_2nd,
                "chosen": b.chosen_key,
                "rejected": b.rejected_key,
                "drop": b.drop_reason,
                "verdicts": verdicts,
            }
        judge_pair = bool(battle and battle["chosen"] and not battle["drop"])
        out.append(
            {
                "run": run_id,
                "prompt": focus.prompt_key,
                "index": focus.index,
                "source": focus.source_id,
                "text": focus.text,
                "iteration": it,
                "best": max(means) if means else None,
                "worst": min(means) if means else None,
                "actor_pair": itf.actor_pair is not None,
                "judge_pair": judge_pair,
                # pairs judged in both orders whose verdicts disagree (each pair counted once)
                "split": sum(v["split"] for v in battle["verdicts"]) // 2 if battle else 0,
                "responses": responses,
                "battle": battle,
            }
        )
    return out
