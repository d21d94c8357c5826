-- Per-item outcomes of evaluated models, for paired comparisons (`mrtui eval compare`,
-- store/paired.py): one row per (run, iteration, model, suite, metric, judge, item, unit) with
-- the number the metric averages over items. Two models are compared on the items (and units)
-- both have. `unit` is the turn for MT-Bench (a question's grades are averaged over the turns
-- both models have) and 0 elsewhere; a value is the mean over the unit's samples. `pass_fail`:
-- the values are pass/fail (1/0), compared with McNemar's test. Only item-level metrics are
-- here: AlpacaEval's length-controlled win rate (a fit over all items) and IFEval's
-- instruction-level accuracy (a ratio over prompts of several instructions) are not per item.
-- The judge is NULL for rule checks and for judge-ifeval (the evaluated model judges itself).
CREATE OR REPLACE VIEW eval_item_outcomes AS
WITH judged AS (
    SELECT run_id, iteration, model_id, model_sha256, suite,
           CASE suite WHEN 'mt_bench' THEN 'score' ELSE 'win_rate' END AS metric,
           judge_model_id, judge_sha256, item_key, item_id, turn AS unit, outcome_value AS value,
           false AS pass_fail
    FROM eval_samples
    WHERE suite IN ('alpaca_eval', 'mt_bench', 'arena_hard') AND judge_sha256 IS NOT NULL
      AND outcome_value IS NOT NULL),
checked AS (
    SELECT run_id, iteration, model_id, model_sha256, suite, m.metric, NULL AS judge_model_id,
           NULL AS judge_sha256, item_key, item_id, turn AS unit, m.value, true AS pass_fail
    FROM (SELECT *, unnest([{'metric': 'prompt_strict', 'value': passed_strict::DOUBLE},
                            {'metric': 'prompt_loose', 'value': passed_loose::DOUBLE}]) AS m
          FROM eval_samples WHERE suite = 'ifeval')
    WHERE m.value IS NOT NULL),
self_judged AS (
    SELECT p.run_id, p.iteration, g.model_id, p.model_sha256, 'judge-ifeval' AS suite, m.metric,
           NULL AS judge_model_id, NULL AS judge_sha256, p.item_key, g.item_id, 0 AS unit,
           m.value, false AS pass_fail
    FROM (SELECT *, unnest([{'metric': 'rubric_accuracy', 'value': rubric_correct},
                            {'metric': 'pairwise_accuracy', 'value': pairwise_correct}]) AS m
          FROM eval_judge_pairs) p
    JOIN (SELECT run_id, iteration, model_sha256, item_key, any_value(item_id) AS item_id,
                 any_value(model_id) AS model_id
          FROM eval_generations WHERE suite = 'judge-ifeval'
          GROUP BY ALL) g USING (run_id, iteration, model_sha256, item_key)
    WHERE m.value IS NOT NULL)
SELECT run_id, iteration, any_value(model_id) AS model_id, model_sha256, suite, metric,
       any_value(judge_model_id) AS judge_model_id, judge_sha256, item_key, any_value(item_id)
           AS item_id, unit, avg(value) AS value, bool_and(pass_fail) AND count(*) = 1 AS pass_fail,
       count(*) AS samples
FROM (SELECT * FROM judged UNION ALL SELECT * FROM checked UNION ALL SELECT * FROM self_judged)
GROUP BY run_id, iteration, model_sha256, suite, metric, judge_sha256, item_key, unit;
