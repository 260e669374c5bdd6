-- API keys. Only a SHA-256 hash of the secret is stored; id is the public part of the key,
-- used to find the row.
CREATE TABLE api_keys (
    id                   text PRIMARY KEY,
    secret_hash          bytea NOT NULL,
    name                 text NOT NULL,
    allowed_models       text[] NOT NULL DEFAULT '{}',
    rpm                  integer NOT NULL DEFAULT 0 CHECK (rpm >= 0),
    tpm                  integer NOT NULL DEFAULT 0 CHECK (tpm >= 0),
    monthly_token_budget bigint NOT NULL DEFAULT 0 CHECK (monthly_token_budget >= 0),
    expires_at           timestamptz,
    disabled             boolean NOT NULL DEFAULT false,
    revoked_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);
