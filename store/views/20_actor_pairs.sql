-- Actor pairs with length control (Meta-Rewarding §3.2). Per prompt, with S_max/S_min the
-- highest/lowest mean scores (actor_scores: under actor_judging = 'pairwise' the
-- Bradley-Terry strengths of the responses' comparisons): chosen = the shortest response scoring in
-- [(1-ρ)S_max + ρS_min, S_max]; rejected = the longest in [S_min, (1-ρ)S_min + ρS_max].
-- No pair when all scores tie, when the chosen band's shortest response is longer than the
-- cap, or when chosen would not outscore rejected (possible only for ρ ≥ 0.5).
-- Arguments left NULL take the iteration's settings; a cap ≤ 0 means no cap.

CREATE OR REPLACE MACRO actor_pairs_with(rho := NULL, max_chosen_chars := NULL) AS TABLE
WITH scored AS (
    SELECT s.*,
           coalesce(rho, st.rho, 0.0) AS eff_rho,
           coalesce(max_chosen_chars, st.max_chosen_chars, 0) AS eff_cap,
           max(s.mean_score) OVER w AS s_max,
           min(s.mean_score) OVER w AS s_min
    FROM actor_scores s
    LEFT JOIN iteration_settings st USING (run_id, iteration)
    WHERE s.valid_count > 0
    WINDOW w AS (PARTITION BY s.run_id, s.iteration, s.prompt_key)
),
chosen AS (
    SELECT * FROM scored
    WHERE s_max > s_min
      AND mean_score >= (1 - eff_rho) * s_max + eff_rho * s_min - 1e-9
      AND (eff_cap <= 0 OR response_chars <= eff_cap)
    QUALIFY row_number() OVER (PARTITION BY run_id, iteration, prompt_key
                               ORDER BY response_chars, mean_score DESC, sample_index) = 1
),
rejected AS (
    SELECT * FROM scored
    WHERE s_max > s_min
      AND mean_score <= (1 - eff_rho) * s_min + eff_rho * s_max + 1e-9
    QUALIFY row_number() OVER (PARTITION BY run_id, iteration, prompt_key
                               ORDER BY response_chars DESC, mean_score, sample_index) = 1
)
SELECT c.run_id, c.iteration, c.prompt_key,
       c.response_key AS chosen_key, r.response_key AS rejected_key,
       c.mean_score AS chosen_score, r.mean_score AS rejected_score,
       c.response_chars AS chosen_chars, r.response_chars AS rejected_chars,
       c.s_max, c.s_min, c.eff_rho AS rho, c.eff_cap AS max_chosen_chars
FROM chosen c
JOIN rejected r USING (run_id, iteration, prompt_key)
WHERE c.response_key <> r.response_key AND c.mean_score > r.mean_score;

CREATE OR REPLACE VIEW actor_pairs AS
SELECT * FROM actor_pairs_with();
