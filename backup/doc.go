// Package backup writes and reads HXP's backup archives: everything HXP keeps in
// PostgreSQL (every table of its migrations: API keys as stored, hashes only; the usage
// ledger; any table added later) and the effective configuration with its secrets
// redacted.
//
// An archive is a tar stream compressed with zstd. Its first entry is manifest.json
// (a Manifest: each part with its row count, size and sha256), its second
// manifest.sha256 (the manifest's own checksum), then the parts in manifest order:
// postgres/TABLE.copy (PostgreSQL's COPY text format) and config.yaml.
//
// Create reads every table in one REPEATABLE READ, READ ONLY transaction, so the parts
// are one consistent snapshot while the server keeps serving. Rows are streamed: each
// table is copied to a spool file beside the archive (so that the manifest, which needs
// the checksums, can come first), then into the archive; memory does not grow with the
// data. Verify checks every checksum and row count; Restore verifies the whole archive
// before it writes anything, then loads every table in one transaction (COPY FROM), so
// a restore either completes or changes nothing.
//
// Redis is not backed up: it holds rate-limit buckets and leases (windows of a minute at
// most), cached responses (recomputed on a miss) and invalidation messages, all of which
// a fresh Redis rebuilds by itself.
package backup
