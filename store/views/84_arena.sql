-- Arena-Hard v2.0 (`mrtui eval --suite arena_hard`): each answer of the evaluated model
-- against a baseline's answer to the same question, judged by the fixed judge in both
-- orders. A verdict names both answers (first_key, second_key): the evaluated sample and the
-- baseline answer, which is a logged sample (the run's M1, or another logged model) or an
-- answer shipped with Arena-Hard v2.0, named 'shipped:MODEL/UID'.

-- One row per (evaluated answer, baseline answer, judge). `win`: the evaluated answer's share
-- of the win over both orders (a tie counts half, an unparsed verdict not at all);
-- `win_shown_first` / `win_shown_second`: its win when shown as Response A / B. `consistent`:
-- both orders pick the same answer (a tie in either is not consistent, as in
-- eval_judge_pairs); `orders_disagree`: the two orders give different outcomes (as in
-- eval_samples). Both are NULL until both orders have a parsed verdict. `baseline`: 'shipped',
-- 'M<i>' for iteration i of the same run, or '<run>:<i>' for another run's.
CREATE OR REPLACE VIEW arena_battles AS
WITH v AS (
    SELECT *, CASE WHEN first_key = sample_key THEN second_key ELSE first_key END
               AS baseline_key
    FROM eval_verdicts WHERE suite = 'arena_hard' AND mode = 'pairwise'),
b AS (
    SELECT run_id, iteration, sample_key, baseline_key, judge_sha256,
           any_value(judge_model_id) AS judge_model_id,
           avg(parent_wins) AS win, count(parent_wins) AS verdicts,
           avg(parent_wins) FILTER (WHERE first_key = sample_key) AS win_shown_first,
           avg(parent_wins) FILTER (WHERE second_key = sample_key) AS win_shown_second,
           string_agg(verdict, chr(10) || '----' || chr(10) ORDER BY seq) AS judge_text,
           max(seq) AS seq
    FROM v GROUP BY run_id, iteration, sample_key, baseline_key, judge_sha256)
SELECT b.run_id, b.iteration, g.model_id, g.model_sha256, g.item_id, g.item_key,
       g.stratum AS category, b.sample_key, b.baseline_key,
       CASE WHEN b.baseline_key LIKE 'shipped:%' THEN 'shipped'
            WHEN o.run_id = b.run_id THEN 'M' || o.iteration
            ELSE o.run_id || ':' || o.iteration END AS baseline,
       coalesce(o.model_id, regexp_extract(b.baseline_key, '^shipped:([^/]+)/', 1))
           AS baseline_model_id,
       o.model_sha256 AS baseline_sha256, o.run_id AS baseline_run_id,
       o.iteration AS baseline_iteration, b.judge_model_id, b.judge_sha256,
       b.win, b.verdicts, b.win_shown_first, b.win_shown_second,
       CASE WHEN b.win_shown_first IS NULL OR b.win_shown_second IS NULL THEN NULL
            ELSE b.win_shown_first = b.win_shown_second AND b.win_shown_first <> 0.5
            END AS consistent,
       CASE WHEN b.win_shown_first IS NULL OR b.win_shown_second IS NULL THEN NULL
            ELSE b.win_shown_first <> b.win_shown_second END AS orders_disagree,
       CASE WHEN b.win IS NULL THEN 'unparsed' WHEN b.win > 0.5 THEN 'win'
            WHEN b.win < 0.5 THEN 'loss' ELSE 'tie' END AS outcome,
       g.prompt, g.response, g.response_chars, o.response AS baseline_response,
       o.response_chars AS baseline_chars, b.judge_text, b.seq
FROM b
JOIN eval_generations g ON g.sample_key = b.sample_key
LEFT JOIN eval_generations o ON o.sample_key = b.baseline_key;

-- One row per (run, iteration, metric, judge, baseline), with the columns of eval_results
-- first (suite 'arena_hard'), then the baseline's. `win_rate`: the mean of `win` over the
-- questions with a parsed verdict, with a 95% bootstrap interval over questions;
-- `win_rate_hard_prompt` / `win_rate_creative_writing` the same within Arena-Hard v2.0's two
-- categories; `position_consistency` and `order_disagreement`: the shares of questions with
-- both orders parsed that are consistent / disagree; `response_chars`: the mean answer length.
CREATE OR REPLACE VIEW arena_results AS
WITH a AS (
    SELECT run_id, iteration, model_sha256, any_value(model_id) AS model_id, judge_sha256,
           any_value(judge_model_id) AS judge_model_id, baseline, baseline_sha256,
           any_value(baseline_model_id) AS baseline_model_id,
           list(win) FILTER (WHERE win IS NOT NULL) AS w,
           list(win) FILTER (WHERE win IS NOT NULL AND category = 'hard_prompt') AS wh,
           list(win) FILTER (WHERE win IS NOT NULL AND category = 'creative_writing') AS wc,
           list(consistent::DOUBLE) FILTER (WHERE consistent IS NOT NULL) AS cs,
           list(orders_disagree::DOUBLE) FILTER (WHERE orders_disagree IS NOT NULL) AS dis,
           list(response_chars::DOUBLE) AS chars
    FROM arena_battles
    GROUP BY run_id, iteration, model_sha256, judge_sha256, baseline, baseline_sha256)
SELECT run_id, iteration, model_id, model_sha256, 'arena_hard' AS suite, m['metric'] AS metric,
       m['ci']['value'] AS value, m['ci']['lo'] AS lo, m['ci']['hi'] AS hi,
       coalesce(m['n'], 0)::INTEGER AS n, judge_model_id, judge_sha256, baseline,
       baseline_model_id, baseline_sha256
FROM (SELECT *, unnest([
    {'metric': 'win_rate', 'ci': mrtui_eval_ci('mean', w, NULL), 'n': len(w)},
    {'metric': 'win_rate_hard_prompt', 'ci': mrtui_eval_ci('mean', wh, NULL), 'n': len(wh)},
    {'metric': 'win_rate_creative_writing', 'ci': mrtui_eval_ci('mean', wc, NULL),
     'n': len(wc)},
    {'metric': 'position_consistency', 'ci': mrtui_eval_ci('mean', cs, NULL), 'n': len(cs)},
    {'metric': 'order_disagreement', 'ci': mrtui_eval_ci('mean', dis, NULL), 'n': len(dis)},
    {'metric': 'response_chars', 'ci': mrtui_eval_ci('mean', chars, NULL), 'n': len(chars)}
]) AS m FROM a);
