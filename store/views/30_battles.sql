-- Meta-judge battles with position-bias correction (Meta-Rewarding §3.3).
-- r_mn is the verdict when judgement m is shown first (A) and n second (B): +1 if m wins,
-- -1 if n wins, 0 for a tie or an unparseable verdict. win_1st / win_2nd count verdicts won
-- by the first / second shown judgement, per response (default) or over the whole iteration.
-- ω1 = win_2nd / (win_1st + win_2nd), ω2 = win_1st / (win_1st + win_2nd),
-- B_mn = ω1·[r_mn = +1] + ω2·[r_nm = -1]. One row per ordered pair (m, n).
-- Under meta_scoring = 'expected' a verdict carries p = P(first shown is better), and B_mn is
-- the soft outcome of both orders, (p_mn + 1 − p_nm) / 2, which cancels a constant position
-- preference (B_mn + B_nm = 1); with one order only, that order's p (p_mn, or 1 − p_nm).

CREATE OR REPLACE MACRO judge_battles_with(weights_scope := NULL) AS TABLE
WITH pairs AS (  -- each unordered pair of a meta-judged response once, the latest verdict of
                 -- each order
    SELECT mv.run_id, mv.iteration, mv.response_key, any_value(mv.prompt_key) AS prompt_key,
           least(mv.first_key, mv.second_key) AS j1, greatest(mv.first_key, mv.second_key) AS j2,
           arg_max(mv.r, mv.seq) FILTER (WHERE mv.first_key < mv.second_key) AS r12,
           arg_max(mv.r, mv.seq) FILTER (WHERE mv.first_key > mv.second_key) AS r21,
           arg_max(mv.verdict_key, mv.seq) FILTER (WHERE mv.first_key < mv.second_key) AS v12,
           arg_max(mv.verdict_key, mv.seq) FILTER (WHERE mv.first_key > mv.second_key) AS v21,
           arg_max(mv.p_first, mv.seq) FILTER (WHERE mv.first_key < mv.second_key) AS p12,
           arg_max(mv.p_first, mv.seq) FILTER (WHERE mv.first_key > mv.second_key) AS p21
    FROM meta_verdicts mv
    SEMI JOIN meta_targets t ON t.response_key = mv.response_key AND t.run_id = mv.run_id
                            AND t.iteration = mv.iteration
    GROUP BY ALL
),
scoped AS (
    SELECT p.*, CASE WHEN coalesce(weights_scope, st.weights_scope, 'response') = 'iteration'
                     THEN '' ELSE p.response_key END AS scope_key
    FROM pairs p
    LEFT JOIN iteration_settings st USING (run_id, iteration)
),
counts AS (  -- verdicts won by the first / second shown judgement, each order counted once
    SELECT run_id, iteration, scope_key,
           count(*) FILTER (WHERE r12 = 1) + count(*) FILTER (WHERE r21 = 1) AS win_1st,
           count(*) FILTER (WHERE r12 = -1) + count(*) FILTER (WHERE r21 = -1) AS win_2nd
    FROM scoped GROUP BY ALL
),
ordered AS (
    SELECT run_id, iteration, response_key, prompt_key, scope_key, j1 AS judgement_m,
           j2 AS judgement_n, v12 AS verdict_mn_key, v21 AS verdict_nm_key, r12 AS r_mn,
           r21 AS r_nm, p12 AS p_mn, p21 AS p_nm
    FROM scoped
    UNION ALL
    SELECT run_id, iteration, response_key, prompt_key, scope_key, j2, j1, v21, v12, r21, r12,
           p21, p12
    FROM scoped
)
SELECT p.run_id, p.iteration, p.prompt_key, p.response_key, p.judgement_m, p.judgement_n,
       p.verdict_mn_key, p.verdict_nm_key, p.r_mn, p.r_nm, c.win_1st, c.win_2nd,
       CASE WHEN c.win_1st + c.win_2nd > 0 THEN c.win_2nd / (c.win_1st + c.win_2nd) END AS omega1,
       CASE WHEN c.win_1st + c.win_2nd > 0 THEN c.win_1st / (c.win_1st + c.win_2nd) END AS omega2,
       CASE WHEN p.p_mn IS NOT NULL OR p.p_nm IS NOT NULL
            THEN (coalesce(p.p_mn, 1 - p.p_nm) + 1 - coalesce(p.p_nm, 1 - p.p_mn)) / 2
            ELSE coalesce(CASE WHEN p.r_mn = 1 THEN c.win_2nd / (c.win_1st + c.win_2nd)
                               ELSE 0 END, 0)
               + coalesce(CASE WHEN p.r_nm = -1 THEN c.win_1st / (c.win_1st + c.win_2nd)
                               ELSE 0 END, 0)
       END AS b_mn, p.p_mn, p.p_nm
FROM ordered p
JOIN counts c USING (run_id, iteration, scope_key);

CREATE OR REPLACE VIEW judge_battles AS
SELECT * FROM judge_battles_with();

-- Bradley–Terry strengths ε of the eligible judgements of each meta-judged response, fitted by
-- mrtui_bt (see store/elo.py) from the sparse weighted wins; elo is the same ranking on the
-- familiar 400/ln(10) scale: 1000 + 400·ε/ln 10, so a difference Δelo means P(win) =
-- 1 / (1 + 10^(−Δelo/400)). bt_prior_games is the prior strength of the fit (virtual games per
-- judgement): the argument, else the iteration's setting, else 1 (logs from before the setting).
CREATE OR REPLACE MACRO judgement_elo_with(weights_scope := NULL,
                                           bt_prior_games := NULL) AS TABLE
WITH b AS (
    SELECT * FROM judge_battles_with(weights_scope := weights_scope)
),
jj AS (
    SELECT j.run_id, j.iteration, j.prompt_key, j.response_key, j.judgement_key, j.judge_index,
           j.score, j.judgement_chars, j.judgement, j.template_sha256,
           row_number() OVER (PARTITION BY j.response_key
                              ORDER BY j.judge_index, j.judgement_key) AS idx,
           count(*) OVER (PARTITION BY j.response_key) AS n
    FROM judgements j
    SEMI JOIN (SELECT DISTINCT response_key FROM b) r ON r.response_key = j.response_key
    WHERE j.eligible
),
cells AS (  -- one weighted-win cell (m beat n with weight b_mn) per ordered pair
    SELECT m.response_key, m.idx AS i, n.idx AS k, b.b_mn AS w
    FROM b
    JOIN jj m ON m.judgement_key = b.judgement_m
    JOIN jj n ON n.judgement_key = b.judgement_n
    WHERE b.b_mn > 0
),
priors AS (
    SELECT r.response_key, r.n,
           coalesce(bt_prior_games, st.bt_prior_games, 1.0)::DOUBLE AS prior_games
    FROM (SELECT DISTINCT run_id, iteration, response_key, n FROM jj) r
    LEFT JOIN iteration_settings st USING (run_id, iteration)
),
fits AS (
    SELECT r.response_key, r.prior_games,
           mrtui_bt(r.n::INTEGER, coalesce(c.i, []::INTEGER[]), coalesce(c.k, []::INTEGER[]),
                    coalesce(c.w, []::DOUBLE[]), r.prior_games) AS eps
    FROM priors r
    LEFT JOIN (SELECT response_key, list(i::INTEGER) AS i, list(k::INTEGER) AS k,
                      list(w) AS w
               FROM cells GROUP BY response_key) c USING (response_key)
),
wins AS (
    SELECT judgement_m AS judgement_key, sum(b_mn) AS weighted_wins,
           count(*) FILTER (WHERE r_mn = 1) + count(*) FILTER (WHERE r_nm = -1) AS wins
    FROM b GROUP BY ALL
)
SELECT jj.run_id, jj.iteration, jj.prompt_key, jj.response_key, jj.judgement_key,
       jj.judge_index, jj.score, jj.judgement_chars,
       coalesce(w.wins, 0) AS wins, coalesce(w.weighted_wins, 0.0) AS weighted_wins,
       f.eps[jj.idx] AS epsilon, 1000 + 400 * f.eps[jj.idx] / ln(10) AS elo, jj.judgement,
       jj.template_sha256, f.prior_games AS bt_prior_games
FROM jj
JOIN fits f USING (response_key)
LEFT JOIN wins w USING (judgement_key);

CREATE OR REPLACE VIEW judgement_elo AS
SELECT * FROM judgement_elo_with();
