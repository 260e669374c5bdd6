// Package postgres is HXP's PostgreSQL connector: API keys (only their hashes are stored) and
// the usage ledger, one row per request, written asynchronously in batches and spooled to a
// local file while the database is unreachable.
//
// Open connects, applies the embedded schema migrations under an advisory lock (so several
// gateways may start at once) and returns a DB. Keys are managed through CreateKey, ListKeys,
// RevokeKey and LookupKey; usage is recorded through a Ledger from NewLedger and read back
// through UsageThisMonth and Usage.
package postgres
