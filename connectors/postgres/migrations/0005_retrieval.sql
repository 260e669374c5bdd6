-- The files and vector stores API's catalog (package retrieval): uploaded files with
-- their bytes, vector stores, the files attached to them and file batches. Every row
-- belongs to the key that created it (owner: its key id, '' without auth); the API
-- answers another owner's id as an unknown one. record is the object as JSON; the
-- columns queried are kept beside it. The chunks' vectors live in the vector index
-- (embedded or Qdrant), not here.
CREATE TABLE retrieval_files (
    id      text PRIMARY KEY,
    owner   text NOT NULL,
    record  json NOT NULL,
    content bytea NOT NULL
);
CREATE INDEX retrieval_files_owner ON retrieval_files (owner, id);

CREATE TABLE vector_stores (
    id     text PRIMARY KEY,
    owner  text NOT NULL,
    record json NOT NULL
);
CREATE INDEX vector_stores_owner ON vector_stores (owner, id);

CREATE TABLE vector_store_files (
    store_id text NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    file_id  text NOT NULL,
    owner    text NOT NULL,
    status   text NOT NULL,
    record   json NOT NULL,
    PRIMARY KEY (store_id, file_id)
);
-- Restart recovery lists the unfinished ingestions of every owner.
CREATE INDEX vector_store_files_in_progress ON vector_store_files (status) WHERE status = 'in_progress';

CREATE TABLE vector_store_file_batches (
    id       text PRIMARY KEY,
    store_id text NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    owner    text NOT NULL,
    record   json NOT NULL
);
