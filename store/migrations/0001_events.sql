-- The append-only event log. Rows are only ever inserted; nothing updates or deletes them.
CREATE TABLE events (
    seq           BIGINT      NOT NULL,  -- total order of the log, assigned by the single writer
    event_type    VARCHAR     NOT NULL,  -- past tense: ResponseGenerated, JudgementRecorded, ...
    event_version SMALLINT    NOT NULL,  -- payload schema version of this event type
    run_id        VARCHAR     NOT NULL,
    iteration     INTEGER,               -- NULL for run-level events
    key           VARCHAR,               -- deterministic unit-of-work key; NULL if not a unit
    parent_key    VARCHAR,               -- the unit this one is about (prompt, response, ...)
    created_at    TIMESTAMPTZ NOT NULL,
    text          VARCHAR,               -- model output or prompt text, verbatim (untrusted)
    payload       JSON        NOT NULL   -- everything else: parsed fields and provenance
);

CREATE TABLE mrtui_meta (
    name  VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    set_at TIMESTAMPTZ NOT NULL
);
