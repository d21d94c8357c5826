-- The judge checked on a labelled preference set before an iteration (setting judge_check):
-- one row per check, the latest for each (run, iteration, labels, model). Rates are shares of
-- `n` labelled pairs with 95% bootstrap intervals; `action` is what the run did: 'continue',
-- 'stop' (no better than chance) or 'actor' (trained on actor pairs only).
CREATE OR REPLACE VIEW judge_checks AS
SELECT run_id, iteration, key AS check_key, c.labels, c.labels_sha256, c.model_id,
       c.model_sha256, c.n,
       (c.result->>'$.pointwise_accuracy')::DOUBLE AS pointwise_accuracy,
       (c.result->>'$.intervals.pointwise_accuracy[0]')::DOUBLE AS pointwise_lo,
       (c.result->>'$.intervals.pointwise_accuracy[1]')::DOUBLE AS pointwise_hi,
       (c.result->>'$.pairwise_accuracy')::DOUBLE AS pairwise_accuracy,
       (c.result->>'$.intervals.pairwise_accuracy[0]')::DOUBLE AS pairwise_lo,
       (c.result->>'$.intervals.pairwise_accuracy[1]')::DOUBLE AS pairwise_hi,
       (c.result->>'$.position_consistency')::DOUBLE AS position_consistency,
       (c.result->>'$.ties')::DOUBLE AS ties,
       (c.result->>'$.first_preference')::DOUBLE AS first_preference,
       c.better_than_chance, c.action, c.result, seq, created_at
FROM (SELECT *, from_json(payload, '{"labels":"VARCHAR","labels_sha256":"VARCHAR",
        "model_id":"VARCHAR","model_sha256":"VARCHAR","n":"INTEGER","result":"JSON",
        "better_than_chance":"BOOLEAN","action":"VARCHAR"}') AS c
      FROM events WHERE event_type = 'JudgeChecked')
QUALIFY row_number() OVER (PARTITION BY run_id, iteration, c.labels_sha256, c.model_sha256
                           ORDER BY seq DESC) = 1;
