package postgres

import (
	"fmt"
	"regexp"
	"strings"
)

// tableStmt finds the CREATE TABLE and DROP TABLE statements of a migration.
var tableStmt = regexp.MustCompile(`(?i)\b(CREATE|DROP)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?("?[A-Za-z_][A-Za-z0-9_]*"?)`)

// Tables lists the tables that HXP's migrations create (and do not drop again), in the
// order they are first created, without schema_migrations. Backups enumerate them, so a
// table added by a new migration is backed up without further code.
func Tables() ([]string, error) {
	migs, err := loadMigrations(migrationFS)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var order []string
	live := map[string]bool{}
	for _, m := range migs {
		for _, s := range tableStmt.FindAllStringSubmatch(stripSQLComments(m.sql), -1) {
			name := strings.ToLower(strings.Trim(s[2], `"`))
			if strings.EqualFold(s[1], "DROP") {
				delete(live, name)
				continue
			}
			if !live[name] {
				live[name] = true
				order = append(order, name)
			}
		}
	}
	out := order[:0]
	for _, n := range order {
		if live[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// stripSQLComments removes "--" line comments, so that prose in a migration's header
// never reads as a statement.
func stripSQLComments(sql string) string {
	lines := strings.Split(sql, "\n")
	for i, l := range lines {
		if j := strings.Index(l, "--"); j >= 0 {
			lines[i] = l[:j]
		}
	}
	return strings.Join(lines, "\n")
}
