package postgres

import (
	"slices"
	"testing"
)

func TestTablesListsMigrationTables(t *testing.T) {
	got, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"api_keys", "usage_records"} {
		if !slices.Contains(got, want) {
			t.Errorf("Tables() = %v, missing %s", got, want)
		}
	}
	if slices.Contains(got, "schema_migrations") {
		t.Errorf("Tables() = %v lists schema_migrations", got)
	}
}
