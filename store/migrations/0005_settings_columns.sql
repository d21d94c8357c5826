-- Schema 5: typed copies of what iterations and templates are read by. Every pair view reads
-- `iteration_settings` (several times per query) and `preference_pairs` reads `templates`;
-- those rows are few, but in a log of many runs they are spread over the whole table, and
-- reading their payloads touched every block of `payload` (or `text`). These columns are NULL
-- on every other event, so reading them costs next to nothing:
--   settings      JSON       IterationStarted: its settings
--   model_id      VARCHAR    IterationStarted: model.model_id
--   model_sha256  (schema 2) now also IterationStarted: model.model_sha256
--   template_sha256 (schema 2) now also TemplateRegistered: sha256
--   segments      VARCHAR[]  TemplateRegistered: the template's segments
-- Rows logged before this migration are filled from their payloads here, once.
ALTER TABLE events ADD COLUMN settings JSON;
ALTER TABLE events ADD COLUMN model_id VARCHAR;
ALTER TABLE events ADD COLUMN segments VARCHAR[];
UPDATE events SET
    settings = payload->'$.settings',
    model_id = payload->>'$.model.model_id',
    model_sha256 = payload->>'$.model.model_sha256'
WHERE event_type = 'IterationStarted';
UPDATE events SET
    template_sha256 = payload->>'$.sha256',
    segments = from_json(payload->'$.segments', '["VARCHAR"]')
WHERE event_type = 'TemplateRegistered';
