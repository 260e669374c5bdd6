package responses_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/responses"
	"github.com/hxp-ai/hxp/responses/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) responses.Store { return responses.NewMemory(100, 1<<20) })
}

// TestMemoryBounds drops the least recently used responses beyond the count and the
// bytes.
func TestMemoryBounds(t *testing.T) {
	ctx := context.Background()
	m := responses.NewMemory(2, 1<<20)
	a, b, c := storetest.Sample("k", time.Now()), storetest.Sample("k", time.Now()), storetest.Sample("k", time.Now())
	for _, r := range []*responses.Record{a, b} {
		if err := m.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Get(ctx, a.ID, "k"); err != nil { // a is now the most recently used
		t.Fatal(err)
	}
	if err := m.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, b.ID, "k"); !errors.Is(err, responses.ErrNotFound) {
		t.Errorf("the least recently used response survived the count bound: %v", err)
	}
	for _, r := range []*responses.Record{a, c} {
		if _, err := m.Get(ctx, r.ID, "k"); err != nil {
			t.Errorf("%s dropped: %v", r.ID, err)
		}
	}

	small := responses.NewMemory(100, 3000) // about two samples' JSON
	for range 5 {
		if err := small.Put(ctx, storetest.Sample("k", time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if n := small.Len(); n < 1 || n >= 5 {
		t.Errorf("byte-bounded store holds %d responses, want fewer than 5 and at least 1", n)
	}
}
