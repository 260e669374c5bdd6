package retrieval_test

import (
	"path/filepath"
	"testing"

	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/retrieval/catalogtest"
)

// TestBoltConformance runs the catalog suite on the embedded Bolt catalog.
func TestBoltConformance(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) retrieval.Catalog {
		c, err := retrieval.OpenBolt(filepath.Join(t.TempDir(), "catalog.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	})
}

// A second process (or a second open in this one) cannot open a catalog in use: it
// fails with the path instead of corrupting it.
func TestBoltRefusesASecondOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "catalog.db")
	c, err := retrieval.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := retrieval.OpenBolt(path); err == nil {
		t.Fatal("a second OpenBolt of a catalog in use succeeded")
	}
}
