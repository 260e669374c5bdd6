-- Stored Responses API conversations (POST /v1/responses with store: true). A
-- response belongs to the key that created it (caller_id; '' without auth); record is
-- the response object with the conversation's input items, as JSON. Responses older
-- than responses.retention are swept by created_at. json (not jsonb) keeps the text
-- as sent, raw tool schemas included.
CREATE TABLE responses (
    id         text PRIMARY KEY,
    caller_id  text NOT NULL,
    created_at timestamptz NOT NULL,
    record     json NOT NULL
);
CREATE INDEX responses_created_at ON responses (created_at);
