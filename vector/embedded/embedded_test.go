package embedded_test

import (
	"testing"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
	"github.com/hxp-ai/hxp/vector/vectortest"
)

func openTemp(t *testing.T, opts embedded.Options) *embedded.Index {
	t.Helper()
	x, err := embedded.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

func TestConformance(t *testing.T) {
	vectortest.Run(t, func(t *testing.T) vector.Index { return openTemp(t, embedded.Options{}) })
}
