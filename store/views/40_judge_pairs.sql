-- Judge pairs (Meta-Rewarding §3.3): per meta-judged response, chosen = the judgement with
-- the highest ε, rejected = the lowest. drop_reason says why a candidate is not a pair:
-- 'elo_tie' (the top or bottom ε is shared, so the choice is ambiguous), 'chosen_too_long'
-- (chosen judgement over the character cap), 'same_score' (both give the same score, when
-- drop_same_score is on). NULL arguments take the iteration's settings; a cap ≤ 0: no cap.

CREATE OR REPLACE MACRO judge_pair_candidates_with(judge_max_chars := NULL,
                                                   drop_same_score := NULL,
                                                   weights_scope := NULL) AS TABLE
WITH e AS (
    SELECT *, round(epsilon, 6) AS e6,
           max(round(epsilon, 6)) OVER (PARTITION BY response_key) AS top,
           min(round(epsilon, 6)) OVER (PARTITION BY response_key) AS bottom
    FROM judgement_elo_with(weights_scope := weights_scope)
),
g AS (
    SELECT run_id, iteration, prompt_key, response_key,
           count(*) AS n_judgements,
           count(*) FILTER (WHERE e6 = top) AS n_top,
           count(*) FILTER (WHERE e6 = bottom) AS n_bottom,
           arg_max({'key': judgement_key, 'score': score, 'chars': judgement_chars,
                    'text': judgement, 'template': template_sha256}, e6) AS c,
           arg_min({'key': judgement_key, 'score': score, 'chars': judgement_chars,
                    'text': judgement, 'template': template_sha256}, e6) AS r,
           max(epsilon) AS chosen_epsilon, min(epsilon) AS rejected_epsilon
    FROM e GROUP BY ALL
)
SELECT g.run_id, g.iteration, g.prompt_key, g.response_key, g.n_judgements,
       g.c.key AS chosen_key, g.r.key AS rejected_key, g.chosen_epsilon, g.rejected_epsilon,
       g.c.score AS chosen_score, g.r.score AS rejected_score,
       g.c.chars AS chosen_chars, g.r.chars AS rejected_chars,
       coalesce(judge_max_chars, st.judge_max_chars, 0) AS judge_max_chars,
       coalesce(drop_same_score, st.drop_same_score, false) AS drop_same_score,
       CASE
           WHEN g.n_top > 1 OR g.n_bottom > 1 OR g.n_top = g.n_judgements THEN 'elo_tie'
           WHEN coalesce(judge_max_chars, st.judge_max_chars, 0) > 0
                AND g.c.chars > coalesce(judge_max_chars, st.judge_max_chars, 0)
               THEN 'chosen_too_long'
           WHEN coalesce(drop_same_score, st.drop_same_score, false) AND g.c.score = g.r.score
               THEN 'same_score'
       END AS drop_reason,
       g.c.text AS chosen_judgement, g.r.text AS rejected_judgement,
       g.c.template AS template_sha256
FROM g
LEFT JOIN iteration_settings st ON st.run_id = g.run_id AND st.iteration = g.iteration;

CREATE OR REPLACE VIEW judge_pair_candidates AS
SELECT * FROM judge_pair_candidates_with();

CREATE OR REPLACE MACRO judge_pairs_with(judge_max_chars := NULL, drop_same_score := NULL,
                                         weights_scope := NULL) AS TABLE
SELECT * EXCLUDE (drop_reason)
FROM judge_pair_candidates_with(judge_max_chars := judge_max_chars,
                                drop_same_score := drop_same_score,
                                weights_scope := weights_scope)
WHERE drop_reason IS NULL;

CREATE OR REPLACE VIEW judge_pairs AS
SELECT * FROM judge_pairs_with();
