-- Schema 4: typed copies of the probability-scoring fields (judge_scoring / meta_scoring =
-- 'expected'), so the judgement, verdict and comparison views and the Bradley–Terry fits over
-- them read columns instead of parsing every payload: `scoring` and `choice_mass` (judgement,
-- verdict and comparison events), `sampled_score` and `choice_probs` (judgements; the MAP keys
-- in the payload's order, which is sorted), `p_first` (verdicts and comparisons). Each column
-- holds exactly what the views used to read from the payload; rows logged before this
-- migration are filled from their payloads here, once. Sampled scoring leaves them NULL.
ALTER TABLE events ADD COLUMN scoring VARCHAR;
ALTER TABLE events ADD COLUMN choice_mass DOUBLE;
ALTER TABLE events ADD COLUMN sampled_score DOUBLE;
ALTER TABLE events ADD COLUMN choice_probs MAP(VARCHAR, DOUBLE);
ALTER TABLE events ADD COLUMN p_first DOUBLE;
UPDATE events SET
    scoring = payload->>'$.scoring',
    choice_mass = (payload->>'$.choice_mass')::DOUBLE
WHERE event_type IN ('JudgementRecorded', 'MetaVerdictRecorded', 'ResponsesCompared')
  AND (payload->>'$.scoring' IS NOT NULL OR payload->>'$.choice_mass' IS NOT NULL);
UPDATE events SET
    sampled_score = (payload->>'$.sampled_score')::DOUBLE,
    choice_probs = from_json(payload, '{"choice_probs":"MAP(VARCHAR, DOUBLE)"}').choice_probs
WHERE event_type = 'JudgementRecorded'
  AND (payload->>'$.sampled_score' IS NOT NULL OR payload->>'$.choice_probs' IS NOT NULL);
UPDATE events SET p_first = (payload->>'$.p_first')::DOUBLE
WHERE event_type IN ('MetaVerdictRecorded', 'ResponsesCompared')
  AND payload->>'$.p_first' IS NOT NULL;
