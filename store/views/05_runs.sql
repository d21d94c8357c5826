-- One row per run: what `mrtui run` was configured with (the RunConfigured event; a run logs
-- it once, under the key content_key("run", run_id)). JSON columns hold the nested settings.
CREATE OR REPLACE VIEW runs AS
SELECT run_id, payload->>'$.model' AS model, payload->>'$.model_sha256' AS model_sha256,
       payload->>'$.backend' AS backend, payload->'$.backend_options' AS backend_options,
       (payload->>'$.iterations')::INTEGER AS iterations, payload->'$.defaults' AS defaults,
       payload->'$.overrides' AS overrides, payload->'$.evaluation' AS evaluation,
       payload->>'$.mrtui_version' AS mrtui_version, payload->>'$.model_format' AS model_format,
       payload->>'$.model_origin' AS model_origin,
       payload->>'$.model_quantization' AS model_quantization,
       created_at AS configured_at, seq
FROM events
WHERE event_type = 'RunConfigured';

-- One row per PromptsDrawn event: the prompt keys an iteration drew from the pool, as one list
-- in the order drawn (iteration_prompts has a row per key). A resume reuses the first draw.
CREATE OR REPLACE VIEW prompt_draws AS
SELECT run_id, iteration, from_json(payload->'$.prompt_keys', '["VARCHAR"]') AS prompt_keys,
       (payload->>'$.pool_size')::INTEGER AS pool_size,
       (payload->>'$.disjoint')::BOOLEAN AS disjoint, seq, created_at
FROM events
WHERE event_type = 'PromptsDrawn';
