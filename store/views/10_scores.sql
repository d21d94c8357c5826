-- Per-response scores (valid judgements only) and the response each prompt meta-judges.

CREATE OR REPLACE VIEW response_scores AS
SELECT r.run_id, r.iteration, r.prompt_key, r.response_key, r.sample_index, r.response_chars,
       count(j.judgement_key) AS judgement_count,
       count(j.score)         AS valid_count,
       avg(j.score)           AS mean_score,
       var_pop(j.score)       AS score_variance,
       min(j.score)           AS min_score,
       max(j.score)           AS max_score,
       count(*) FILTER (WHERE j.eligible) AS eligible_count
FROM responses r
LEFT JOIN judgements j ON j.response_key = r.response_key
GROUP BY ALL;

-- The single response per prompt whose valid scores vary most (variance 0: no judge pair),
-- among those with at least two judgements eligible for meta-judging.
CREATE OR REPLACE VIEW meta_targets AS
SELECT *
FROM response_scores
WHERE eligible_count >= 2 AND score_variance > 0
QUALIFY row_number() OVER (PARTITION BY run_id, iteration, prompt_key
                           ORDER BY score_variance DESC, sample_index, response_key) = 1;
