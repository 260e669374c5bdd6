package postgres

import (
	"testing"

	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/retrieval/catalogtest"
)

// TestCatalogConformance runs the retrieval catalog suite on PostgreSQL (each subtest
// on a database of its own).
func TestCatalogConformance(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) retrieval.Catalog {
		return openDB(testCtx(t), t, testenv.SharedPostgres(t).URL()).Catalog()
	})
}
