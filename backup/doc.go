// Package backup writes and reads HXP's backup archives: everything HXP keeps in
// PostgreSQL (every table of its migrations: API keys as stored, hashes only; the usage
// ledger; stored responses; the retrieval catalog of files with their bytes, vector
// stores, their files and batches; any table added later), the vector index's points
// (chunks with their text, attributes and embeddings, from the embedded index or from
// Qdrant by scrolling), the embedded retrieval catalog when there is no PostgreSQL, and
// the effective configuration with its secrets redacted.
//
// An archive is a tar stream compressed with zstd. Its first entry is manifest.json
// (a Manifest: each part with its row count, size and sha256), its second
// manifest.sha256 (the manifest's own checksum), then the parts in manifest order:
// postgres/TABLE.copy (PostgreSQL's COPY text format), retrieval/catalog.db (a copy of
// the embedded catalog's Bolt file, taken in one read transaction), vectors/points.jsonl
// (one JSON object a line: id, store_id, file_id, chunk, text, attributes, vector; rows
// are points) and config.yaml.
//
// The catalog and the index are not one snapshot. The index is scrolled after the
// catalog's snapshot is taken, and only the points of files completed in that snapshot
// are written: a file being ingested during the backup is restored in_progress without
// points, and the restored server's restart recovery ingests it again; a file added
// after the snapshot is in neither. A file deleted between the snapshot and the scroll
// is restored completed with its points missing (it is found by no search): delete it
// again after the restore.
//
// Create reads every table in one REPEATABLE READ, READ ONLY transaction, so the parts
// are one consistent snapshot while the server keeps serving. Rows are streamed: each
// table is copied to a spool file beside the archive (so that the manifest, which needs
// the checksums, can come first), then into the archive; memory does not grow with the
// data. Verify checks every checksum and row count; Restore verifies the whole archive
// and that every target is empty (or Force) before it writes anything, then loads every
// table in one transaction (COPY FROM), writes the catalog file through a temporary file
// renamed into place, and upserts the points, deleting them again if any fails: each
// system either completes or changes nothing. The embedded catalog and index are files
// a running server locks: back them up and restore them with the server stopped (the
// PostgreSQL tables and Qdrant can be backed up while it serves).
//
// Redis is not backed up: it holds rate-limit buckets and leases (windows of a minute at
// most), cached responses (recomputed on a miss) and invalidation messages, all of which
// a fresh Redis rebuilds by itself.
package backup
