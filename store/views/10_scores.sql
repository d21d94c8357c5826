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

-- How much the judge's scores say, per iteration: `tied_prompts` counts the prompts whose
-- scored responses (two or more) all have the same mean score, so they give no actor pair
-- (sampled 0-5 scores tie often; expected scores rarely); `score_length_corr` is the Pearson
-- correlation of a response's mean score with its length in characters, and
-- `score_per_100_chars` the least-squares slope (the paper's worry: a judge that rewards
-- length makes responses grow).
CREATE OR REPLACE VIEW judge_signal AS
WITH per_prompt AS (
    SELECT run_id, iteration, prompt_key, count(*) AS scored,
           max(mean_score) - min(mean_score) < 1e-9 AS tied
    FROM response_scores WHERE valid_count > 0 GROUP BY ALL
)
SELECT s.run_id, s.iteration, count(*) AS scored_responses,
       any_value(pp.prompts) AS scored_prompts, any_value(pp.tied_prompts) AS tied_prompts,
       corr(s.mean_score, s.response_chars) AS score_length_corr,
       100 * regr_slope(s.mean_score, s.response_chars) AS score_per_100_chars
FROM response_scores s
JOIN (SELECT run_id, iteration, count(*) FILTER (WHERE scored >= 2) AS prompts,
             count(*) FILTER (WHERE scored >= 2 AND tied) AS tied_prompts
      FROM per_prompt GROUP BY ALL) pp USING (run_id, iteration)
WHERE s.valid_count > 0
GROUP BY s.run_id, s.iteration;
