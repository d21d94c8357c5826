-- Judge pairs (Meta-Rewarding §3.3): per meta-judged response, chosen = the judgement with
-- the highest Bradley–Terry strength ε, rejected = the lowest. NULL arguments take the
-- iteration's settings; a cap ≤ 0: no cap.
--
-- Candidates are the eligible judgements (judgements.eligible) of each response with at least
-- one battle, with ε from judgement_elo_with (elo = 1000 + 400·ε/ln 10 orders them the same;
-- a judgement without any weighted win or loss, b_mn > 0, keeps ε = 0 and competes like the
-- others). Strengths are compared as round(ε, 6), about 2e-4 Elo points: values equal after
-- rounding count as equal, which absorbs the fit's rounding error (values a hair apart on
-- either side of a rounding boundary still differ). top / bottom are the largest / smallest
-- rounded ε; chosen / rejected are a judgement at the top / bottom, and chosen_epsilon /
-- rejected_epsilon the unrounded max / min. drop_reason says why a candidate is not a pair,
-- checked in this order:
--   'elo_tie'          more than one judgement shares the top or the bottom, or every
--                      judgement is at the top (a single eligible judgement included): the
--                      choice would be arbitrary, so no pair (such a row still names as
--                      chosen / rejected the tied judgement with the lowest judge_index,
--                      judgement_key settling the rest: the same in every query)
--   'chosen_too_long'  the chosen judgement is longer than judge_max_chars characters
--   'same_score'       drop_same_score is on and both judgements give the same score
-- NULL: a training pair (judge_pairs). bt_prior_games is the prior strength the fit used.

CREATE OR REPLACE MACRO judge_pair_candidates_with(judge_max_chars := NULL,
                                                   drop_same_score := NULL,
                                                   weights_scope := NULL,
                                                   bt_prior_games := NULL) AS TABLE
WITH e AS (
    SELECT *, round(epsilon, 6) AS e6
    FROM judgement_elo_with(weights_scope := weights_scope, bt_prior_games := bt_prior_games)
),
per_response AS (  -- one pass (a window over e would sort the judgements' texts)
    SELECT run_id, iteration, prompt_key, response_key,
           count(*) AS n_judgements,
           list(e6) AS e6s, max(e6) AS top, min(e6) AS bottom,
           -- among tied judgements the lowest judge_index, so every plan (the TUI's
           -- scoped copy included) names the same ones
           arg_max({'key': judgement_key, 'score': score, 'chars': judgement_chars,
                    'text': judgement, 'template': template_sha256},
                   {'e': e6, 'first': -judge_index, 'key': judgement_key}) AS c,
           arg_min({'key': judgement_key, 'score': score, 'chars': judgement_chars,
                    'text': judgement, 'template': template_sha256},
                   {'e': e6, 'first': judge_index, 'key': judgement_key}) AS r,
           max(epsilon) AS chosen_epsilon, min(epsilon) AS rejected_epsilon
    FROM e GROUP BY ALL
),
g AS (  -- how many judgements share the top and the bottom
    SELECT * EXCLUDE (e6s, top, bottom),
           length(list_filter(e6s, lambda x: x = top)) AS n_top,
           length(list_filter(e6s, lambda x: x = bottom)) AS n_bottom
    FROM per_response
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
       g.c.template AS template_sha256,
       coalesce(bt_prior_games, st.bt_prior_games, 1.0)::DOUBLE AS bt_prior_games
FROM g
LEFT JOIN iteration_settings st ON st.run_id = g.run_id AND st.iteration = g.iteration;

CREATE OR REPLACE VIEW judge_pair_candidates AS
SELECT * FROM judge_pair_candidates_with();

CREATE OR REPLACE MACRO judge_pairs_with(judge_max_chars := NULL, drop_same_score := NULL,
                                         weights_scope := NULL,
                                         bt_prior_games := NULL) AS TABLE
SELECT * EXCLUDE (drop_reason)
FROM judge_pair_candidates_with(judge_max_chars := judge_max_chars,
                                drop_same_score := drop_same_score,
                                weights_scope := weights_scope,
                                bt_prior_games := bt_prior_games)
WHERE drop_reason IS NULL;

CREATE OR REPLACE VIEW judge_pairs AS
SELECT * FROM judge_pairs_with();
