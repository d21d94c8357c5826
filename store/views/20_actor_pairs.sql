-- Actor pairs with length control (Meta-Rewarding §3.2). Per prompt, with S_max/S_min the
-- highest/lowest mean scores (actor_scores: under actor_judging = 'pairwise' the
-- Bradley-Terry strengths of the responses' comparisons): chosen = the shortest response scoring in
-- [(1-ρ)S_max + ρS_min, S_max]; rejected = the longest in [S_min, (1-ρ)S_min + ρS_max].
-- No pair when all scores tie, when the chosen band's shortest response is longer than the
-- cap, or when chosen would not outscore rejected (possible only for ρ ≥ 0.5).
-- Arguments left NULL take the iteration's settings; a cap ≤ 0 means no cap.

CREATE OR REPLACE MACRO actor_pairs_with(rho := NULL, max_chosen_chars := NULL) AS TABLE
WITH s AS (
    SELECT s.*,
           coalesce(rho, st.rho, 0.0) AS eff_rho,
           coalesce(max_chosen_chars, st.max_chosen_chars, 0) AS eff_cap
    FROM actor_scores s
    LEFT JOIN iteration_settings st USING (run_id, iteration)
    WHERE s.valid_count > 0
),
scored AS (
    SELECT s.*, b.s_max, b.s_min
    FROM s
    JOIN (SELECT run_id, iteration, prompt_key, max(mean_score) AS s_max,
                 min(mean_score) AS s_min
          FROM s GROUP BY ALL) b USING (run_id, iteration, prompt_key)
),
picked AS (  -- per prompt, aggregates rather than windows (a window sorts every response):
             -- chosen = first by (chars, score descending, sample_index) in the top band,
             -- rejected = first by (chars descending, score, sample_index) in the bottom band
    SELECT run_id, iteration, prompt_key, s_max, s_min, eff_rho, eff_cap,
           arg_min({'key': response_key, 'score': mean_score, 'chars': response_chars},
                   {'chars': response_chars, 'score': -mean_score, 'sample': sample_index})
               FILTER (WHERE mean_score >= (1 - eff_rho) * s_max + eff_rho * s_min - 1e-9
                         AND (eff_cap <= 0 OR response_chars <= eff_cap)) AS c,
           arg_min({'key': response_key, 'score': mean_score, 'chars': response_chars},
                   {'chars': -response_chars, 'score': mean_score, 'sample': sample_index})
               FILTER (WHERE mean_score <= (1 - eff_rho) * s_min + eff_rho * s_max + 1e-9) AS r
    FROM scored
    WHERE s_max > s_min
    GROUP BY run_id, iteration, prompt_key, s_max, s_min, eff_rho, eff_cap
)
SELECT run_id, iteration, prompt_key,
       c.key AS chosen_key, r.key AS rejected_key,
       c.score AS chosen_score, r.score AS rejected_score,
       c.chars AS chosen_chars, r.chars AS rejected_chars,
       s_max, s_min, eff_rho AS rho, eff_cap AS max_chosen_chars
FROM picked
WHERE c.key <> r.key AND c.score > r.score;

CREATE OR REPLACE VIEW actor_pairs AS
SELECT * FROM actor_pairs_with();
