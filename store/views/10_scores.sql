-- Per-response scores (valid judgements only) and the response each prompt meta-judges.

CREATE OR REPLACE VIEW response_scores AS
SELECT r.run_id, r.iteration, r.prompt_key, r.response_key, r.sample_index, r.response_chars,
       coalesce(j.judgement_count, 0) AS judgement_count,
       coalesce(j.valid_count, 0)     AS valid_count,
       j.mean_score, j.score_variance, j.min_score, j.max_score,
       coalesce(j.eligible_count, 0)  AS eligible_count
FROM responses r
LEFT JOIN (  -- grouped by the response key alone, before the join (half the time of grouping
             -- the joined rows by every response column)
    SELECT response_key,
           count(judgement_key) AS judgement_count,
           count(score)         AS valid_count,
           avg(score)           AS mean_score,
           var_pop(score)       AS score_variance,
           min(score)           AS min_score,
           max(score)           AS max_score,
           count(*) FILTER (WHERE eligible) AS eligible_count
    FROM judgements
    GROUP BY response_key
) j ON j.response_key = r.response_key;

-- The single response per prompt whose valid scores vary most (variance 0: no judge pair),
-- among those with at least two judgements eligible for meta-judging.
CREATE OR REPLACE VIEW meta_targets AS
SELECT *
FROM response_scores
WHERE eligible_count >= 2 AND score_variance > 0
QUALIFY row_number() OVER (PARTITION BY run_id, iteration, prompt_key
                           ORDER BY score_variance DESC, sample_index, response_key) = 1;
