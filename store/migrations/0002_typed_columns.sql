-- Schema 2: typed copies of the hot payload fields, written at append time so the views read
-- columns instead of parsing JSON. The payload keeps every field, so SQL written against
-- payload->>'$.score' and the like still works. Rows logged before this migration are
-- filled from their payloads here, once.
ALTER TABLE events ADD COLUMN prompt_key VARCHAR;
ALTER TABLE events ADD COLUMN item_index INTEGER;
ALTER TABLE events ADD COLUMN score DOUBLE;
ALTER TABLE events ADD COLUMN winner VARCHAR;
ALTER TABLE events ADD COLUMN first_key VARCHAR;
ALTER TABLE events ADD COLUMN second_key VARCHAR;
ALTER TABLE events ADD COLUMN parse_error VARCHAR;
ALTER TABLE events ADD COLUMN fallback_used BOOLEAN;
ALTER TABLE events ADD COLUMN prompt_tokens INTEGER;
ALTER TABLE events ADD COLUMN completion_tokens INTEGER;
ALTER TABLE events ADD COLUMN prompt_tokens_evaluated INTEGER;
ALTER TABLE events ADD COLUMN finish_reason VARCHAR;
ALTER TABLE events ADD COLUMN model_sha256 VARCHAR;
ALTER TABLE events ADD COLUMN template_sha256 VARCHAR;
ALTER TABLE events ADD COLUMN text_chars INTEGER;
UPDATE events SET text_chars = length(text) WHERE text IS NOT NULL;
UPDATE events SET
    prompt_key = CASE WHEN event_type = 'ResponseGenerated' THEN parent_key
                      ELSE payload->>'$.prompt_key' END,
    item_index = CASE WHEN event_type = 'ResponseGenerated'
                      THEN (payload->>'$.sample_index')::INTEGER
                      ELSE (payload->>'$.judge_index')::INTEGER END,
    score = (payload->>'$.score')::DOUBLE,
    winner = payload->>'$.winner',
    first_key = payload->>'$.first_key',
    second_key = payload->>'$.second_key',
    parse_error = payload->>'$.parse_error',
    fallback_used = (payload->>'$.fallback_used')::BOOLEAN,
    prompt_tokens = (payload->>'$.prompt_tokens')::INTEGER,
    completion_tokens = (payload->>'$.completion_tokens')::INTEGER,
    prompt_tokens_evaluated = (payload->>'$.prompt_tokens_evaluated')::INTEGER,
    finish_reason = payload->>'$.finish_reason',
    model_sha256 = payload->>'$.model_sha256',
    template_sha256 = payload->>'$.template_sha256'
WHERE event_type IN ('ResponseGenerated', 'JudgementRecorded', 'MetaVerdictRecorded');
