-- One row per logged unit, with its key. Hot fields come from the typed columns of `events`
-- (written at append time, migrations 0002-0004); the rest from one parse of the JSON payload,
-- which a query that selects none of them never does.

-- Read from the typed columns `settings` and `model_id` / `model_sha256` (migration 0005),
-- never from the payload: every pair view reads this view, some several times per query.
CREATE OR REPLACE VIEW iteration_settings AS
SELECT run_id, iteration, seq, created_at,
       (settings->>'$.rho')::DOUBLE               AS rho,
       (settings->>'$.max_chosen_chars')::INTEGER AS max_chosen_chars,
       (settings->>'$.judge_max_chars')::INTEGER  AS judge_max_chars,
       (settings->>'$.drop_same_score')::BOOLEAN  AS drop_same_score,
       settings->>'$.weights_scope'                AS weights_scope,
       model_id,
       model_sha256,
       settings->'$'                               AS settings,
       (settings->>'$.min_rationale_words')::INTEGER AS min_rationale_words,
       (settings->>'$.bt_prior_games')::DOUBLE     AS bt_prior_games,
       settings->>'$.actor_judging'                AS actor_judging
FROM events
WHERE event_type = 'IterationStarted'
QUALIFY row_number() OVER (PARTITION BY run_id, iteration ORDER BY seq DESC) = 1;

-- The prompts each iteration drew from the run's pool (only when prompts_per_iteration > 0;
-- otherwise every iteration uses every prompt of the run).
CREATE OR REPLACE VIEW iteration_prompts AS
SELECT run_id, iteration, unnest(from_json(payload->'$.prompt_keys', '["VARCHAR"]')) AS prompt_key,
       (payload->>'$.pool_size')::INTEGER AS pool_size, (payload->>'$.disjoint')::BOOLEAN AS disjoint
FROM events
WHERE event_type = 'PromptsDrawn';

-- template_sha256 and segments from typed columns (migration 0005): preference_pairs reads
-- only those, so it never touches the payload or text blocks.
CREATE OR REPLACE VIEW templates AS
SELECT run_id, payload->>'$.name' AS name, template_sha256, text AS template, segments
FROM events
WHERE event_type = 'TemplateRegistered';

CREATE OR REPLACE VIEW prompts AS
SELECT run_id, key AS prompt_key, text AS prompt,
       payload->>'$.source_id' AS source_id, (payload->>'$.index')::INTEGER AS prompt_index,
       seq, created_at
FROM events
WHERE event_type = 'PromptAdded';

CREATE OR REPLACE VIEW responses AS
SELECT run_id, iteration, key AS response_key, parent_key AS prompt_key,
       item_index AS sample_index, text AS response, text_chars AS response_chars,
       prompt_tokens, completion_tokens, prompt_tokens_evaluated, finish_reason,
       p.seed, p.wall_s, p.model_id, model_sha256, p.backend, p.backend_version, p.template,
       template_sha256, seq, created_at, payload
FROM (SELECT *, from_json(payload, '{"seed":"BIGINT","wall_s":"DOUBLE","model_id":"VARCHAR",
        "backend":"VARCHAR","backend_version":"VARCHAR","template":"VARCHAR"}') AS p
      FROM events WHERE event_type = 'ResponseGenerated');

-- `scoring`: 'sampled' (the score its final line names) or 'expected' (Σ s·p(s) over
-- `choice_probs`, the model's probability of each score; `sampled_score` is then what its own
-- final line named). `eligible`: a valid judgement with a rationale of at least the iteration's
-- min_rationale_words (judgements logged before rationales were counted are eligible). Only
-- eligible judgements are meta-judged and can become judge pairs.
CREATE OR REPLACE VIEW judgements AS
SELECT j.run_id, j.iteration, key AS judgement_key, parent_key AS response_key, prompt_key,
       item_index AS judge_index, text AS judgement, text_chars AS judgement_chars,
       score, parse_error, score IS NOT NULL AS valid, fallback_used,
       prompt_tokens, completion_tokens, prompt_tokens_evaluated, finish_reason,
       p.seed, p.wall_s, p.model_id, j.model_sha256, p.backend, p.backend_version, p.template,
       template_sha256, j.seq, j.created_at, payload,
       rationale_words, p.structure IS NOT NULL AS structured,
       coalesce(scoring, 'sampled') AS scoring, sampled_score, choice_probs, choice_mass,
       score IS NOT NULL AND (rationale_words IS NULL
                              OR rationale_words >= coalesce(st.min_rationale_words, 0))
           AS eligible
FROM (SELECT *, from_json(payload, '{"seed":"BIGINT","wall_s":"DOUBLE","model_id":"VARCHAR",
        "backend":"VARCHAR","backend_version":"VARCHAR","template":"VARCHAR",
        "structure":"JSON"}') AS p
      FROM events WHERE event_type = 'JudgementRecorded') j
LEFT JOIN (SELECT run_id, iteration, min_rationale_words FROM iteration_settings) st
       ON st.run_id = j.run_id AND st.iteration = j.iteration;

-- `p_first` (meta_scoring = 'expected'): the meta-judge's probability that the judgement shown
-- first is the better one; `winner` is then the more likely one.
CREATE OR REPLACE VIEW meta_verdicts AS
SELECT run_id, iteration, key AS verdict_key, parent_key AS response_key, prompt_key,
       first_key, second_key, winner,
       CASE winner WHEN 'A' THEN first_key WHEN 'B' THEN second_key END AS winner_key,
       CASE winner WHEN 'A' THEN 1 WHEN 'B' THEN -1 ELSE 0 END AS r,
       parse_error, fallback_used, text AS verdict, prompt_tokens,
       completion_tokens, prompt_tokens_evaluated, finish_reason,
       p.seed, p.wall_s, p.model_id, model_sha256, p.backend, p.backend_version, p.template,
       template_sha256, seq, created_at, payload,
       rationale_words, p.structure IS NOT NULL AS structured,
       coalesce(scoring, 'sampled') AS scoring, p_first, choice_mass
FROM (SELECT *, from_json(payload, '{"seed":"BIGINT","wall_s":"DOUBLE","model_id":"VARCHAR",
        "backend":"VARCHAR","backend_version":"VARCHAR","template":"VARCHAR",
        "structure":"JSON"}') AS p
      FROM events WHERE event_type = 'MetaVerdictRecorded');

-- Failed requests. A failed unit stays open and is retried on resume; `redone` says whether
-- a later attempt completed it.
CREATE OR REPLACE VIEW failures AS
SELECT f.run_id, f.iteration, f.parent_key AS unit_key, f.payload->>'$.stage' AS stage,
       f.payload->>'$.error' AS error, f.seq, f.created_at, f.payload,
       EXISTS (SELECT 1 FROM events u WHERE u.key = f.parent_key) AS redone
FROM events f
WHERE f.event_type = 'RequestFailed';

-- Units that can never succeed as configured (e.g. a prompt longer than the context window):
-- logged once with the reason, never retried.
CREATE OR REPLACE VIEW skipped_units AS
SELECT run_id, iteration, key AS unit_key, parent_key, prompt_key,
       payload->>'$.stage' AS stage, payload->>'$.reason' AS reason, seq, created_at
FROM events
WHERE event_type = 'UnitSkipped';
