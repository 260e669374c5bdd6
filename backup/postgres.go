package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/hxp-ai/hxp/connectors/postgres"
)

// ErrNotEmpty is returned by Restore when the target database already holds HXP data
// and Force is not set.
var ErrNotEmpty = errors.New("the target database is not empty")

// Progress is told how far a part has got: rows done of total. It is called often;
// it must be quick.
type Progress func(part string, done, total int64)

// connect opens one connection to url without quoting the URL (it may hold a password)
// in errors.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("backup: invalid PostgreSQL connection URL")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("backup: connect to PostgreSQL: %w", err)
	}
	return conn, nil
}

// ident quotes a table or column name for SQL.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// copySQL is the COPY statement of a table's columns in direction "TO STDOUT" or
// "FROM STDIN".
func copySQL(table string, cols []string, direction string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = ident(c)
	}
	return fmt.Sprintf("COPY %s (%s) %s", ident(table), strings.Join(q, ", "), direction)
}

// schemaVersion is the newest migration applied to the database.
func schemaVersion(ctx context.Context, tx pgx.Tx) (int, error) {
	var v int
	err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("backup: read schema_migrations (is this HXP's database?): %w", err)
	}
	return v, nil
}

// presentTables returns the HXP tables that exist in the database, parents of foreign
// keys before their children (otherwise in migration order).
func presentTables(ctx context.Context, tx pgx.Tx) ([]string, error) {
	all, err := postgres.Tables()
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var present []string
	for _, t := range all {
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", ident(t)).Scan(&ok); err != nil {
			return nil, fmt.Errorf("backup: look up table %s: %w", t, err)
		}
		if ok {
			present = append(present, t)
		}
	}
	rows, err := tx.Query(ctx, `SELECT c.relname, p.relname FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid
		WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace`)
	if err != nil {
		return nil, fmt.Errorf("backup: read foreign keys: %w", err)
	}
	parents := map[string][]string{}
	for rows.Next() {
		var child, parent string
		if err := rows.Scan(&child, &parent); err != nil {
			return nil, fmt.Errorf("backup: read foreign keys: %w", err)
		}
		if child != parent {
			parents[child] = append(parents[child], parent)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("backup: read foreign keys: %w", err)
	}
	return parentsFirst(present, parents), nil
}

// parentsFirst orders tables so that each comes after the tables it references,
// keeping the given order otherwise. A reference cycle keeps the given order.
func parentsFirst(tables []string, parents map[string][]string) []string {
	var out []string
	done := map[string]bool{}
	visiting := map[string]bool{}
	var visit func(t string)
	visit = func(t string) {
		if done[t] || visiting[t] || !slices.Contains(tables, t) {
			return
		}
		visiting[t] = true
		for _, p := range parents[t] {
			visit(p)
		}
		visiting[t] = false
		done[t] = true
		out = append(out, t)
	}
	for _, t := range tables {
		visit(t)
	}
	return out
}

// columns lists a table's stored columns (generated ones are left out: PostgreSQL
// computes them again) in table order.
func columns(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, table string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT attname FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
		ORDER BY attnum`, ident(table))
	if err != nil {
		return nil, fmt.Errorf("backup: columns of %s: %w", table, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("backup: columns of %s: %w", table, err)
	}
	return cols, nil
}

// dumpPostgres copies every HXP table, from one REPEATABLE READ, READ ONLY snapshot,
// into spool files in dir, and notes the vector-store files completed in it.
func dumpPostgres(ctx context.Context, url, dir string, done completedFiles, progress Progress) (int, []spooled, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, nil, fmt.Errorf("backup: begin snapshot: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	version, err := schemaVersion(ctx, tx)
	if err != nil {
		return 0, nil, err
	}
	tables, err := presentTables(ctx, tx)
	if err != nil {
		return 0, nil, err
	}
	var out []spooled
	for _, t := range tables {
		s, err := dumpTable(ctx, tx, t, dir, progress)
		if err != nil {
			return 0, nil, err
		}
		out = append(out, s)
	}
	if err := completedInPostgres(ctx, tx, done); err != nil {
		return 0, nil, err
	}
	return version, out, tx.Commit(ctx)
}

// dumpTable streams one table into a spool file, counting and hashing on the way.
func dumpTable(ctx context.Context, tx pgx.Tx, table, dir string, progress Progress) (spooled, error) {
	cols, err := columns(ctx, tx, table)
	if err != nil {
		return spooled{}, err
	}
	var total int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+ident(table)).Scan(&total); err != nil {
		return spooled{}, fmt.Errorf("backup: count %s: %w", table, err)
	}
	part := Part{Name: tablePartName(table), Kind: KindTable, Table: table, Columns: cols}
	path := filepath.Join(dir, table+".copy")
	f, err := os.Create(path)
	if err != nil {
		return spooled{}, fmt.Errorf("backup: spool %s: %w", table, err)
	}
	defer f.Close()
	s := newSummer()
	if progress != nil {
		progress(part.Name, 0, total)
		s.onRows = func(rows int64) { progress(part.Name, rows, total) }
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	tag, err := tx.Conn().PgConn().CopyTo(ctx, io.MultiWriter(bw, s), copySQL(table, cols, "TO STDOUT"))
	if err != nil {
		return spooled{}, fmt.Errorf("backup: copy %s: %w", table, err)
	}
	if err := bw.Flush(); err != nil {
		return spooled{}, fmt.Errorf("backup: spool %s: %w", table, err)
	}
	if err := f.Close(); err != nil {
		return spooled{}, fmt.Errorf("backup: spool %s: %w", table, err)
	}
	if tag.RowsAffected() != s.rows {
		return spooled{}, fmt.Errorf("backup: copy %s: PostgreSQL sent %d rows, %d lines arrived", table, tag.RowsAffected(), s.rows)
	}
	part.Rows, part.Bytes, part.SHA256 = s.rows, s.bytes, s.sum()
	return spooled{part: part, path: path}, nil
}

// restorePostgres loads the table parts of a verified archive into the database at url
// in one transaction.
func restorePostgres(ctx context.Context, url, path string, m *Manifest, force bool, progress Progress) error {
	// Open applies HXP's migrations, so the target has the schema the data goes into.
	db, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 1})
	if err != nil {
		return fmt.Errorf("backup: prepare target: %w", err)
	}
	db.Close()
	conn, err := connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("backup: begin restore: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	version, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if version < m.SchemaVersion {
		return fmt.Errorf("backup: the archive has schema version %d, this hxp knows up to %d: restore with a newer hxp", m.SchemaVersion, version)
	}
	target, err := presentTables(ctx, tx)
	if err != nil {
		return err
	}
	if err := checkTarget(ctx, tx, m, target); err != nil {
		return err
	}
	if err := emptyTarget(ctx, tx, target, force); err != nil {
		return err
	}
	_, err = walk(path, func(p Part, r io.Reader) error {
		if p.Kind != KindTable {
			return nil
		}
		if progress != nil {
			progress(p.Name, 0, p.Rows)
			s := newSummer()
			s.onRows = func(rows int64) { progress(p.Name, rows, p.Rows) }
			r = io.TeeReader(r, s)
		}
		tag, err := tx.Conn().PgConn().CopyFrom(ctx, r, copySQL(p.Table, p.Columns, "FROM STDIN"))
		if err != nil {
			return fmt.Errorf("backup: restore %s: %w", p.Table, err)
		}
		if tag.RowsAffected() != p.Rows {
			return fmt.Errorf("backup: restore %s: %d rows loaded, the manifest says %d", p.Table, tag.RowsAffected(), p.Rows)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range m.Tables() {
		if err := resetSequences(ctx, tx, p); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("backup: commit restore: %w", err)
	}
	return nil
}

// checkTarget makes sure every table and column of the archive exists in the target.
func checkTarget(ctx context.Context, tx pgx.Tx, m *Manifest, target []string) error {
	for _, p := range m.Tables() {
		if !slices.Contains(target, p.Table) {
			return fmt.Errorf("backup: the target has no table %s (restore with the hxp version that wrote the archive)", p.Table)
		}
		cols, err := columns(ctx, tx, p.Table)
		if err != nil {
			return err
		}
		for _, c := range p.Columns {
			if !slices.Contains(cols, c) {
				return fmt.Errorf("backup: the target's table %s has no column %s", p.Table, c)
			}
		}
	}
	return nil
}

// emptyTarget refuses a target that holds rows, or with force empties it (inside the
// restore's transaction, so a failed restore keeps the old rows).
func emptyTarget(ctx context.Context, tx pgx.Tx, tables []string, force bool) error {
	var full []string
	for _, t := range tables {
		var any bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+ident(t)+")").Scan(&any); err != nil {
			return fmt.Errorf("backup: check %s is empty: %w", t, err)
		}
		if any {
			full = append(full, t)
		}
	}
	if len(full) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("backup: %w: tables %s hold rows; restore into an empty database, or pass --force to replace them",
			ErrNotEmpty, strings.Join(full, ", "))
	}
	q := make([]string, len(tables))
	for i, t := range tables {
		q[i] = ident(t)
	}
	if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(q, ", ")); err != nil {
		return fmt.Errorf("backup: empty the target: %w", err)
	}
	return nil
}

// resetSequences moves the sequences behind a table's identity and serial columns past
// the restored values, so that new rows do not collide with them.
func resetSequences(ctx context.Context, tx pgx.Tx, p Part) error {
	for _, c := range p.Columns {
		var seq *string
		if err := tx.QueryRow(ctx, "SELECT pg_get_serial_sequence($1, $2)", ident(p.Table), c).Scan(&seq); err != nil {
			return fmt.Errorf("backup: sequence of %s.%s: %w", p.Table, c, err)
		}
		if seq == nil {
			continue
		}
		q := fmt.Sprintf("SELECT setval($1, coalesce(max(%s), 0) + 1, false) FROM %s", ident(c), ident(p.Table))
		if _, err := tx.Exec(ctx, q, *seq); err != nil {
			return fmt.Errorf("backup: reset sequence %s: %w", *seq, err)
		}
	}
	return nil
}
