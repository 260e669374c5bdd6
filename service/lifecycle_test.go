package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Requests racing the idle unloader are never refused: each one (Wake, then uses of
// the model, as infer.Local does) either keeps the model loaded or waits for its
// reload. The requests pause now and then for longer than the idle time, so the model
// is unloaded and loaded again many times.
func TestIdleUnloadRacingRequests(t *testing.T) {
	cfg := tinyConfig(t, "racy")
	s := load(t, cfg, Options{})
	const idle = 5 * time.Millisecond
	stop := make(chan struct{})
	var unloads int
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Unload(context.Background(), time.Now(), idle); err == nil {
				unloads++
			} else if !errors.Is(err, errInUse) && !errors.Is(err, ErrNotReady) {
				t.Errorf("Unload: %v", err)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	for i := range 200 {
		if i%10 == 9 {
			time.Sleep(4 * idle) // idle long enough to be unloaded
		}
		if err := s.Wake(context.Background()); err != nil {
			t.Fatalf("request %d: wake: %v", i, err)
		}
		if _, err := s.Tokenize("hello there", true, false); err != nil {
			t.Fatalf("request %d: %v (state %s)", i, err, s.State())
		}
		if _, err := s.Detokenize([]int32{1, 2}); err != nil {
			t.Fatalf("request %d: %v (state %s)", i, err, s.State())
		}
	}
	close(stop)
	wg.Wait()
	if unloads == 0 {
		t.Error("the model was never unloaded: the race was not exercised")
	}
	t.Logf("%d unloads in 200 requests", unloads)
}

// A new model is not loaded by a request (only one unloaded for idleness is), and
// Unload refuses a model that is not ready.
func TestWakeLoadsOnlyAnIdleModel(t *testing.T) {
	s := New(tinyConfig(t, "fresh"), zerolog.Nop(), Options{})
	t.Cleanup(s.Close)
	if err := s.Wake(context.Background()); err != nil {
		t.Fatalf("Wake on a new service: %v", err)
	}
	if s.State() != StateNew {
		t.Fatalf("Wake on a new service: state %s", s.State())
	}
	if err := s.Unload(context.Background(), time.Now(), 0); !errors.Is(err, ErrNotReady) {
		t.Errorf("Unload of a new service: %v", err)
	}
}
