-- Where a run's time and tokens went: per run, iteration and role.
--
-- Time comes from the log's boundary events, not from the units' own `wall_s` (units run
-- in parallel, so theirs add up to far more than the clock). `cost_spans` holds the intervals:
-- - a stage opens at StageStarted and closes at its StageFinished; training opens at
--   TrainingStarted and closes at the CheckpointCreated that exports the trained model. One
--   that never closed (the process was killed) ends at the last event logged before the next
--   boundary;
-- - `startup`: from a process's start to the first boundary after its SessionStarted event
--   (imports, resolving and hashing the model, logging the prompts; on a resume also loading
--   the model); an evaluation process's start-up counts as evaluation;
-- - `idle`: from a run's last event before a resume to the resumed process's start (logs
--   written before SessionStarted existed: from a killed span's last event to the next
--   boundary). Idle time is counted in no role.
-- Roles by stage: actor; judge (pointwise judging and pairwise comparisons of responses);
-- meta_judge; training (DPO and the GGUF export); evaluation (stages named suite/step).
-- `role_costs` adds `other`: the rest of the iteration's span, from IterationStarted to
-- IterationFinished (model loads, pair building, the judge check). Evaluation usually runs
-- outside that span. Tokens and units come from each role's units (cached evaluation
-- answers cost nothing and are left out; training's units are its logged steps). `share`: of
-- the sum over the iteration's rows.

CREATE OR REPLACE VIEW cost_spans AS
WITH bounds AS (
    SELECT run_id, iteration, seq, created_at, event_type, payload->>'$.stage' AS stage,
           (payload->>'$.started_at')::DOUBLE AS started_at, payload->>'$.command' AS command,
           lead(seq) OVER w AS next_seq, lead(created_at) OVER w AS next_at,
           lead(event_type) OVER w AS next_type, lead(payload->>'$.stage') OVER w AS next_stage,
           lead(iteration) OVER w AS next_iteration
    FROM events
    WHERE event_type IN ('IterationStarted', 'IterationFinished', 'StageStarted',
                         'StageFinished', 'TrainingStarted', 'CheckpointCreated',
                         'SessionStarted')
    WINDOW w AS (PARTITION BY run_id ORDER BY seq)
), opened AS (
    SELECT *,
           CASE WHEN event_type = 'TrainingStarted' THEN 'training'
                WHEN stage LIKE '%/%' THEN 'evaluation'
                WHEN stage IN ('judge', 'pairwise') THEN 'judge'
                WHEN stage = 'meta' THEN 'meta_judge'
                WHEN stage = 'actor' THEN 'actor'
                ELSE 'other' END AS role,
           coalesce((event_type = 'StageStarted' AND next_type = 'StageFinished'
                         AND next_stage = stage AND next_iteration = iteration)
                    OR (event_type = 'TrainingStarted' AND next_type = 'CheckpointCreated'
                         AND next_iteration = iteration), false) AS closed
    FROM bounds
    WHERE event_type IN ('StageStarted', 'TrainingStarted')
), last_before AS (
    -- the last event a killed span logged (few rows: one per kill)
    SELECT o.run_id, o.seq, max(e.created_at) AS last_at
    FROM (SELECT * FROM opened WHERE NOT closed) o
    JOIN events e ON e.run_id = o.run_id AND e.seq >= o.seq
                 AND (o.next_seq IS NULL OR e.seq < o.next_seq)
    GROUP BY ALL
), spans AS (
    SELECT o.run_id, o.iteration, o.role, o.stage, o.seq, o.created_at AS started_at,
           CASE WHEN o.closed THEN o.next_at ELSE l.last_at END AS ended_at, o.closed
    FROM opened o
    LEFT JOIN last_before l ON l.run_id = o.run_id AND l.seq = o.seq
), legacy_idle AS (
    -- logs before SessionStarted: from a killed span's last event to the next boundary
    SELECT o.run_id, o.iteration, 'idle' AS role, o.stage, o.seq, l.last_at AS started_at,
           o.next_at AS ended_at, true AS closed
    FROM opened o
    JOIN last_before l ON l.run_id = o.run_id AND l.seq = o.seq
    WHERE o.next_at IS NOT NULL AND o.next_type <> 'SessionStarted'
), sessions AS (
    SELECT s.run_id, s.next_iteration AS iteration, s.seq, s.command,
           make_timestamptz((least(s.started_at, epoch(s.created_at)) * 1e6)::BIGINT)
               AS process_at,
           s.created_at, s.next_at,
           (SELECT max(e.created_at) FROM events e
            WHERE e.run_id = s.run_id AND e.seq < s.seq
              AND e.event_type <> 'HumanLabelRecorded') AS previous_at
    FROM bounds s
    WHERE s.event_type = 'SessionStarted'
)
SELECT run_id, iteration, role, stage, seq, started_at, ended_at, closed,
       epoch(ended_at) - epoch(started_at) AS wall_s
FROM (
    SELECT * FROM spans
    UNION ALL SELECT * FROM legacy_idle
    UNION ALL
    SELECT run_id, iteration, CASE WHEN command = 'eval' THEN 'evaluation' ELSE 'startup' END,
           NULL, seq, process_at, coalesce(next_at, created_at), true
    FROM sessions
    UNION ALL
    SELECT run_id, iteration, 'idle', NULL, seq, previous_at, process_at, true
    FROM sessions
    WHERE previous_at IS NOT NULL AND previous_at < process_at
);

CREATE OR REPLACE VIEW role_costs AS
WITH roles AS (
    SELECT run_id, iteration, role, sum(wall_s) AS wall_s
    FROM cost_spans
    WHERE role NOT IN ('idle', 'other')
    GROUP BY ALL
), units AS (
    SELECT run_id, iteration,
           CASE event_type WHEN 'ResponseGenerated' THEN 'actor'
                           WHEN 'JudgementRecorded' THEN 'judge'
                           WHEN 'ResponsesCompared' THEN 'judge'
                           WHEN 'MetaVerdictRecorded' THEN 'meta_judge'
                           WHEN 'TrainingStepLogged' THEN 'training'
                           ELSE 'evaluation' END AS role,
           count(*) AS units, sum(prompt_tokens) AS prompt_tokens,
           sum(completion_tokens) AS completion_tokens
    FROM events
    WHERE event_type IN ('ResponseGenerated', 'JudgementRecorded', 'ResponsesCompared',
                         'MetaVerdictRecorded', 'TrainingStepLogged', 'EvalJudged')
       OR (event_type = 'EvalSampleGenerated' AND payload->>'$.cached_from' IS NULL)
    GROUP BY ALL
), iterations AS (
    SELECT s.run_id, s.iteration, s.created_at AS span_start,
           coalesce(f.created_at, l.last_at, s.created_at) AS span_end
    FROM (SELECT run_id, iteration, min(created_at) AS created_at FROM events
          WHERE event_type = 'IterationStarted' GROUP BY ALL) s
    LEFT JOIN (SELECT run_id, iteration, max(created_at) AS created_at FROM events
               WHERE event_type = 'IterationFinished' GROUP BY ALL) f
           ON f.run_id = s.run_id AND f.iteration = s.iteration
    LEFT JOIN (SELECT run_id, iteration, max(ended_at) AS last_at FROM cost_spans
               WHERE role NOT IN ('evaluation', 'idle') GROUP BY ALL) l
           ON l.run_id = s.run_id AND l.iteration = s.iteration
), other AS (
    -- the iteration's span less every interval inside it (each clipped to the span)
    SELECT i.run_id, i.iteration, 'other' AS role,
           greatest(epoch(i.span_end) - epoch(i.span_start)
                    - coalesce(sum(greatest(epoch(least(i.span_end, c.ended_at))
                                            - epoch(greatest(i.span_start, c.started_at)), 0)),
                               0), 0) AS wall_s
    FROM iterations i
    LEFT JOIN cost_spans c ON c.run_id = i.run_id AND c.role <> 'other'
                          AND c.started_at < i.span_end AND c.ended_at > i.span_start
    GROUP BY i.run_id, i.iteration, i.span_start, i.span_end
), joined AS (
    SELECT coalesce(r.run_id, u.run_id) AS run_id, coalesce(r.iteration, u.iteration) AS iteration,
           coalesce(r.role, u.role) AS role, coalesce(u.units, 0) AS units,
           u.prompt_tokens, u.completion_tokens, coalesce(r.wall_s, 0.0) AS wall_s
    FROM (SELECT * FROM roles UNION ALL SELECT * FROM other) r
    FULL JOIN units u ON u.run_id = r.run_id AND u.iteration = r.iteration AND u.role = r.role
)
SELECT run_id, iteration, role, units, prompt_tokens, completion_tokens, wall_s,
       wall_s / nullif(sum(wall_s) OVER (PARTITION BY run_id, iteration), 0) AS share
FROM joined;
