-- Human labels (store/labels.py) and how far the judge and the meta-judge agree with them.

-- The 95% Wilson score interval of `successes` out of `n` trials, as {'lo', 'hi'} (NULL when
-- n = 0). `successes` may be fractional (a tie counted as half a success).
CREATE OR REPLACE MACRO wilson_interval(successes, n, z := 1.959963984540054) AS
CASE WHEN n > 0 THEN {
    'lo': (successes / n + z * z / (2 * n)
           - z * sqrt(greatest(successes / n * (1 - successes / n), 0) / n + z * z / (4 * n * n)))
          / (1 + z * z / n),
    'hi': (successes / n + z * z / (2 * n)
           + z * sqrt(greatest(successes / n * (1 - successes / n), 0) / n + z * z / (4 * n * n)))
          / (1 + z * z / n)
} END;

-- The current label of each labelled unit: the latest HumanLabelRecorded event whose
-- parent_key is the unit (`revisions`: how many labels it has had). `target` is 'response',
-- 'judgement' or 'verdict'. human_score: a 0-5 label as a number; human_good: good/bad;
-- agrees: agree/disagree; better_key: the judgement a verdict label says is better (A: the
-- verdict's first_key, B: its second_key). The labelled units are found by key from the
-- labels, so the view costs one pass over the events' key column whatever the log's size.
CREATE OR REPLACE VIEW human_labels AS
WITH latest AS (
    SELECT run_id, iteration, parent_key AS target_key, payload->>'$.target' AS target,
           payload->>'$.label' AS label, payload->>'$.author' AS author, text AS note,
           count(*) OVER (PARTITION BY run_id, parent_key) AS revisions, seq, created_at
    FROM events
    WHERE event_type = 'HumanLabelRecorded'
    QUALIFY row_number() OVER (PARTITION BY run_id, parent_key ORDER BY seq DESC) = 1
)
SELECT l.run_id, l.iteration, l.target, l.target_key, u.prompt_key,
       CASE l.target WHEN 'response' THEN l.target_key ELSE u.parent_key END AS response_key,
       l.label,
       CASE WHEN l.label IN ('0', '1', '2', '3', '4', '5') THEN l.label::DOUBLE END AS human_score,
       CASE l.label WHEN 'good' THEN true WHEN 'bad' THEN false END AS human_good,
       CASE l.label WHEN 'agree' THEN true WHEN 'disagree' THEN false END AS agrees,
       CASE WHEN l.target = 'verdict' THEN CASE l.label WHEN 'A' THEN u.first_key
                                                          WHEN 'B' THEN u.second_key END
       END AS better_key,
       l.author, l.note, l.revisions, l.seq, l.created_at
FROM latest l
LEFT JOIN (SELECT run_id, key, parent_key, prompt_key, first_key, second_key
           FROM events
           WHERE key IN (SELECT target_key FROM latest)) u
       ON u.key = l.target_key AND u.run_id = l.run_id;

-- The judge and the meta-judge against the human labels, per run and iteration: one row per
-- measure with at least one labelled unit, n, value and a 95% interval [lo, hi].
--   judge_pairwise_accuracy: pairs of labelled responses to one prompt whose labels differ
--     (two scores, or good against bad; a score is never set against good/bad) where the
--     judge's mean score (response_scores) orders them as the label does; a judge tie counts
--     half. n: pairs (both responses with a valid judgement). Wilson interval.
--   judge_rank_correlation: Spearman's rank correlation between the 0-5 labels and the judge's
--     mean scores of those responses (good/bad labels are left out); n: responses. Interval
--     by Fisher's z, tanh(atanh(r) ± 1.96/sqrt(n − 3)), NULL when n < 4.
--   judgement_agreement: share of labelled judgements marked agree. Wilson interval.
--   meta_judge_agreement: labelled meta-verdicts where the meta-judge's winner is the judgement
--     the person marked better; a tie or unparsed verdict counts half. Wilson interval.
CREATE OR REPLACE VIEW judge_human_agreement AS
WITH labels AS MATERIALIZED (
    SELECT * FROM human_labels
),
judge_means AS (  -- response_scores.mean_score of the labelled responses only: labels are few,
                  -- and response_scores would average every judgement in the log first
    SELECT run_id, response_key, avg(score) AS mean_score
    FROM judgements
    WHERE response_key IN (SELECT target_key FROM labels WHERE target = 'response')
    GROUP BY run_id, response_key
),
labelled AS (
    SELECT h.run_id, h.iteration, h.prompt_key, h.response_key,
           coalesce(h.human_score, CASE WHEN h.human_good THEN 1.0 ELSE 0.0 END) AS human,
           CASE WHEN h.human_score IS NOT NULL THEN 'score' ELSE 'good/bad' END AS scale,
           s.mean_score AS judge
    FROM labels h
    JOIN judge_means s ON s.response_key = h.target_key AND s.run_id = h.run_id
    WHERE h.target = 'response' AND s.mean_score IS NOT NULL
),
pairs AS (
    SELECT a.run_id, a.iteration,
           CASE WHEN sign(a.human - b.human) = sign(a.judge - b.judge) THEN 1.0
                WHEN a.judge = b.judge THEN 0.5 ELSE 0.0 END AS correct
    FROM labelled a
    JOIN labelled b ON b.run_id = a.run_id AND b.iteration = a.iteration
                   AND b.prompt_key = a.prompt_key AND b.scale = a.scale
                   AND a.response_key < b.response_key AND a.human <> b.human
),
ranked AS (
    SELECT run_id, iteration, judge,
           rank() OVER (PARTITION BY run_id, iteration ORDER BY human)
               + (count(*) OVER (PARTITION BY run_id, iteration, human) - 1) / 2 AS human_rank,
           rank() OVER (PARTITION BY run_id, iteration ORDER BY judge)
               + (count(*) OVER (PARTITION BY run_id, iteration, judge) - 1) / 2 AS judge_rank
    FROM labelled
    WHERE scale = 'score'
),
spearman AS (
    SELECT run_id, iteration, count(*) AS n,
           CASE WHEN stddev_pop(human_rank) > 0 AND stddev_pop(judge_rank) > 0
                THEN corr(human_rank, judge_rank) END AS r
    FROM ranked GROUP BY ALL
),
shares AS (
    SELECT run_id, iteration, 'judge_pairwise_accuracy' AS measure, count(*) AS n,
           sum(correct) AS successes
    FROM pairs GROUP BY ALL
    UNION ALL
    SELECT run_id, iteration, 'judgement_agreement', count(*), count(*) FILTER (WHERE agrees)
    FROM labels
    WHERE target = 'judgement'
    GROUP BY ALL
    UNION ALL
    SELECT h.run_id, h.iteration, 'meta_judge_agreement', count(*),
           sum(CASE WHEN v.winner_key IS NULL THEN 0.5
                    WHEN v.winner_key = h.better_key THEN 1.0 ELSE 0.0 END)
    FROM labels h
    JOIN meta_verdicts v ON v.verdict_key = h.target_key AND v.run_id = h.run_id
    WHERE h.target = 'verdict'
    GROUP BY ALL
)
SELECT run_id, iteration, measure, n, successes / n AS value,
       wilson_interval(successes, n).lo AS lo, wilson_interval(successes, n).hi AS hi
FROM shares
UNION ALL
SELECT run_id, iteration, 'judge_rank_correlation', n, r,
       CASE WHEN n >= 4 THEN tanh(atanh(r) - 1.959963984540054 / sqrt(n - 3)) END,
       CASE WHEN n >= 4 THEN tanh(atanh(r) + 1.959963984540054 / sqrt(n - 3)) END
FROM spearman
ORDER BY run_id, iteration, measure;
