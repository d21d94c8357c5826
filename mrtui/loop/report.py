"""Read-side summaries of a log (``mrtui status``), as plain data for any front end."""

from __future__ import annotations

from typing import Any

_ITERATIONS = """
WITH s AS (
    SELECT run_id, iteration, (settings->>'$.k')::INTEGER AS k,
           (settings->>'$.n')::INTEGER AS n, model_id
    FROM iteration_settings
),
p AS (SELECT run_id, count(*) AS prompts FROM prompts GROUP BY ALL),
r AS (SELECT run_id, iteration, count(*) AS responses, avg(response_chars) AS mean_chars
      FROM responses GROUP BY ALL),
j AS (SELECT run_id, iteration, count(*) AS judgements, count(*) FILTER (WHERE NOT valid) AS
             judge_parse_failures, avg(score) AS mean_score,
             count(*) FILTER (WHERE score = 5) AS fives
      FROM judgements GROUP BY ALL),
t AS (SELECT t.run_id, t.iteration, count(DISTINCT t.response_key) AS targets,
             sum(v.valid_count * (v.valid_count - 1)) AS verdicts_planned
      FROM meta_targets t JOIN response_scores v USING (response_key) GROUP BY ALL),
m AS (SELECT run_id, iteration, count(*) AS verdicts,
             count(*) FILTER (WHERE winner IS NULL) AS meta_parse_failures,
             count(*) FILTER (WHERE winner = 'A') AS first_wins
      FROM meta_verdicts GROUP BY ALL),
f AS (SELECT f.run_id, f.iteration, count(DISTINCT f.unit_key) AS open_failures
      FROM failures f WHERE f.unit_key NOT IN (SELECT key FROM events WHERE key IS NOT NULL)
      GROUP BY ALL),
pp AS (SELECT run_id, iteration, count(*) FILTER (WHERE kind = 'actor') AS actor_pairs,
              count(*) FILTER (WHERE kind = 'judge') AS judge_pairs
       FROM preference_pairs GROUP BY ALL),
done AS (SELECT run_id, iteration, true AS finished FROM events
         WHERE event_type = 'IterationFinished')
SELECT s.run_id, s.iteration, s.model_id, s.k, s.n, coalesce(p.prompts, 0) AS prompts,
       coalesce(r.responses, 0) AS responses, coalesce(p.prompts, 0) * s.k AS responses_planned,
       coalesce(j.judgements, 0) AS judgements,
       coalesce(p.prompts, 0) * s.k * s.n AS judgements_planned,
       coalesce(j.judge_parse_failures, 0) AS judge_parse_failures,
       coalesce(t.targets, 0) AS meta_targets, coalesce(m.verdicts, 0) AS verdicts,
       coalesce(t.verdicts_planned, 0) AS verdicts_planned,
       coalesce(m.meta_parse_failures, 0) AS meta_parse_failures,
       CASE WHEN m.verdicts - m.meta_parse_failures > 0
            THEN m.first_wins / (m.verdicts - m.meta_parse_failures) END AS first_position_win_rate,
       coalesce(f.open_failures, 0) AS open_failures,
       coalesce(pp.actor_pairs, 0) AS actor_pairs, coalesce(pp.judge_pairs, 0) AS judge_pairs,
       r.mean_chars AS mean_response_chars, j.mean_score AS mean_judge_score,
       CASE WHEN j.judgements > 0 THEN j.fives / j.judgements END AS share_of_fives,
       coalesce(done.finished, false) AS finished
FROM s
LEFT JOIN p USING (run_id) LEFT JOIN r USING (run_id, iteration)
LEFT JOIN j USING (run_id, iteration) LEFT JOIN t USING (run_id, iteration)
LEFT JOIN m USING (run_id, iteration) LEFT JOIN f USING (run_id, iteration)
LEFT JOIN pp USING (run_id, iteration) LEFT JOIN done USING (run_id, iteration)
WHERE ? IS NULL OR s.run_id = ?
ORDER BY s.run_id, s.iteration
"""


def rows_as_dicts(cursor: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]


def status(con: Any, run_id: str | None = None) -> dict[str, Any]:
    """Per-iteration progress and health of every run in the log (or one run)."""
    runs = rows_as_dicts(
        con.execute(
            "SELECT run_id, payload->>'$.model' AS model, payload->>'$.backend' AS backend, "
            "created_at FROM events WHERE event_type = 'RunConfigured' "
            "AND (? IS NULL OR run_id = ?) ORDER BY seq",
            [run_id, run_id],
        )
    )
    iterations = rows_as_dicts(con.execute(_ITERATIONS, [run_id, run_id]))
    totals = con.execute("SELECT count(*), max(seq), max(created_at) FROM events").fetchall()[0]
    for run in runs:
        run["iterations"] = [i for i in iterations if i["run_id"] == run["run_id"]]
    return {"events": totals[0], "last_seq": totals[1], "last_event_at": totals[2], "runs": runs}


_SUMMARY = """
WITH h AS (
    SELECT run_id, iteration, list(n ORDER BY score) AS histogram FROM (
        SELECT run_id, iteration, s.score, count(j.score) AS n
        FROM (SELECT DISTINCT run_id, iteration FROM judgements) it
        CROSS JOIN (SELECT unnest(range(6))::DOUBLE AS score) s
        LEFT JOIN judgements j USING (run_id, iteration, score)
        GROUP BY ALL) GROUP BY ALL
),
sc AS (SELECT run_id, iteration, avg(mean_score) AS mean_response_score,
              avg(response_chars) AS mean_response_chars
       FROM response_scores GROUP BY ALL),
pf AS (SELECT run_id, iteration, avg(CASE WHEN valid THEN 0 ELSE 1 END) AS judge_fail_rate,
              avg(CASE WHEN fallback_used THEN 1 ELSE 0 END) AS judge_fallback_rate
       FROM judgements GROUP BY ALL),
mf AS (SELECT run_id, iteration, avg(CASE WHEN winner IS NULL THEN 1 ELSE 0 END)
              AS meta_fail_rate FROM meta_verdicts GROUP BY ALL),
tr AS (SELECT r.run_id, r.iteration, r.actor_pairs AS trained_actor_pairs,
              r.judge_pairs AS trained_judge_pairs, r.steps,
              arg_max(st.loss, st.step) AS final_loss,
              avg(st.reward_accuracy) AS reward_accuracy
       FROM training_runs r LEFT JOIN training_steps st USING (attempt)
       WHERE r.finished GROUP BY ALL),
pp AS (SELECT run_id, iteration, count(*) FILTER (WHERE kind = 'actor') AS actor_pairs,
              count(*) FILTER (WHERE kind = 'judge') AS judge_pairs
       FROM preference_pairs GROUP BY ALL),
p AS (SELECT run_id, count(*) AS prompts FROM prompts GROUP BY ALL)
SELECT s.run_id, s.iteration, s.model_id, p.prompts, pp.actor_pairs, pp.judge_pairs,
       sc.mean_response_score, sc.mean_response_chars, h.histogram, pf.judge_fail_rate,
       pf.judge_fallback_rate, mf.meta_fail_rate, tr.trained_actor_pairs,
       tr.trained_judge_pairs, tr.steps, tr.final_loss, tr.reward_accuracy
FROM iteration_settings s
LEFT JOIN p USING (run_id) LEFT JOIN pp USING (run_id, iteration)
LEFT JOIN sc USING (run_id, iteration) LEFT JOIN h USING (run_id, iteration)
LEFT JOIN pf USING (run_id, iteration) LEFT JOIN mf USING (run_id, iteration)
LEFT JOIN tr USING (run_id, iteration)
WHERE s.run_id = ?
ORDER BY s.iteration
"""


def summary(con: Any, run_id: str) -> list[dict[str, Any]]:
    """Per-iteration summary of one run: what the demo prints at the end."""
    return rows_as_dicts(con.execute(_SUMMARY, [run_id]))
