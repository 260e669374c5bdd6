package graphql

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/99designs/gqlgen/api"
	gqlconfig "github.com/99designs/gqlgen/codegen/config"
)

// sourceName is the schema's name in the generated sources, relative to the output
// directory, which differs between the temporary and the committed one.
var sourceName = regexp.MustCompile(`\{Name: "[^"]*schema\.graphql"`)

// TestGeneratedCodeIsFresh regenerates the executor from schema.graphql and
// gqlgen.yml with gqlgen (the version pinned in go.mod) into a temporary directory and
// fails when the committed generated/generated.go differs: run `make graphql` and
// commit.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the module's packages with their types")
	}
	cfg, err := gqlconfig.LoadConfig("gqlgen.yml")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "generated.go")
	cfg.Exec.Filename = out
	if err := api.Generate(cfg, api.NoPlugins()); err != nil { // no models, no resolvers: nothing written beside the schema
		t.Fatalf("gqlgen: %v", err)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join("generated", "generated.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sourceName.ReplaceAll(fresh, nil), sourceName.ReplaceAll(committed, nil)) {
		t.Error("transport/graphql/generated/generated.go is stale: schema.graphql or gqlgen.yml changed; run `make graphql` and commit")
	}
	entries, _ := os.ReadDir("generated")
	if len(entries) != 1 {
		t.Errorf("transport/graphql/generated has %d files, want the generated one", len(entries))
	}
}
