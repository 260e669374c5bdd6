-- A key's share of a busy model (weight, relative to other keys) and its scheduling
-- class. Existing keys get an equal share and the interactive class.
ALTER TABLE api_keys
    ADD COLUMN weight   double precision NOT NULL DEFAULT 1 CHECK (weight > 0 AND weight <= 1000),
    ADD COLUMN priority text NOT NULL DEFAULT 'interactive' CHECK (priority IN ('interactive', 'batch'));
