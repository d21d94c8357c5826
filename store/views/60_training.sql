-- Training and checkpoints. A TrainingFinished event is the unit (its key covers M_t, the
-- dataset and the settings); TrainingStarted and TrainingStepLogged carry an attempt id so a
-- restarted training's steps are told apart from the crashed one's.

CREATE OR REPLACE VIEW training_runs AS
SELECT s.run_id, s.iteration, s.payload->>'$.attempt' AS attempt,
       s.payload->>'$.training_key' AS training_key,
       s.payload->>'$.dataset_sha256' AS dataset_sha256,
       (s.payload->>'$.pairs.actor')::INTEGER AS actor_pairs,
       (s.payload->>'$.pairs.judge')::INTEGER AS judge_pairs,
       s.payload->>'$.base_model_sha256' AS base_model_sha256,
       s.payload->'$.settings' AS settings,
       f.key IS NOT NULL AS finished,
       f.payload->>'$.model_dir' AS model_dir,
       f.payload->>'$.weights_sha256' AS weights_sha256,
       (f.payload->>'$.steps')::INTEGER AS steps,
       (f.payload->>'$.wall_s')::DOUBLE AS wall_s,
       s.created_at AS started_at, f.created_at AS finished_at,
       -- "hf weights" or "Q4_K_M dequantisation" (NULL in logs before mrtui took HF folders)
       s.payload->>'$.base_model_origin' AS base_model_origin,
       -- the trained folder's content hash (NULL in older logs)
       f.payload->>'$.model_sha256' AS model_sha256,
       -- the pair keys this attempt trained on, and its TrainingStarted event's place in the log
       from_json(s.payload->'$.pair_keys', '["VARCHAR"]') AS pair_keys, s.seq
FROM events s
LEFT JOIN events f ON f.event_type = 'TrainingFinished'
                  AND f.payload->>'$.attempt' = s.payload->>'$.attempt'
WHERE s.event_type = 'TrainingStarted';

CREATE OR REPLACE VIEW training_steps AS
SELECT run_id, iteration, payload->>'$.attempt' AS attempt,
       (payload->>'$.step')::INTEGER AS step, (payload->>'$.epoch')::DOUBLE AS epoch,
       (payload->>'$.loss')::DOUBLE AS loss,
       (payload->>'$.rewards_chosen')::DOUBLE AS rewards_chosen,
       (payload->>'$.rewards_rejected')::DOUBLE AS rewards_rejected,
       (payload->>'$.reward_accuracy')::DOUBLE AS reward_accuracy,
       (payload->>'$.reward_margin')::DOUBLE AS reward_margin,
       (payload->>'$.learning_rate')::DOUBLE AS learning_rate, seq, created_at
FROM events
WHERE event_type = 'TrainingStepLogged';

-- The model each iteration runs on after the first: trained from the previous iteration.
CREATE OR REPLACE VIEW checkpoints AS
SELECT run_id, iteration AS trained_in_iteration,
       (payload->>'$.for_iteration')::INTEGER AS for_iteration, key AS checkpoint_key,
       payload->>'$.model_id' AS model_id, payload->>'$.model_sha256' AS model_sha256,
       payload->>'$.gguf_path' AS gguf_path, payload->>'$.hf_dir' AS hf_dir,
       payload->>'$.trained_from_sha256' AS trained_from_sha256,
       payload->>'$.training_key' AS training_key, payload->>'$.reason' AS reason,
       payload->>'$.export.outtype' AS outtype, created_at,
       -- what model_sha256 hashes: 'hf' (a trained folder) or 'gguf' (older logs, untrained)
       coalesce(payload->>'$.model_format', 'gguf') AS model_format,
       payload->>'$.gguf_sha256' AS gguf_sha256, seq
FROM events
WHERE event_type = 'CheckpointCreated';

-- The model an iteration runs on: the latest checkpoint made for it (a retrained iteration
-- logs another CheckpointCreated; the last one counts).
CREATE OR REPLACE VIEW latest_checkpoints AS
SELECT *
FROM checkpoints
QUALIFY row_number() OVER (PARTITION BY run_id, for_iteration ORDER BY seq DESC) = 1;

-- From a checkpoint back to every pair that trained it, and the units each pair came from
-- (for judge pairs also the response the judgements were about). Join on keys to reach the
-- responses, judgements, meta-verdicts and prompts themselves. TrainingStarted v2 records
-- each pair's kind and keys; v1 (schema 1 logs) only its pair_key, which is split here.
CREATE OR REPLACE VIEW checkpoint_lineage AS
WITH started AS (
    SELECT s.run_id, s.iteration, s.payload->>'$.training_key' AS training_key,
           CASE WHEN s.event_version >= 2
                THEN from_json(s.payload->'$.pairs_used', '[{"pair_key":"VARCHAR",
                     "kind":"VARCHAR","chosen_key":"VARCHAR","rejected_key":"VARCHAR"}]')
                ELSE list_transform(from_json(s.payload->'$.pair_keys', '["VARCHAR"]'),
                     lambda k: {'pair_key': k, 'kind': split_part(k, ':', 1),
                                'chosen_key': string_split(k, ':')[2] || ':'
                                              || string_split(k, ':')[3],
                                'rejected_key': string_split(k, ':')[4] || ':'
                                                || string_split(k, ':')[5]})
           END AS used
    FROM events s
    JOIN events f ON f.event_type = 'TrainingFinished'
                 AND f.payload->>'$.attempt' = s.payload->>'$.attempt'
    WHERE s.event_type = 'TrainingStarted'
),
used AS (
    SELECT run_id, iteration, training_key, unnest(used) AS p FROM started
)
SELECT c.run_id, c.checkpoint_key, c.for_iteration, c.model_sha256, u.iteration,
       u.p.pair_key AS pair_key, u.p.kind AS kind, u.p.chosen_key AS chosen_key,
       u.p.rejected_key AS rejected_key
FROM checkpoints c
JOIN used u ON u.training_key = c.training_key AND u.run_id = c.run_id;
