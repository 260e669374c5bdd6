-- The usage ledger: one row per request. request_id is unique so that replaying a spool file
-- after a partial write never counts a request twice. key_id has no foreign key: keys from the
-- static config are recorded too.
CREATE TABLE usage_records (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        text NOT NULL UNIQUE,
    key_id            text NOT NULL,
    model             text NOT NULL,
    prompt_tokens     integer NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL CHECK (completion_tokens >= 0),
    latency_ms        integer NOT NULL CHECK (latency_ms >= 0),
    status_code       smallint NOT NULL,
    created_at        timestamptz NOT NULL
);

CREATE INDEX usage_records_key_created_idx ON usage_records (key_id, created_at);
CREATE INDEX usage_records_created_idx ON usage_records (created_at);
