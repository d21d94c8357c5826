-- Meta-judge battles with position-bias correction (Meta-Rewarding §3.3).
-- r_mn is the verdict when judgement m is shown first (A) and n second (B): +1 if m wins,
-- -1 if n wins, 0 for a tie or an unparseable verdict. win_1st / win_2nd count verdicts won
-- by the first / second shown judgement, per response (default) or over the whole iteration.
-- ω1 = win_2nd / (win_1st + win_2nd), ω2 = win_1st / (win_1st + win_2nd),
-- B_mn = ω1·[r_mn = +1] + ω2·[r_nm = -1]. One row per ordered pair (m, n).

CREATE OR REPLACE MACRO judge_battles_with(weights_scope := NULL) AS TABLE
WITH v AS (
    SELECT mv.*, coalesce(weights_scope, st.weights_scope, 'response') AS scope
    FROM meta_verdicts mv
    JOIN meta_targets t USING (run_id, iteration, response_key)
    LEFT JOIN iteration_settings st USING (run_id, iteration)
    QUALIFY row_number() OVER (PARTITION BY mv.response_key, mv.first_key, mv.second_key
                               ORDER BY mv.seq DESC) = 1
),
scoped AS (
    SELECT *, CASE WHEN scope = 'iteration' THEN '' ELSE response_key END AS scope_key
    FROM v
),
counts AS (
    SELECT run_id, iteration, scope_key,
           count(*) FILTER (WHERE r = 1)  AS win_1st,
           count(*) FILTER (WHERE r = -1) AS win_2nd
    FROM scoped GROUP BY ALL
),
pairs AS (  -- each unordered pair once, with the verdict of each order
    SELECT run_id, iteration, response_key, prompt_key, scope_key,
           least(first_key, second_key) AS j1, greatest(first_key, second_key) AS j2,
           any_value(r) FILTER (WHERE first_key < second_key) AS r12,
           any_value(r) FILTER (WHERE first_key > second_key) AS r21,
           any_value(verdict_key) FILTER (WHERE first_key < second_key) AS v12,
           any_value(verdict_key) FILTER (WHERE first_key > second_key) AS v21
    FROM scoped GROUP BY ALL
),
ordered AS (
    SELECT run_id, iteration, response_key, prompt_key, scope_key, j1 AS judgement_m,
           j2 AS judgement_n, v12 AS verdict_mn_key, v21 AS verdict_nm_key, r12 AS r_mn,
           r21 AS r_nm
    FROM pairs
    UNION ALL
    SELECT run_id, iteration, response_key, prompt_key, scope_key, j2, j1, v21, v12, r21, r12
    FROM pairs
)
SELECT p.run_id, p.iteration, p.prompt_key, p.response_key, p.judgement_m, p.judgement_n,
       p.verdict_mn_key, p.verdict_nm_key, p.r_mn, p.r_nm, c.win_1st, c.win_2nd,
       CASE WHEN c.win_1st + c.win_2nd > 0 THEN c.win_2nd / (c.win_1st + c.win_2nd) END AS omega1,
       CASE WHEN c.win_1st + c.win_2nd > 0 THEN c.win_1st / (c.win_1st + c.win_2nd) END AS omega2,
       coalesce(CASE WHEN p.r_mn = 1 THEN c.win_2nd / (c.win_1st + c.win_2nd) ELSE 0 END, 0)
     + coalesce(CASE WHEN p.r_nm = -1 THEN c.win_1st / (c.win_1st + c.win_2nd) ELSE 0 END, 0)
           AS b_mn
FROM ordered p
JOIN counts c USING (run_id, iteration, scope_key);

CREATE OR REPLACE VIEW judge_battles AS
SELECT * FROM judge_battles_with();

-- Bradley–Terry strengths ε of the valid judgements of each meta-judged response, fitted by
-- mrtui_bt (see store/elo.py); elo is the same ranking on the familiar 400/ln(10) scale.
CREATE OR REPLACE MACRO judgement_elo_with(weights_scope := NULL) AS TABLE
WITH b AS (
    SELECT * FROM judge_battles_with(weights_scope := weights_scope)
),
jj AS (
    SELECT j.run_id, j.iteration, j.prompt_key, j.response_key, j.judgement_key, j.judge_index,
           j.score, j.judgement_chars,
           row_number() OVER (PARTITION BY j.response_key
                              ORDER BY j.judge_index, j.judgement_key) AS idx,
           count(*) OVER (PARTITION BY j.response_key) AS n
    FROM judgements j
    WHERE j.valid AND j.response_key IN (SELECT response_key FROM b)
),
grid AS (
    SELECT a.response_key, a.n, a.idx AS i, o.idx AS k, coalesce(b.b_mn, 0.0) AS w
    FROM jj a
    JOIN jj o ON o.response_key = a.response_key
    LEFT JOIN b ON b.judgement_m = a.judgement_key AND b.judgement_n = o.judgement_key
),
fits AS (
    SELECT response_key, mrtui_bt(any_value(n)::INTEGER, list(w ORDER BY i, k)) AS eps,
           sum(w) AS total_weight
    FROM grid GROUP BY response_key
),
wins AS (
    SELECT judgement_m AS judgement_key, sum(b_mn) AS weighted_wins,
           count(*) FILTER (WHERE r_mn = 1) + count(*) FILTER (WHERE r_nm = -1) AS wins
    FROM b GROUP BY ALL
)
SELECT jj.run_id, jj.iteration, jj.prompt_key, jj.response_key, jj.judgement_key,
       jj.judge_index, jj.score, jj.judgement_chars,
       coalesce(w.wins, 0) AS wins, coalesce(w.weighted_wins, 0.0) AS weighted_wins,
       f.eps[jj.idx] AS epsilon, 1000 + 400 * f.eps[jj.idx] / ln(10) AS elo
FROM jj
JOIN fits f USING (response_key)
LEFT JOIN wins w USING (judgement_key);

CREATE OR REPLACE VIEW judgement_elo AS
SELECT * FROM judgement_elo_with();
