-- One row per logged unit, with its key. Columns pulled out of the JSON payload once.

CREATE OR REPLACE VIEW iteration_settings AS
SELECT run_id, iteration, seq, created_at,
       (payload->>'$.settings.rho')::DOUBLE               AS rho,
       (payload->>'$.settings.max_chosen_chars')::INTEGER AS max_chosen_chars,
       (payload->>'$.settings.judge_max_chars')::INTEGER  AS judge_max_chars,
       (payload->>'$.settings.drop_same_score')::BOOLEAN  AS drop_same_score,
       payload->>'$.settings.weights_scope'                AS weights_scope,
       payload->>'$.model.model_id'                        AS model_id,
       payload->>'$.model.model_sha256'                    AS model_sha256,
       payload->'$.settings'                               AS settings
FROM events
WHERE event_type = 'IterationStarted'
QUALIFY row_number() OVER (PARTITION BY run_id, iteration ORDER BY seq DESC) = 1;

CREATE OR REPLACE VIEW templates AS
SELECT run_id, payload->>'$.name' AS name, payload->>'$.sha256' AS template_sha256,
       text AS template, from_json(payload->'$.segments', '["VARCHAR"]') AS segments
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
       p.sample_index, text AS response, length(text) AS response_chars,
       p.prompt_tokens, p.completion_tokens, p.prompt_tokens_evaluated, p.finish_reason,
       p.seed, p.wall_s, p.model_id, p.model_sha256, p.backend, p.backend_version,
       p.template, p.template_sha256, seq, created_at, payload
FROM (
    SELECT *, from_json(payload, '{"sample_index":"INTEGER","prompt_tokens":"INTEGER",
        "completion_tokens":"INTEGER","prompt_tokens_evaluated":"INTEGER",
        "finish_reason":"VARCHAR","seed":"BIGINT","wall_s":"DOUBLE","model_id":"VARCHAR",
        "model_sha256":"VARCHAR","backend":"VARCHAR","backend_version":"VARCHAR",
        "template":"VARCHAR","template_sha256":"VARCHAR"}') AS p
    FROM events WHERE event_type = 'ResponseGenerated'
);

CREATE OR REPLACE VIEW judgements AS
SELECT run_id, iteration, key AS judgement_key, parent_key AS response_key, p.prompt_key,
       p.judge_index, text AS judgement, length(text) AS judgement_chars,
       p.score, p.parse_error, p.score IS NOT NULL AS valid, p.fallback_used,
       p.prompt_tokens, p.completion_tokens, p.prompt_tokens_evaluated, p.finish_reason,
       p.seed, p.wall_s, p.model_id, p.model_sha256, p.backend, p.backend_version,
       p.template, p.template_sha256, seq, created_at, payload
FROM (
    SELECT *, from_json(payload, '{"prompt_key":"VARCHAR","judge_index":"INTEGER",
        "score":"DOUBLE","parse_error":"VARCHAR","fallback_used":"BOOLEAN",
        "prompt_tokens":"INTEGER","completion_tokens":"INTEGER",
        "prompt_tokens_evaluated":"INTEGER","finish_reason":"VARCHAR","seed":"BIGINT",
        "wall_s":"DOUBLE","model_id":"VARCHAR","model_sha256":"VARCHAR",
        "backend":"VARCHAR","backend_version":"VARCHAR","template":"VARCHAR",
        "template_sha256":"VARCHAR"}') AS p
    FROM events WHERE event_type = 'JudgementRecorded'
);

CREATE OR REPLACE VIEW meta_verdicts AS
SELECT run_id, iteration, key AS verdict_key, parent_key AS response_key, p.prompt_key,
       p.first_key, p.second_key, p.winner,
       CASE p.winner WHEN 'A' THEN p.first_key WHEN 'B' THEN p.second_key END AS winner_key,
       CASE p.winner WHEN 'A' THEN 1 WHEN 'B' THEN -1 ELSE 0 END AS r,
       p.parse_error, p.fallback_used, text AS verdict, p.prompt_tokens,
       p.completion_tokens, p.prompt_tokens_evaluated, p.finish_reason, p.seed, p.wall_s,
       p.model_id, p.model_sha256, p.backend, p.backend_version, p.template,
       p.template_sha256, seq, created_at, payload
FROM (
    SELECT *, from_json(payload, '{"prompt_key":"VARCHAR","first_key":"VARCHAR",
        "second_key":"VARCHAR","winner":"VARCHAR","parse_error":"VARCHAR",
        "fallback_used":"BOOLEAN","prompt_tokens":"INTEGER","completion_tokens":"INTEGER",
        "prompt_tokens_evaluated":"INTEGER","finish_reason":"VARCHAR","seed":"BIGINT",
        "wall_s":"DOUBLE","model_id":"VARCHAR","model_sha256":"VARCHAR",
        "backend":"VARCHAR","backend_version":"VARCHAR","template":"VARCHAR",
        "template_sha256":"VARCHAR"}') AS p
    FROM events WHERE event_type = 'MetaVerdictRecorded'
);

CREATE OR REPLACE VIEW failures AS
SELECT run_id, iteration, parent_key AS unit_key, payload->>'$.stage' AS stage,
       payload->>'$.error' AS error, seq, created_at, payload
FROM events
WHERE event_type = 'RequestFailed';
