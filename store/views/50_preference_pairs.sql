-- Every training pair in TRL's columns (prompt / chosen / rejected) plus kind and provenance.
-- chosen_score / rejected_score: the mean judge score of each response (actor pairs) or the
-- score each judgement gave (judge pairs); chosen_elo / rejected_elo only for judge pairs.
-- prompt is the user message the model saw: the actor template filled with the prompt for
-- actor pairs, the judge template filled with the prompt and response for judge pairs.
-- Templates are stored as segments, so filling is one pass and user text is never re-scanned.
-- Judge pairs carry their judgements' texts from the Elo fit (no second pass over the 1M
-- judgement rows); their model is the judged response's (one model plays every role of an
-- iteration).

CREATE OR REPLACE MACRO preference_pairs_with(rho := NULL, max_chosen_chars := NULL,
                                              judge_max_chars := NULL,
                                              drop_same_score := NULL,
                                              weights_scope := NULL,
                                              bt_prior_games := NULL) AS TABLE
SELECT 'actor' AS kind, a.run_id, a.iteration, a.prompt_key,
       'actor:' || a.chosen_key || ':' || a.rejected_key AS pair_key,
       array_to_string(list_transform(t.segments, lambda s:
           CASE s WHEN '{prompt}' THEN p.prompt ELSE s END), '') AS prompt,
       c.response AS chosen, r.response AS rejected,
       a.chosen_key, a.rejected_key, a.chosen_score, a.rejected_score,
       NULL::DOUBLE AS chosen_elo, NULL::DOUBLE AS rejected_elo,
       c.model_id, c.model_sha256, c.template_sha256
FROM actor_pairs_with(rho := rho, max_chosen_chars := max_chosen_chars) a
JOIN responses c ON c.response_key = a.chosen_key
JOIN responses r ON r.response_key = a.rejected_key
JOIN prompts p ON p.prompt_key = a.prompt_key AND p.run_id = a.run_id
JOIN templates t ON t.template_sha256 = c.template_sha256 AND t.run_id = a.run_id
UNION ALL
SELECT 'judge' AS kind, jp.run_id, jp.iteration, jp.prompt_key,
       'judge:' || jp.chosen_key || ':' || jp.rejected_key AS pair_key,
       array_to_string(list_transform(t.segments, lambda s:
           CASE s WHEN '{question}' THEN p.prompt WHEN '{response}' THEN resp.response
                  ELSE s END), '') AS prompt,
       jp.chosen_judgement AS chosen, jp.rejected_judgement AS rejected,
       jp.chosen_key, jp.rejected_key, jp.chosen_score, jp.rejected_score,
       1000 + 400 * jp.chosen_epsilon / ln(10), 1000 + 400 * jp.rejected_epsilon / ln(10),
       resp.model_id, resp.model_sha256, jp.template_sha256
FROM judge_pairs_with(judge_max_chars := judge_max_chars, drop_same_score := drop_same_score,
                      weights_scope := weights_scope, bt_prior_games := bt_prior_games) jp
JOIN responses resp ON resp.response_key = jp.response_key
JOIN prompts p ON p.prompt_key = jp.prompt_key AND p.run_id = jp.run_id
JOIN templates t ON t.template_sha256 = jp.template_sha256 AND t.run_id = jp.run_id;

CREATE OR REPLACE VIEW preference_pairs AS
SELECT * FROM preference_pairs_with();
