package postgres

import (
	"testing"

	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/responses"
	"github.com/hxp-ai/hxp/responses/storetest"
)

// TestResponseStoreConformance runs the store suite on PostgreSQL.
func TestResponseStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) responses.Store {
		return openDB(testCtx(t), t, testenv.SharedPostgres(t).URL()).Responses()
	})
}
