package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hxp-ai/hxp/config"
)

// Options says what Create backs up.
type Options struct {
	// PostgresURL is HXP's database; "" backs up no tables.
	PostgresURL string
	// Config is the effective configuration, stored with its secrets redacted; nil
	// stores none.
	Config *config.Config
	// Retrieval, when set, adds the vector index's points (of the files completed in
	// the catalog snapshot) and the embedded catalog, if it has one.
	Retrieval *Retrieval
	// Progress, when set, follows each table's rows.
	Progress Progress
	// Now is the clock for the manifest's time; nil means time.Now.
	Now func() time.Time
}

// Create writes an archive of what opts names to out. The archive appears at out only
// when it is complete; a failed backup leaves nothing there.
func Create(ctx context.Context, out string, opts Options) (*Manifest, error) {
	if opts.PostgresURL == "" && opts.Config == nil && opts.Retrieval == nil {
		return nil, errors.New("backup: nothing to back up: give a PostgreSQL URL, a config or the retrieval storage")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	m := &Manifest{Format: FormatVersion, CreatedAt: now().UTC()}
	dir, err := spoolDir(out)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var parts []spooled
	done := completedFiles{}
	if opts.PostgresURL != "" {
		m.SchemaVersion, parts, err = dumpPostgres(ctx, opts.PostgresURL, dir, done, opts.Progress)
		if err != nil {
			return nil, err
		}
	}
	if r := opts.Retrieval; r != nil {
		// The index is scrolled after the catalog's snapshot; see the package doc.
		if r.CatalogPath != "" {
			s, err := spoolCatalog(r.CatalogPath, dir, done)
			if err != nil {
				return nil, err
			}
			parts = append(parts, s...)
		}
		s, err := spoolPoints(ctx, r.Index, dir, done, opts.Progress)
		if err != nil {
			return nil, err
		}
		parts = append(parts, s...)
	}
	if opts.Config != nil {
		s, redacted, err := spoolConfig(opts.Config, dir)
		if err != nil {
			return nil, err
		}
		parts = append(parts, s)
		m.Redacted = redacted
	}
	for _, s := range parts {
		m.Parts = append(m.Parts, s.part)
	}
	if err := writeArchive(out, m, parts); err != nil {
		return nil, err
	}
	return m, nil
}

// spoolConfig writes the redacted configuration to a spool file.
func spoolConfig(cfg *config.Config, dir string) (spooled, []string, error) {
	b, redacted, err := RedactConfig(cfg)
	if err != nil {
		return spooled{}, nil, err
	}
	path := dir + "/" + configName
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return spooled{}, nil, fmt.Errorf("backup: spool config: %w", err)
	}
	s := newSummer()
	s.Write(b)
	p := Part{Name: configName, Kind: KindConfig, Bytes: s.bytes, SHA256: s.sum()}
	return spooled{part: p, path: path}, redacted, nil
}

// RestoreOptions says where Restore writes.
type RestoreOptions struct {
	// PostgresURL is the target database; required when the archive holds tables.
	PostgresURL string
	// Retrieval is the target of the archive's vector index points and embedded
	// catalog; required when the archive holds them.
	Retrieval *Retrieval
	// Force replaces the rows of a target that is not empty (in the same transaction),
	// the target index's points and its catalog file.
	Force bool
	// Progress, when set, follows each table's rows.
	Progress Progress
}

// Restore verifies the archive at path whole, then loads its tables into the target
// database in one transaction: all of them, or (on any error) none. The target's
// schema is migrated first. Then it writes the retrieval parts (restoreRetrieval): the
// points are deleted again and the catalog file left as it was if they fail. A target
// database holding rows, an index holding points or an existing catalog file is
// ErrNotEmpty, checked before anything is written, unless Force is set.
// The configuration part is not written anywhere: it is the record of how the source
// was configured, with its secrets left out.
func Restore(ctx context.Context, path string, opts RestoreOptions) (*Manifest, error) {
	m, err := Verify(path)
	if err != nil {
		return nil, err
	}
	if len(m.Tables()) > 0 && opts.PostgresURL == "" {
		return nil, errors.New("backup: the archive holds PostgreSQL tables: give the target database's URL")
	}
	if m.HasRetrieval() {
		if err := checkRetrievalTarget(ctx, opts.Retrieval, m, opts.Force); err != nil {
			return nil, err
		}
	}
	if len(m.Tables()) > 0 {
		if err := restorePostgres(ctx, opts.PostgresURL, path, m, opts.Force, opts.Progress); err != nil {
			return nil, err
		}
	}
	if m.HasRetrieval() {
		if err := restoreRetrieval(ctx, path, opts.Retrieval, opts.Force, opts.Progress); err != nil {
			return nil, err
		}
	}
	return m, nil
}
