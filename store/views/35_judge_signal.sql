-- How much the judge's scores say, per iteration: `tied_prompts` counts the prompts whose
-- scored responses (two or more) all have the same mean score, so they give no actor pair
-- (sampled 0-5 scores tie often; expected scores rarely); `score_length_corr` is the Pearson
-- correlation of a response's mean score with its length in characters, and
-- `score_per_100_chars` the least-squares slope (the paper's worry: a judge that rewards
-- length makes responses grow).
-- Under meta_scoring = 'expected': `position_logit` is the meta-judge's mean log-odds for the
-- judgement shown first (0: no position preference; p clipped to [1e-6, 1 - 1e-6]), and
-- `calibrated_consistency` the share of pairs judged in both orders whose two verdicts name
-- the same judgement once that constant preference is taken out of each (logit p −
-- position_logit > 0 picks the first shown). Plain position consistency (iteration_health)
-- counts the raw verdicts, which a judge with a strong position preference never makes agree.
CREATE OR REPLACE VIEW judge_signal AS
WITH per_prompt AS (
    SELECT run_id, iteration, prompt_key, count(*) AS scored,
           max(mean_score) - min(mean_score) < 1e-9 AS tied
    FROM response_scores WHERE valid_count > 0 GROUP BY ALL
),
prompts AS (
    SELECT run_id, iteration, count(*) FILTER (WHERE scored >= 2) AS prompts,
           count(*) FILTER (WHERE scored >= 2 AND tied) AS tied_prompts
    FROM per_prompt GROUP BY ALL
),
scores AS (
    SELECT run_id, iteration, count(*) AS scored_responses,
           corr(mean_score, response_chars) AS score_length_corr,
           100 * regr_slope(mean_score, response_chars) AS score_per_100_chars
    FROM response_scores WHERE valid_count > 0 GROUP BY ALL
),
bias AS (
    SELECT run_id, iteration,
           avg(ln(greatest(least(p_first, 1 - 1e-6), 1e-6)
               / (1 - greatest(least(p_first, 1 - 1e-6), 1e-6)))) AS position_logit
    FROM meta_verdicts WHERE p_first IS NOT NULL GROUP BY ALL
),
calibrated AS (
    SELECT b.run_id, b.iteration, count(*) AS prob_pairs,
           avg(CASE WHEN (ln(b.p_mn / (1 - b.p_mn)) > s.position_logit)
                         <> (ln(b.p_nm / (1 - b.p_nm)) > s.position_logit)
                    THEN 1.0 ELSE 0.0 END) AS calibrated_consistency
    FROM (SELECT run_id, iteration,
                 greatest(least(p_mn, 1 - 1e-6), 1e-6) AS p_mn,
                 greatest(least(p_nm, 1 - 1e-6), 1e-6) AS p_nm
          FROM judge_battles
          WHERE judgement_m < judgement_n AND p_mn IS NOT NULL AND p_nm IS NOT NULL) b
    JOIN bias s USING (run_id, iteration)
    GROUP BY ALL
)
SELECT s.run_id, s.iteration, s.scored_responses, p.prompts AS scored_prompts, p.tied_prompts,
       s.score_length_corr, s.score_per_100_chars, b.position_logit, c.prob_pairs,
       c.calibrated_consistency
FROM scores s
JOIN prompts p USING (run_id, iteration)
LEFT JOIN bias b USING (run_id, iteration)
LEFT JOIN calibrated c USING (run_id, iteration);
