"""Read-side summaries of a log (``mrtui status``, the run summary), as plain data for any
front end. Health numbers and alarms come from :mod:`mrtui.store.health`, the one definition
the TUI uses too."""

from __future__ import annotations

from typing import Any

from mrtui.store import health as store_health

# Work planned and done per iteration: cheap counts over typed columns (no pair derivation,
# so `mrtui status` stays fast on a log of millions of events).
_PROGRESS = """
WITH s AS (
    SELECT run_id, iteration, (settings->>'$.k')::INTEGER AS k,
           (settings->>'$.n')::INTEGER AS n, model_id
    FROM iteration_settings
),
p AS (SELECT run_id, count(*) AS prompts FROM events WHERE event_type = 'PromptAdded'
      GROUP BY ALL),
d AS (SELECT run_id, iteration, count(*) AS drawn FROM iteration_prompts GROUP BY ALL),
t AS (SELECT run_id, iteration, count(*) AS meta_targets,
             sum(eligible_count * (eligible_count - 1)) AS verdicts_planned
      FROM meta_targets GROUP BY ALL),
f AS (SELECT run_id, iteration, count(DISTINCT unit_key) AS open_failures
      FROM failures WHERE NOT redone GROUP BY ALL),
tr AS (SELECT run_id, iteration, bool_or(finished) AS trained, count(*) AS attempts,
              arg_max(actor_pairs, finished) AS trained_actor_pairs,
              arg_max(judge_pairs, finished) AS trained_judge_pairs,
              arg_max(base_model_origin, started_at) AS trained_from
       FROM training_runs GROUP BY ALL),
done AS (SELECT DISTINCT run_id, iteration, true AS finished FROM events
         WHERE event_type = 'IterationFinished')
SELECT s.run_id, s.iteration, s.model_id, s.k, s.n,
       coalesce(d.drawn, p.prompts, 0) AS prompts,  -- the iteration's draw from a pool, or all
       coalesce(d.drawn, p.prompts, 0) * s.k AS responses_planned,
       coalesce(d.drawn, p.prompts, 0) * s.k * s.n AS judgements_planned,
       coalesce(t.meta_targets, 0) AS meta_targets,
       coalesce(t.verdicts_planned, 0) AS verdicts_planned,
       coalesce(f.open_failures, 0) AS open_failures,
       CASE WHEN tr.trained THEN 'done'
            WHEN tr.attempts > 0 THEN 'started (' || tr.attempts || 'x)' END AS training,
       tr.trained_actor_pairs, tr.trained_judge_pairs, tr.trained_from,
       coalesce(done.finished, false) AS finished
FROM s
LEFT JOIN p USING (run_id) LEFT JOIN d USING (run_id, iteration)
LEFT JOIN t USING (run_id, iteration)
LEFT JOIN f USING (run_id, iteration) LEFT JOIN tr USING (run_id, iteration)
LEFT JOIN done USING (run_id, iteration)
WHERE ? IS NULL OR s.run_id = ?
ORDER BY s.run_id, s.iteration
"""

# Tied prompts and the score-length correlation (the judge_signal view): derived from the
# per-response scores, so read only with the derived pairs.
_SIGNAL = """
SELECT run_id, iteration, scored_prompts, tied_prompts, score_length_corr, score_per_100_chars,
       position_logit, prob_pairs, calibrated_consistency
FROM judge_signal WHERE ? IS NULL OR run_id = ?
"""

SIGNAL_COLUMNS = (
    "scored_prompts",
    "tied_prompts",
    "score_length_corr",
    "score_per_100_chars",
    "position_logit",
    "prob_pairs",
    "calibrated_consistency",
)

_PAIRS = """
SELECT run_id, iteration, count(*) FILTER (WHERE kind = 'actor') AS actor_pairs,
       count(*) FILTER (WHERE kind = 'judge') AS judge_pairs
FROM preference_pairs WHERE ? IS NULL OR run_id = ? GROUP BY ALL
"""


def alarms(h: store_health.Health) -> list[dict[str, Any]]:
    """The alarms that are on for ``h``, as plain data (see ``store_health.ALARMS``)."""
    out = []
    for name in h.alarms():
        a = store_health.ALARMS[name]
        value = h.rate(a.rate)
        out.append(
            {
                "name": name,
                "rate": a.rate,
                "value": value,
                "op": a.op,
                "threshold": a.threshold,
                "message": a.describe(value),
                "advice": a.advice,
            }
        )
    return out


def rows_as_dicts(cursor: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]


def _iterations(con: Any, run_id: str | None, pairs: bool) -> list[dict[str, Any]]:
    rows = rows_as_dicts(con.execute(_PROGRESS, [run_id, run_id]))
    health = store_health.read(con)
    derived: dict[tuple[str, int], dict[str, Any]] = {}
    if pairs:
        for sql in (_PAIRS, _SIGNAL):
            for d in rows_as_dicts(con.execute(sql, [run_id] * 2)):
                derived.setdefault((d["run_id"], d["iteration"]), {}).update(d)
    for r in rows:
        h = health.get((r["run_id"], r["iteration"]), store_health.Health())
        r.update(h.as_dict())
        r["scores"] = h.scores
        r["judge_parse_failures"] = int(h.unparsed_judgements)
        r["meta_parse_failures"] = int(h.unparsed_verdicts)
        r["alarms"] = alarms(h)
        d = derived.get((r["run_id"], r["iteration"]), {})
        r["actor_pairs"] = d.get("actor_pairs", 0) if pairs else None
        r["judge_pairs"] = d.get("judge_pairs", 0) if pairs else None
        for k in SIGNAL_COLUMNS:
            r[k] = d.get(k)
    return rows


# The roles of ``role_costs`` (store/views/76_costs.sql), in the order a run meets them.
COST_ROLES = ("startup", "actor", "judge", "meta_judge", "training", "evaluation", "other")


def costs(con: Any, run_id: str | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """``role_costs`` by (run, iteration): role -> units, tokens, wall_s, share."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows_as_dicts(
        con.execute(
            "SELECT * FROM role_costs WHERE (? IS NULL OR run_id = ?) AND iteration IS NOT NULL",
            [run_id, run_id],
        )
    ):
        out.setdefault((r.pop("run_id"), r.pop("iteration")), {})[r.pop("role")] = r
    return out


def cost_cell(cost: dict[str, Any] | None) -> str:
    """One role's cost as mrtui status, the TUI and the compare screen show it:
    wall time, its share of the iteration, and tokens where the role spent any."""
    if not cost:
        return "-"
    tokens = (cost["prompt_tokens"] or 0) + (cost["completion_tokens"] or 0)
    share = "-" if cost["share"] is None else f"{cost['share']:.0%}"
    cell = f"{cost['wall_s']:.1f} s ({share})"
    return cell + (f", {tokens:,} tok" if tokens else "")


def cost_total(roles: dict[str, dict[str, Any]]) -> str:
    """An iteration's wall time over its roles (the table's last line)."""
    return f"{sum(c['wall_s'] or 0.0 for c in roles.values()):.1f} s"


def status(con: Any, run_id: str | None = None, *, pairs: bool = False) -> dict[str, Any]:
    """Per-iteration progress and health of every run in the log (or one run). ``pairs``
    also derives the preference pairs (seconds on a log of a million judgements)."""
    runs = rows_as_dicts(
        con.execute(
            "SELECT run_id, model, backend, configured_at AS created_at FROM runs "
            "WHERE (? IS NULL OR run_id = ?) ORDER BY seq",
            [run_id, run_id],
        )
    )
    iterations = _iterations(con, run_id, pairs)
    totals = con.execute("SELECT count(*), max(seq), max(created_at) FROM events").fetchall()[0]
    from mrtui.evaluation.report import results

    evaluation = results(con, run_id)
    spent = costs(con, run_id)
    for i in iterations:
        i["costs"] = spent.get((i["run_id"], i["iteration"]), {})
    for run in runs:
        run["iterations"] = [i for i in iterations if i["run_id"] == run["run_id"]]
        run["evaluation"] = [e for e in evaluation if e["run_id"] == run["run_id"]]
    return {"events": totals[0], "last_seq": totals[1], "last_event_at": totals[2], "runs": runs}


_TRAINING = """
SELECT r.run_id, r.iteration, r.actor_pairs AS trained_actor_pairs,
       r.judge_pairs AS trained_judge_pairs, r.steps,
       arg_max(st.loss, st.step) AS final_loss, avg(st.reward_accuracy) AS reward_accuracy
FROM training_runs r LEFT JOIN training_steps st USING (attempt)
WHERE r.finished AND r.run_id = ? GROUP BY ALL
"""


def summary(con: Any, run_id: str) -> list[dict[str, Any]]:
    """Per-iteration summary of one run: what `mrtui run` and the demo print at the end."""
    rows = _iterations(con, run_id, pairs=True)
    training = {r["iteration"]: r for r in rows_as_dicts(con.execute(_TRAINING, [run_id]))}
    scores = {
        r[0]: r[1]
        for r in con.execute(
            "SELECT iteration, avg(mean_score) FROM response_scores WHERE run_id = ? GROUP BY ALL",
            [run_id],
        ).fetchall()
    }
    for r in rows:
        r.update(
            training.get(r["iteration"], dict.fromkeys(("steps", "final_loss", "reward_accuracy")))
        )
        r["mean_response_score"] = scores.get(r["iteration"])
    return rows
