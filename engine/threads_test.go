package engine_test

import (
	"errors"
	"runtime"
	"testing"

	"github.com/hxp-ai/hxp/engine"
)

// TestContextThreadPool: a context owns a pool of its decode threads; SetThreads grows
// it when asked for more, keeps it when asked for fewer, and decoding gives the same
// logits on either side of a change.
func TestContextThreadPool(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 cores")
	}
	m := loadTiny(t)
	ctx := newCtx(t, m, engine.ContextParams{Threads: 1})
	if n := engine.PoolThreads(ctx); n != 1 {
		t.Fatalf("pool of %d threads for a 1-thread context", n)
	}
	prompt := make([]engine.Token, 100)
	for p := range prompt {
		prompt[p] = engine.Token(p*31%500 + 10)
	}
	decode := func() []float32 {
		t.Helper()
		_, first := greedy(t, ctx, [][]engine.Token{prompt}, 1) // the prompt's last logits
		return first[0]
	}
	one := decode()
	for _, tc := range []struct{ threads, pool int }{{2, 2}, {1, 2}, {2, 2}} {
		if err := ctx.SetThreads(tc.threads); err != nil {
			t.Fatal(err)
		}
		if n := engine.PoolThreads(ctx); n != tc.pool {
			t.Errorf("SetThreads(%d): pool of %d threads, want %d", tc.threads, n, tc.pool)
		}
		if d := maxDiff([][]float32{decode()}, [][]float32{one}); d > 1e-3 {
			t.Errorf("SetThreads(%d): logits differ from one thread's by %.3g", tc.threads, d)
		}
	}
	if err := ctx.SetThreads(0); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("SetThreads(0): %v, want ErrInvalidArgument", err)
	}
}
