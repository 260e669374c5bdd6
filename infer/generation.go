package infer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/hxp-ai/hxp/chat"
)

// FinishReason is why a choice ended.
type FinishReason int

// Finish reasons.
const (
	// FinishStop is an end-of-generation token or a stop string.
	FinishStop FinishReason = iota
	// FinishLength is max_tokens, or a full context.
	FinishLength
	// FinishToolCalls is a choice that ended with tool calls.
	FinishToolCalls
)

// String is OpenAI's name of the reason.
func (f FinishReason) String() string {
	switch f {
	case FinishLength:
		return "length"
	case FinishToolCalls:
		return "tool_calls"
	}
	return "stop"
}

// TokenLogprob is one generated token with its log-probability and alternatives.
type TokenLogprob struct {
	// Bytes are the token's raw text (possibly part of a UTF-8 character).
	Bytes   []byte
	Logprob float32
	Top     []TopLogprob
}

// TopLogprob is one alternative of a generated token.
type TopLogprob struct {
	Bytes   []byte
	Logprob float32
}

// Event is one piece of a streamed generation.
type Event struct {
	// Choice is the index of the choice (prompt index x n + choice of that prompt).
	Choice int
	// Text is new output text (the answer's content): complete UTF-8, stop strings
	// removed.
	Text string
	// Reasoning is new text of a reasoning model's thinking block, never in Text.
	Reasoning string
	// ToolCalls are pieces of the choice's tool calls: a call's first piece has its
	// ID and Name, later ones fragments of its Arguments.
	ToolCalls []ToolCallDelta
	// Logprobs of the tokens behind Text, when requested.
	Logprobs []TokenLogprob
	// Done marks the choice's last event: Finish, StopSequence, TTFT and Err are set
	// on it.
	Done   bool
	Finish FinishReason
	// StopSequence is the request's stop string that ended the choice (FinishStop
	// only); "" when the model ended it.
	StopSequence string
	// TTFT is the choice's time to its first token.
	TTFT time.Duration
	// Err ends a choice that failed (ErrClientGone when it was cancelled).
	Err error
}

// ToolCallDelta is a piece of tool call Index of a choice (calls are numbered from 0
// in the order the model made them).
type ToolCallDelta struct {
	Index int
	// ID and Name are set on the call's first piece.
	ID, Name string
	// Arguments is the next fragment of the call's arguments JSON object text.
	Arguments string
}

// empty reports whether ev carries no output.
func (ev *Event) empty() bool {
	return ev.Text == "" && ev.Reasoning == "" && len(ev.ToolCalls) == 0 && len(ev.Logprobs) == 0
}

// Summary is what a finished generation reports to its observers.
type Summary struct {
	Usage Usage
	// TTFT and Finish are the first choice's.
	TTFT   time.Duration
	Finish FinishReason
	// Err is the first choice's error, ErrClientGone when the consumer left before
	// the end, or nil.
	Err error
}

// Generation is a running request's choices: a stream of events for front ends that
// stream, and a collected Result for those that do not. Every generation must be
// consumed to its end or closed.
type Generation struct {
	Served
	// Choices is the number of choices (prompts x n).
	Choices int

	out     chan Event
	cancel  context.CancelFunc
	gone    chan struct{} // closed by Close: events are dropped from then on
	goneOne sync.Once

	mu      sync.Mutex
	ended   bool
	summary Summary
	hooks   []func(Summary)
}

// Producer runs a generation: it calls emit for each event in order (emit reports
// false once the consumer has gone; the producer should then stop, though it may go
// on) and returns the request's usage when every choice has ended.
type Producer func(emit func(Event) bool) Usage

// NewGeneration runs produce in its own goroutine. cancel stops the work behind it
// (it is called by Close, and when the generation ends).
func NewGeneration(served Served, choices int, cancel context.CancelFunc, produce Producer) *Generation {
	if served.ID == "" {
		served.ID = newID()
	}
	if served.Created.IsZero() {
		served.Created = time.Now()
	}
	g := &Generation{Served: served, Choices: choices, out: make(chan Event, 4), cancel: cancel, gone: make(chan struct{})}
	go g.run(produce)
	return g
}

func (g *Generation) run(produce Producer) {
	var first, firstErr error
	var ttft time.Duration
	finish := FinishStop
	usage := produce(func(ev Event) bool {
		if ev.Done {
			if ev.Choice == 0 {
				ttft, finish, first = ev.TTFT, ev.Finish, ev.Err
			}
			if ev.Err != nil && firstErr == nil {
				firstErr = ev.Err
			}
		}
		select {
		case g.out <- ev:
			return true
		case <-g.gone:
			return false
		}
	})
	g.cancel()
	err := first
	if err == nil {
		err = firstErr
	}
	select {
	case <-g.gone:
		if err == nil {
			err = ErrClientGone
		}
	default:
	}
	g.mu.Lock()
	g.ended = true
	g.summary = Summary{Usage: usage, TTFT: ttft, Finish: finish, Err: err}
	hooks := g.hooks
	g.hooks = nil
	g.mu.Unlock()
	close(g.out)
	for _, h := range hooks {
		h(g.summary)
	}
}

// OnEnd registers fn to run once when the generation has ended (at once when it has
// already). Routers and admission use it to settle in-flight counts and the ledger.
func (g *Generation) OnEnd(fn func(Summary)) {
	g.mu.Lock()
	if !g.ended {
		g.hooks = append(g.hooks, fn)
		g.mu.Unlock()
		return
	}
	s := g.summary
	g.mu.Unlock()
	fn(s)
}

// Events yields the events in order until the generation ends. Stopping early (the
// client left) closes the generation.
func (g *Generation) Events() iter.Seq[Event] {
	return func(yield func(Event) bool) {
		for ev := range g.out {
			if !yield(ev) {
				g.Close()
				return
			}
		}
	}
}

// Close cancels the generation; events not yet read are dropped. It is safe to call
// more than once and after the end.
func (g *Generation) Close() {
	g.goneOne.Do(func() {
		close(g.gone)
		g.cancel()
	})
}

// Summary is the generation's summary once it has ended (zero before).
func (g *Generation) Summary() Summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.summary
}

// ChoiceResult is one collected choice.
type ChoiceResult struct {
	Text string
	// Reasoning is the thinking block's text of a reasoning model.
	Reasoning string
	// ToolCalls are the calls the choice made, arguments as JSON object text.
	ToolCalls []chat.ToolCall
	Logprobs  []TokenLogprob
	Finish    FinishReason
	// StopSequence is the stop string that ended the choice, or "".
	StopSequence string
	TTFT         time.Duration
	Err          error
}

// Result is a collected generation.
type Result struct {
	Served
	Choices []ChoiceResult
	Usage   Usage
	// TTFT is the first choice's time to first token.
	TTFT time.Duration
}

// Collect reads the generation to its end. The error is the first failed choice's,
// in choice order.
func (g *Generation) Collect() (*Result, error) {
	texts := make([]strings.Builder, g.Choices)
	thoughts := make([]strings.Builder, g.Choices)
	args := make([][]strings.Builder, g.Choices)
	res := &Result{Served: g.Served, Choices: make([]ChoiceResult, g.Choices)}
	for ev := range g.Events() {
		if ev.Choice < 0 || ev.Choice >= g.Choices {
			continue
		}
		c := &res.Choices[ev.Choice]
		texts[ev.Choice].WriteString(ev.Text)
		thoughts[ev.Choice].WriteString(ev.Reasoning)
		for _, d := range ev.ToolCalls {
			if d.Index < 0 || d.Index > len(c.ToolCalls) {
				continue // a piece of a call never opened: not from a parser
			}
			if d.Index == len(c.ToolCalls) {
				c.ToolCalls = append(c.ToolCalls, chat.ToolCall{})
				args[ev.Choice] = append(args[ev.Choice], strings.Builder{})
			}
			call := &c.ToolCalls[d.Index]
			if d.ID != "" {
				call.ID = d.ID
			}
			if d.Name != "" {
				call.Name = d.Name
			}
			args[ev.Choice][d.Index].WriteString(d.Arguments)
		}
		c.Logprobs = append(c.Logprobs, ev.Logprobs...)
		if ev.Done {
			c.Finish, c.StopSequence, c.TTFT, c.Err = ev.Finish, ev.StopSequence, ev.TTFT, ev.Err
		}
	}
	for i := range res.Choices {
		c := &res.Choices[i]
		c.Text, c.Reasoning = texts[i].String(), thoughts[i].String()
		for j := range c.ToolCalls {
			c.ToolCalls[j].Arguments = args[i][j].String()
		}
	}
	s := g.Summary()
	res.Usage, res.TTFT = s.Usage, s.TTFT
	for _, c := range res.Choices {
		if c.Err != nil {
			return res, c.Err
		}
	}
	return res, nil
}

// newID returns 24 random hex characters.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
