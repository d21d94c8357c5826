-- Schema 3: a typed copy of `rationale_words` (judgement and verdict events, v2), so the
-- `judgements.eligible` column that gates meta-judging and judge Elo reads a column instead
-- of parsing every payload. Events logged before rationales were counted keep NULL.
ALTER TABLE events ADD COLUMN rationale_words INTEGER;
UPDATE events SET rationale_words = (payload->>'$.rationale_words')::INTEGER
WHERE event_type IN ('JudgementRecorded', 'MetaVerdictRecorded')
  AND payload->>'$.rationale_words' IS NOT NULL;
