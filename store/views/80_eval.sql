-- Evaluation (`mrtui eval`): each iteration's model on benchmark suites. Every answer, rule
-- check and judge verdict is an event; these views derive samples and metrics from them.
-- Rates are fractions in [0, 1]; MT-Bench grades are 1-10; intervals are 95% percentile
-- bootstraps over items (mrtui_eval_ci, store/evalstats.py).

-- One row per answer of an evaluated model (one turn of one item). `answer_key`: the content
-- key of the request that made it (model, rendered messages, template, sampling); NULL in
-- logs older than the answer cache. `cached_from`: for an answer copied from an earlier one
-- with the same `answer_key` instead of generated, that answer's sample_key (NULL when this
-- answer was generated); its tokens and backend are the earlier answer's, its wall_s 0.
CREATE OR REPLACE VIEW eval_generations AS
SELECT run_id, iteration, key AS sample_key, parent_key, prompt_key AS item_key,
       item_index AS turn, p.suite, p.eval_set, p.item_id, p.stratum, p.sample_index,
       p.prompt, p.reference, text AS response, text_chars AS response_chars,
       prompt_tokens, completion_tokens, finish_reason, p.seed, p.wall_s, p.model_id,
       model_sha256, p.backend, seq, created_at, p.answer_key, p.cached_from,
       p.backend_version
FROM (SELECT *, from_json(payload, '{"suite":"VARCHAR","eval_set":"VARCHAR","item_id":"VARCHAR",
        "stratum":"VARCHAR","sample_index":"INTEGER","prompt":"VARCHAR","reference":"VARCHAR",
        "seed":"BIGINT","wall_s":"DOUBLE","model_id":"VARCHAR","backend":"VARCHAR",
        "answer_key":"VARCHAR","cached_from":"VARCHAR","backend_version":"VARCHAR"}') AS p
      FROM events WHERE event_type = 'EvalSampleGenerated');

-- The rule checker's latest result per sample (IFEval): per instruction followed (true),
-- not followed (false) or skipped (NULL; the reason is in `skipped`).
CREATE OR REPLACE VIEW eval_checks AS
SELECT run_id, iteration, key AS check_key, parent_key AS sample_key, prompt_key AS item_key,
       c.checker, c.instruction_ids, c.strict, c.loose, c.passed_strict, c.passed_loose,
       len(c.instruction_ids) AS instructions,
       len(list_filter(c.strict, lambda x: x IS NOT NULL)) AS checked,
       len(list_filter(c.strict, lambda x: x)) AS followed_strict,
       len(list_filter(c.loose, lambda x: x)) AS followed_loose,
       payload->'$.skipped' AS skipped, seq
FROM (SELECT *, from_json(payload, '{"checker":"VARCHAR","instruction_ids":["VARCHAR"],
        "strict":["BOOLEAN"],"loose":["BOOLEAN"],"passed_strict":"BOOLEAN",
        "passed_loose":"BOOLEAN"}') AS c
      FROM events WHERE event_type = 'EvalChecked')
QUALIFY row_number() OVER (PARTITION BY parent_key ORDER BY seq DESC) = 1;

-- Every judge answer about evaluation samples. `parent_wins` (pairwise): the share of the win
-- that goes to the sample the verdict is about (its parent): 1, 0, 0.5 for a tie, NULL when
-- the verdict did not parse.
CREATE OR REPLACE VIEW eval_verdicts AS
SELECT run_id, iteration, key AS verdict_key, parent_key AS sample_key, prompt_key AS item_key,
       p.suite, p.mode, first_key, second_key, winner, score, parse_error, fallback_used,
       text AS verdict, rationale_words, p.structure IS NOT NULL AS structured,
       CASE WHEN p.mode <> 'pairwise' THEN NULL
            WHEN winner IS NULL THEN CASE WHEN parse_error = 'tie' THEN 0.5 END
            WHEN (winner = 'A') = (first_key = parent_key) THEN 1.0 ELSE 0.0 END AS parent_wins,
       p.model_id AS judge_model_id, model_sha256 AS judge_sha256, p.template,
       completion_tokens, p.wall_s, seq, created_at
FROM (SELECT *, from_json(payload, '{"suite":"VARCHAR","mode":"VARCHAR","model_id":"VARCHAR",
        "template":"VARCHAR","wall_s":"DOUBLE","structure":"JSON"}') AS p
      FROM events WHERE event_type = 'EvalJudged');

-- One row per (sample, judge): the prompt, the answer and its outcome. `outcome_value` is
-- the number the suite's headline metric averages (IFEval: strict pass 1/0; AlpacaEval: the
-- win against the reference, mean of both orders; MT-Bench: the 1-10 grade); `outcome` is
-- the same as a word.
CREATE OR REPLACE VIEW eval_samples AS
WITH pw AS (
    SELECT sample_key, judge_sha256, any_value(judge_model_id) AS judge_model_id,
           avg(parent_wins) AS win, count(parent_wins) AS verdicts,
           count(parent_wins) = 2 AND min(parent_wins) <> max(parent_wins) AS orders_disagree,
           string_agg(verdict, chr(10) || '----' || chr(10) ORDER BY seq) AS judge_text
    FROM eval_verdicts
    WHERE mode = 'pairwise' AND 'reference' IN (first_key, second_key)
    GROUP BY sample_key, judge_sha256),
gr AS (
    SELECT sample_key, judge_sha256, any_value(judge_model_id) AS judge_model_id,
           avg(score) AS grade, string_agg(verdict, chr(10) || '----' || chr(10) ORDER BY seq)
               AS judge_text
    FROM eval_verdicts WHERE mode = 'grade' GROUP BY sample_key, judge_sha256)
SELECT g.run_id, g.iteration, g.model_id, g.model_sha256, g.suite, g.eval_set, g.item_id,
       g.item_key, g.stratum, g.turn, g.sample_index, g.sample_key, g.prompt, g.response,
       g.response_chars, g.reference, length(g.reference) AS reference_chars,
       g.prompt_tokens, g.completion_tokens, g.finish_reason,
       c.passed_strict, c.passed_loose, c.instructions, c.checked, c.followed_strict,
       c.followed_loose, c.instruction_ids, c.strict, c.loose, c.skipped, c.checker,
       coalesce(pw.judge_model_id, gr.judge_model_id) AS judge_model_id,
       coalesce(pw.judge_sha256, gr.judge_sha256) AS judge_sha256,
       pw.win, pw.verdicts, pw.orders_disagree, gr.grade,
       coalesce(pw.judge_text, gr.judge_text) AS judge_text,
       CASE WHEN c.sample_key IS NOT NULL THEN c.passed_strict::DOUBLE
            WHEN pw.sample_key IS NOT NULL THEN pw.win
            ELSE gr.grade END AS outcome_value,
       CASE WHEN c.sample_key IS NOT NULL
                THEN CASE WHEN c.passed_strict THEN 'pass' WHEN NOT c.passed_strict THEN 'fail'
                          ELSE 'skipped' END
            WHEN pw.sample_key IS NOT NULL
                THEN CASE WHEN pw.win IS NULL THEN 'unparsed' WHEN pw.win > 0.5 THEN 'win'
                          WHEN pw.win < 0.5 THEN 'loss' ELSE 'tie' END
            WHEN gr.sample_key IS NOT NULL THEN coalesce(gr.grade::VARCHAR, 'unparsed')
            ELSE 'pending' END AS outcome,
       g.seq
FROM eval_generations g
LEFT JOIN eval_checks c ON c.sample_key = g.sample_key
LEFT JOIN pw ON pw.sample_key = g.sample_key
LEFT JOIN gr ON gr.sample_key = g.sample_key;

-- Verifiable preference pairs (judge-ifeval): per IFEval prompt, the first sample (by index)
-- that follows every instruction and the first that does not. Prompts whose samples all pass
-- or all fail give no pair.
CREATE OR REPLACE VIEW eval_ifeval_pairs AS
SELECT g.run_id, g.iteration, g.model_sha256, g.item_key, any_value(g.prompt) AS prompt,
       arg_min(g.sample_key, g.sample_index) FILTER (WHERE c.passed_strict) AS pass_key,
       arg_min(g.sample_key, g.sample_index) FILTER (WHERE NOT c.passed_strict) AS fail_key
FROM eval_generations g JOIN eval_checks c ON c.sample_key = g.sample_key
WHERE g.suite = 'judge-ifeval' AND c.passed_strict IS NOT NULL
GROUP BY g.run_id, g.iteration, g.model_sha256, g.item_key
HAVING count(*) FILTER (WHERE c.passed_strict) > 0
   AND count(*) FILTER (WHERE NOT c.passed_strict) > 0;

-- How the model judges its own verifiable pairs: with the run's judge prompt (a 0-5 score
-- for each response; right when the passing one scores higher, half right on a tie) and
-- pairwise in both orders (right when it picks the passing one; `consistent` when both
-- orders pick the same response).
CREATE OR REPLACE VIEW eval_judge_pairs AS
WITH r AS (
    SELECT sample_key, judge_sha256, any_value(judge_model_id) AS judge_model_id,
           avg(score) AS score
    FROM eval_verdicts WHERE suite = 'judge-ifeval' AND mode = 'rubric'
    GROUP BY sample_key, judge_sha256),
w AS (
    SELECT first_key, second_key, judge_sha256, winner, parse_error
    FROM eval_verdicts WHERE suite = 'judge-ifeval' AND mode = 'pairwise'),
pairs AS (
    SELECT p.*, rp.judge_sha256, rp.judge_model_id, rp.score AS pass_score,
           rf.score AS fail_score,
           CASE WHEN w1.winner IS NULL THEN CASE WHEN w1.parse_error = 'tie' THEN 0.5 END
                WHEN w1.winner = 'A' THEN 1.0 ELSE 0.0 END AS pass_first_correct,
           CASE WHEN w2.winner IS NULL THEN CASE WHEN w2.parse_error = 'tie' THEN 0.5 END
                WHEN w2.winner = 'B' THEN 1.0 ELSE 0.0 END AS pass_second_correct
    FROM eval_ifeval_pairs p
    JOIN r rp ON rp.sample_key = p.pass_key
    LEFT JOIN r rf ON rf.sample_key = p.fail_key AND rf.judge_sha256 = rp.judge_sha256
    LEFT JOIN w w1 ON w1.first_key = p.pass_key AND w1.second_key = p.fail_key
                  AND w1.judge_sha256 = rp.judge_sha256
    LEFT JOIN w w2 ON w2.first_key = p.fail_key AND w2.second_key = p.pass_key
                  AND w2.judge_sha256 = rp.judge_sha256)
SELECT *,
       CASE WHEN pass_score IS NULL OR fail_score IS NULL THEN NULL
            WHEN pass_score > fail_score THEN 1.0 WHEN pass_score = fail_score THEN 0.5
            ELSE 0.0 END AS rubric_correct,
       pass_score - fail_score AS score_spread,
       (pass_first_correct + pass_second_correct) / 2 AS pairwise_correct,
       CASE WHEN pass_first_correct IS NULL OR pass_second_correct IS NULL THEN NULL
            ELSE pass_first_correct = pass_second_correct AND pass_first_correct <> 0.5
            END AS consistent
FROM pairs;

-- One row per (run, iteration, suite, metric, judge): the value, the items it averages (n)
-- and a 95% bootstrap interval [lo, hi] over items. The judge is NULL where there is none
-- (IFEval's rule checks) and for judge-ifeval, where the evaluated model judges itself. IFEval's prompt-level accuracy leaves
-- out prompts with an instruction the checker could not run (`skipped_instructions` counts
-- them); AlpacaEval's lc_win_rate is the length-controlled win rate (store/evalstats.py).
CREATE OR REPLACE VIEW eval_results AS
WITH ife AS (
    SELECT run_id, iteration, suite, model_sha256, any_value(model_id) AS model_id,
           list(passed_strict::DOUBLE) FILTER (WHERE passed_strict IS NOT NULL) AS ps,
           list(passed_loose::DOUBLE) FILTER (WHERE passed_loose IS NOT NULL) AS pl,
           list(followed_strict::DOUBLE) FILTER (WHERE checked > 0) AS fs,
           list(followed_loose::DOUBLE) FILTER (WHERE checked > 0) AS fl,
           list(checked::DOUBLE) FILTER (WHERE checked > 0) AS ck,
           sum(instructions - checked) AS skipped, sum(instructions) AS instructions
    FROM eval_samples WHERE suite = 'ifeval' AND instructions IS NOT NULL
    GROUP BY run_id, iteration, suite, model_sha256),
alp AS (
    SELECT run_id, iteration, suite, model_sha256, any_value(model_id) AS model_id,
           judge_sha256, any_value(judge_model_id) AS judge_model_id,
           list(win) FILTER (WHERE win IS NOT NULL) AS w,
           list((response_chars - reference_chars)::DOUBLE) FILTER (WHERE win IS NOT NULL)
               AS dl,
           list(orders_disagree::DOUBLE) FILTER (WHERE verdicts = 2) AS dis,
           list(response_chars::DOUBLE) AS chars
    FROM eval_samples WHERE suite = 'alpaca_eval' AND judge_sha256 IS NOT NULL
    GROUP BY run_id, iteration, suite, model_sha256, judge_sha256),
mtb AS (
    SELECT run_id, iteration, suite, model_sha256, any_value(model_id) AS model_id,
           judge_sha256, any_value(judge_model_id) AS judge_model_id,
           list(grade) FILTER (WHERE grade IS NOT NULL) AS g,
           list(grade) FILTER (WHERE grade IS NOT NULL AND turn = 0) AS g1,
           list(grade) FILTER (WHERE grade IS NOT NULL AND turn = 1) AS g2
    FROM eval_samples WHERE suite = 'mt_bench' AND judge_sha256 IS NOT NULL
    GROUP BY run_id, iteration, suite, model_sha256, judge_sha256),
jp AS (
    SELECT run_id, iteration, 'judge-ifeval' AS suite, model_sha256, judge_sha256,
           any_value(judge_model_id) AS judge_model_id,
           list(rubric_correct) FILTER (WHERE rubric_correct IS NOT NULL) AS rc,
           list(pairwise_correct) FILTER (WHERE pairwise_correct IS NOT NULL) AS pc,
           list(consistent::DOUBLE) FILTER (WHERE consistent IS NOT NULL) AS cs,
           list(score_spread) FILTER (WHERE score_spread IS NOT NULL) AS sp,
           count(*) AS pairs
    FROM eval_judge_pairs GROUP BY run_id, iteration, model_sha256, judge_sha256),
jsets AS (
    SELECT run_id, iteration, model_sha256, any_value(model_id) AS model_id,
           count(DISTINCT item_key) AS prompts
    FROM eval_generations WHERE suite = 'judge-ifeval'
    GROUP BY run_id, iteration, model_sha256),
metrics AS (
    SELECT run_id, iteration, suite, model_sha256, model_id, NULL AS judge_sha256,
           NULL AS judge_model_id, unnest([
        {'metric': 'prompt_strict', 'ci': mrtui_eval_ci('mean', ps, NULL), 'n': len(ps)},
        {'metric': 'prompt_loose', 'ci': mrtui_eval_ci('mean', pl, NULL), 'n': len(pl)},
        {'metric': 'instruction_strict', 'ci': mrtui_eval_ci('ratio', fs, ck), 'n': len(fs)},
        {'metric': 'instruction_loose', 'ci': mrtui_eval_ci('ratio', fl, ck), 'n': len(fl)},
        {'metric': 'skipped_instructions',
         'ci': {'value': skipped::DOUBLE, 'lo': NULL::DOUBLE, 'hi': NULL::DOUBLE}, 'n': instructions}
    ]) AS m FROM ife
    UNION ALL
    SELECT run_id, iteration, suite, model_sha256, model_id, judge_sha256, judge_model_id,
           unnest([
        {'metric': 'win_rate', 'ci': mrtui_eval_ci('mean', w, NULL), 'n': len(w)},
        {'metric': 'lc_win_rate', 'ci': mrtui_eval_ci('lc', w, dl), 'n': len(w)},
        {'metric': 'order_disagreement', 'ci': mrtui_eval_ci('mean', dis, NULL),
         'n': len(dis)},
        {'metric': 'response_chars', 'ci': mrtui_eval_ci('mean', chars, NULL), 'n': len(chars)}
    ]) AS m FROM alp
    UNION ALL
    SELECT run_id, iteration, suite, model_sha256, model_id, judge_sha256, judge_model_id,
           unnest([
        {'metric': 'score', 'ci': mrtui_eval_ci('mean', g, NULL), 'n': len(g)},
        {'metric': 'score_turn1', 'ci': mrtui_eval_ci('mean', g1, NULL), 'n': len(g1)},
        {'metric': 'score_turn2', 'ci': mrtui_eval_ci('mean', g2, NULL), 'n': len(g2)}
    ]) AS m FROM mtb
    UNION ALL
    -- judge-ifeval's judge is the evaluated model itself: no judge of its own
    SELECT s.run_id, s.iteration, 'judge-ifeval', s.model_sha256, s.model_id,
           NULL, NULL, unnest([
        {'metric': 'verifiable_pairs',
         'ci': {'value': coalesce(jp.pairs, 0)::DOUBLE, 'lo': NULL::DOUBLE, 'hi': NULL::DOUBLE},
         'n': s.prompts},
        {'metric': 'rubric_accuracy', 'ci': mrtui_eval_ci('mean', jp.rc, NULL),
         'n': len(jp.rc)},
        {'metric': 'pairwise_accuracy', 'ci': mrtui_eval_ci('mean', jp.pc, NULL),
         'n': len(jp.pc)},
        {'metric': 'position_consistency', 'ci': mrtui_eval_ci('mean', jp.cs, NULL),
         'n': len(jp.cs)},
        {'metric': 'score_spread', 'ci': mrtui_eval_ci('mean', jp.sp, NULL), 'n': len(jp.sp)}
    ]) AS m
    FROM jsets s LEFT JOIN jp ON jp.run_id = s.run_id AND jp.iteration = s.iteration
                             AND jp.model_sha256 = s.model_sha256)
SELECT run_id, iteration, model_id, model_sha256, suite, m['metric'] AS metric,
       m['ci']['value'] AS value, m['ci']['lo'] AS lo, m['ci']['hi'] AS hi,
       coalesce(m['n'], 0)::INTEGER AS n, judge_model_id, judge_sha256
FROM metrics;
