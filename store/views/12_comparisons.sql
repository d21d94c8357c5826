-- Pairwise actor judging (actor_judging = 'pairwise'): the judge compares every two
-- responses of a prompt in both orders. `r`: +1 the first shown wins, -1 the second, 0 a tie
-- or an unparsed verdict; `p_first` (judge_scoring = 'expected'): P(the first shown is better).
CREATE OR REPLACE VIEW response_comparisons AS
SELECT run_id, iteration, key AS comparison_key, prompt_key, first_key, second_key, winner,
       CASE winner WHEN 'A' THEN first_key WHEN 'B' THEN second_key END AS winner_key,
       CASE winner WHEN 'A' THEN 1 WHEN 'B' THEN -1 ELSE 0 END AS r,
       parse_error, fallback_used, text AS verdict, prompt_tokens, completion_tokens,
       prompt_tokens_evaluated, finish_reason, p.seed, p.wall_s, p.model_id, model_sha256,
       p.backend, p.template, template_sha256, seq, created_at, payload, rationale_words,
       coalesce(scoring, 'sampled') AS scoring, p_first, choice_mass
FROM (SELECT *, from_json(payload, '{"seed":"BIGINT","wall_s":"DOUBLE","model_id":"VARCHAR",
        "backend":"VARCHAR","template":"VARCHAR"}') AS p
      FROM events WHERE event_type = 'ResponsesCompared');

-- Bradley-Terry strengths of a prompt's responses from their comparisons (mrtui_bt, as for
-- judgements, with the iteration's bt_prior_games). Each pair once, the latest verdict of each
-- order: the outcome for m over n is the mean over the orders it was judged in of m's share
-- of the win: p (expected scoring) or 1 / 0 / ½ for a win / loss / tie (sampled; an unparsed
-- verdict leaves its order out). Expected scoring thus averages P_mn and 1 − P_nm, which
-- cancels a constant preference for the first shown. `elo` = 1000 + 400·ε/ln 10.
CREATE OR REPLACE VIEW response_strengths AS
WITH pairs AS (  -- each unordered pair {x, y} of a prompt's responses once (x < y): the latest
                 -- outcome of each order (won_first of the order seen, NULL: none usable)
    SELECT run_id, iteration, prompt_key,
           least(first_key, second_key) AS x, greatest(first_key, second_key) AS y,
           bool_or(first_key < second_key) AS seen_xy, bool_or(first_key > second_key) AS seen_yx,
           arg_max(won_first, seq) FILTER (WHERE first_key < second_key) AS w_xy,
           arg_max(won_first, seq) FILTER (WHERE first_key > second_key) AS w_yx
    FROM (SELECT run_id, iteration, prompt_key, first_key, second_key, seq,
                 coalesce(p_first, CASE r WHEN 1 THEN 1.0 WHEN -1 THEN 0.0
                                          ELSE CASE WHEN parse_error = 'tie' THEN 0.5 END END)
                     AS won_first
          FROM response_comparisons) c
    GROUP BY ALL
),
outcomes AS (  -- one row per ordered pair (m, n): m's share of the win, both orders averaged:
               -- an order never judged gets a row only from a usable outcome of the other
    SELECT run_id, iteration, prompt_key, x AS m, y AS n,
           CASE WHEN NOT seen_xy THEN 1 - w_yx
                WHEN w_xy IS NULL AND w_yx IS NULL THEN NULL
                ELSE (coalesce(w_xy, 1 - w_yx) + 1 - coalesce(w_yx, 1 - w_xy)) / 2 END AS b_mn
    FROM pairs WHERE seen_xy OR w_yx IS NOT NULL
    UNION ALL
    SELECT run_id, iteration, prompt_key, y, x,
           CASE WHEN NOT seen_yx THEN 1 - w_xy
                WHEN w_xy IS NULL AND w_yx IS NULL THEN NULL
                ELSE (coalesce(w_yx, 1 - w_xy) + 1 - coalesce(w_xy, 1 - w_yx)) / 2 END
    FROM pairs WHERE seen_yx OR w_xy IS NOT NULL
),
rr AS (
    SELECT r.run_id, r.iteration, r.prompt_key, r.response_key, r.sample_index,
           r.response_chars,
           row_number() OVER (PARTITION BY r.run_id, r.iteration, r.prompt_key
                              ORDER BY r.sample_index, r.response_key) AS idx,
           count(*) OVER (PARTITION BY r.run_id, r.iteration, r.prompt_key) AS k
    FROM responses r
    SEMI JOIN (SELECT DISTINCT run_id, iteration, prompt_key FROM response_comparisons) c
         ON c.run_id = r.run_id AND c.iteration = r.iteration AND c.prompt_key = r.prompt_key
),
cells AS (
    SELECT o.run_id, o.iteration, o.prompt_key, m.idx AS i, n.idx AS j, o.b_mn AS w
    FROM outcomes o
    JOIN rr m ON m.response_key = o.m
    JOIN rr n ON n.response_key = o.n
    WHERE o.b_mn > 0
),
fits AS (
    SELECT p.run_id, p.iteration, p.prompt_key,
           mrtui_bt(p.k::INTEGER, coalesce(c.i, []::INTEGER[]), coalesce(c.j, []::INTEGER[]),
                    coalesce(c.w, []::DOUBLE[]),
                    coalesce(st.bt_prior_games, 1.0)::DOUBLE) AS eps
    FROM (SELECT DISTINCT run_id, iteration, prompt_key, k FROM rr) p
    LEFT JOIN (SELECT run_id, iteration, prompt_key, list(i::INTEGER) AS i,
                      list(j::INTEGER) AS j, list(w) AS w
               FROM cells GROUP BY ALL) c USING (run_id, iteration, prompt_key)
    LEFT JOIN iteration_settings st USING (run_id, iteration)
),
wins AS (
    SELECT m AS response_key, count(b_mn) AS comparisons, sum(b_mn) AS wins
    FROM outcomes GROUP BY ALL
)
SELECT rr.run_id, rr.iteration, rr.prompt_key, rr.response_key, rr.sample_index,
       rr.response_chars, coalesce(w.comparisons, 0) AS comparisons,
       coalesce(w.wins, 0.0) AS wins, f.eps[rr.idx] AS epsilon,
       1000 + 400 * f.eps[rr.idx] / ln(10) AS elo
FROM rr
JOIN fits f USING (run_id, iteration, prompt_key)
LEFT JOIN wins w USING (response_key);

-- What actor pairs are chosen by, per response: the mean judge score (pointwise, the paper's
-- way) or, in iterations with actor_judging = 'pairwise', the Bradley-Terry strength ε of the
-- comparisons (`valid_count` is then the pairs it was compared in).
CREATE OR REPLACE VIEW actor_scores AS
SELECT s.run_id, s.iteration, s.prompt_key, s.response_key, s.sample_index, s.response_chars,
       s.valid_count, s.mean_score, 'pointwise' AS actor_judging
FROM response_scores s
LEFT JOIN iteration_settings st USING (run_id, iteration)
WHERE coalesce(st.actor_judging, 'pointwise') = 'pointwise'
UNION ALL
SELECT s.run_id, s.iteration, s.prompt_key, s.response_key, s.sample_index, s.response_chars,
       s.comparisons, s.epsilon, 'pairwise'
FROM response_strengths s
JOIN iteration_settings st USING (run_id, iteration)
WHERE st.actor_judging = 'pairwise';
