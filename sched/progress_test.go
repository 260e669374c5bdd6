package sched_test

import (
	"context"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/sched"
)

// Work arriving at an idle scheduler restarts its progress clock: the time it spent
// idle must not make its first step look like a stall to the health check.
func TestLastProgressRestartsWhenWorkArrives(t *testing.T) {
	block := make(chan struct{})
	s := newSched(t, sched.Config{StepHook: func() { <-block }})
	deadline := time.Now().Add(10 * time.Second)
	for s.LastProgress().UnixNano() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the loop has not reached its idle wait yet
	}
	idle := s.LastProgress()
	if idle.UnixNano() == 0 {
		t.Fatal("the loop never started")
	}
	ch, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "hello"), MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Once the loop has taken the request from the queue it goes on to the step hook,
	// where it is held and cannot record progress itself.
	for s.Stats().Queued > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := s.LastProgress(); !got.After(idle) {
		t.Errorf("LastProgress %v did not move past the idle time %v when work arrived", got, idle)
	}
	if st := s.Stats(); !st.Busy || st.InFlight != 1 {
		t.Errorf("stats while held: %+v", st)
	}
	close(block)
	if r := collect(t, ch); r.final.Err != nil {
		t.Fatal(r.final.Err)
	}
}
