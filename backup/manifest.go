package backup

import (
	"encoding/json"
	"fmt"
	"path"
	"time"
)

// FormatVersion is the archive format this package writes and reads.
const FormatVersion = 1

// Names of the fixed archive entries.
const (
	manifestName    = "manifest.json"
	manifestSumName = "manifest.sha256"
	configName      = "config.yaml"
	pointsName      = "vectors/points.jsonl"
	catalogName     = "retrieval/catalog.db"
)

// Part kinds.
const (
	// KindTable is one PostgreSQL table in COPY text format.
	KindTable = "postgres_table"
	// KindConfig is the effective configuration, secrets redacted (YAML).
	KindConfig = "config"
	// KindPoints is the vector index's points, one JSON object a line: id, store_id,
	// file_id, chunk, text, attributes and vector.
	KindPoints = "vector_points"
	// KindCatalog is the embedded retrieval catalog (a copy of its Bolt file), present
	// when the catalog is not in PostgreSQL.
	KindCatalog = "retrieval_catalog"
)

// maxManifestBytes bounds the manifest read from an archive.
const maxManifestBytes = 1 << 20

// Manifest describes an archive: what it holds and how to check it.
type Manifest struct {
	// Format is FormatVersion of the writer.
	Format int `json:"format"`
	// CreatedAt is when the snapshot was taken.
	CreatedAt time.Time `json:"created_at"`
	// SchemaVersion is the newest migration applied to the source database (0 without
	// a database).
	SchemaVersion int `json:"schema_version,omitempty"`
	// Parts are the archive's data entries, in archive order (tables in an order that
	// satisfies their foreign keys).
	Parts []Part `json:"parts"`
	// Redacted lists the configuration fields whose values were left out.
	Redacted []string `json:"redacted,omitempty"`
}

// Part is one data entry of an archive.
type Part struct {
	// Name is the entry's path in the archive.
	Name string `json:"name"`
	// Kind is KindTable, KindConfig, KindPoints or KindCatalog.
	Kind string `json:"kind"`
	// Table and Columns name what a KindTable part holds, in COPY column order.
	Table   string   `json:"table,omitempty"`
	Columns []string `json:"columns,omitempty"`
	// Rows is the number of rows (lines for COPY text, points for KindPoints), 0 for the
	// config and the catalog.
	Rows int64 `json:"rows"`
	// Bytes is the entry's size.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex sha256 of the entry.
	SHA256 string `json:"sha256"`
}

// tablePartName is the archive entry of a table.
func tablePartName(table string) string { return "postgres/" + table + ".copy" }

// parseManifest decodes and checks the shape of a manifest.
func parseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrCorrupt, err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("%w: manifest.json: format %d, this hxp reads format %d", ErrCorrupt, m.Format, FormatVersion)
	}
	seen := map[string]bool{}
	for i, p := range m.Parts {
		bad := func(why string) error {
			return fmt.Errorf("%w: manifest.json: parts[%d] (%q): %s", ErrCorrupt, i, p.Name, why)
		}
		switch {
		case seen[p.Name]:
			return nil, bad("listed twice")
		case p.Name == manifestName || p.Name == manifestSumName || path.Clean(p.Name) != p.Name:
			return nil, bad("not a valid part name")
		case len(p.SHA256) != 64:
			return nil, bad("sha256 is not 64 hex digits")
		case p.Rows < 0 || p.Bytes < 0:
			return nil, bad("negative rows or bytes")
		case p.Kind == KindTable && (p.Table == "" || len(p.Columns) == 0 || p.Name != tablePartName(p.Table)):
			return nil, bad("table part without a matching table name and columns")
		case p.Kind == KindConfig && p.Name != configName:
			return nil, bad("config part not named " + configName)
		case p.Kind == KindPoints && p.Name != pointsName:
			return nil, bad("points part not named " + pointsName)
		case p.Kind == KindCatalog && p.Name != catalogName:
			return nil, bad("catalog part not named " + catalogName)
		case p.Kind != KindTable && p.Kind != KindConfig && p.Kind != KindPoints && p.Kind != KindCatalog:
			return nil, bad(fmt.Sprintf("unknown kind %q", p.Kind))
		}
		seen[p.Name] = true
	}
	return &m, nil
}

// Tables returns the manifest's table parts in archive order.
func (m *Manifest) Tables() []Part {
	var out []Part
	for _, p := range m.Parts {
		if p.Kind == KindTable {
			out = append(out, p)
		}
	}
	return out
}
