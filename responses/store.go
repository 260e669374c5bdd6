package responses

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hxp-ai/hxp/infer"
)

// Record is one stored response: the response object, the conversation's input items
// (the history it continued followed by its own input) and the key that created it.
type Record struct {
	ID string
	// Caller is the id of the key that created the response ("" without auth): only
	// it can read, continue or delete the response.
	Caller   string
	Created  time.Time
	Input    []Item
	Response Response
}

// History is the conversation a request continuing this response starts from: the
// input items and then the output.
func (r *Record) History() []Item {
	return append(slices.Clone(r.Input), r.Response.Output...)
}

// Store keeps responses for previous_response_id and GET/DELETE /v1/responses/{id}.
// A response belongs to its caller: Get and Delete of another caller's response fail
// with ErrNotFound, exactly as for an unknown id. Implementations are safe for
// concurrent use and never log stored content.
type Store interface {
	// Put stores r (its ID is new).
	Put(ctx context.Context, r *Record) error
	// Get returns the response id of caller.
	Get(ctx context.Context, id, caller string) (*Record, error)
	// Delete removes the response id of caller.
	Delete(ctx context.Context, id, caller string) error
	// Sweep removes the responses created before cutoff and returns how many.
	Sweep(ctx context.Context, cutoff time.Time) (int, error)
}

// ErrNotFound is a response that does not exist, has expired, or belongs to another
// caller.
var ErrNotFound = errors.New("response not found")

// NotFound is the client's answer for ErrNotFound: the same for every cause, so a key
// cannot probe another key's ids.
func NotFound(id string) *infer.Error {
	return &infer.Error{Kind: infer.NotFound, Param: "id", Code: "response_not_found",
		Message: fmt.Sprintf("No response with id %q was found for this API key.", id)}
}

// Memory is the bounded in-process Store used without PostgreSQL: the least recently
// used responses are dropped beyond MaxCount responses or MaxBytes of JSON.
type Memory struct {
	maxCount int
	maxBytes int64

	mu    sync.Mutex
	order *list.List // of *memEntry, most recently used first
	byID  map[string]*list.Element
	bytes int64
}

// memEntry is a response held as its JSON, so readers get their own copy.
type memEntry struct {
	id, caller string
	created    time.Time
	json       []byte
}

// NewMemory returns an in-process store of at most maxCount responses and maxBytes
// bytes of their JSON (both > 0).
func NewMemory(maxCount int, maxBytes int64) *Memory {
	return &Memory{maxCount: max(maxCount, 1), maxBytes: max(maxBytes, 1), order: list.New(), byID: map[string]*list.Element{}}
}

// Put stores r, dropping the least recently used responses beyond the bounds.
func (m *Memory) Put(_ context.Context, r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("responses: encode %s: %w", r.ID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byID[r.ID]; ok {
		m.remove(el)
	}
	m.byID[r.ID] = m.order.PushFront(&memEntry{id: r.ID, caller: r.Caller, created: r.Created, json: b})
	m.bytes += int64(len(b))
	for m.order.Len() > 1 && (m.order.Len() > m.maxCount || m.bytes > m.maxBytes) {
		m.remove(m.order.Back())
	}
	return nil
}

func (m *Memory) remove(el *list.Element) {
	e := el.Value.(*memEntry)
	m.order.Remove(el)
	delete(m.byID, e.id)
	m.bytes -= int64(len(e.json))
}

// Get returns a copy of the response id of caller.
func (m *Memory) Get(_ context.Context, id, caller string) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byID[id]
	if !ok || el.Value.(*memEntry).caller != caller {
		return nil, ErrNotFound
	}
	m.order.MoveToFront(el)
	var rec Record
	if err := json.Unmarshal(el.Value.(*memEntry).json, &rec); err != nil {
		return nil, fmt.Errorf("responses: decode %s: %w", id, err)
	}
	return &rec, nil
}

// Delete removes the response id of caller.
func (m *Memory) Delete(_ context.Context, id, caller string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byID[id]
	if !ok || el.Value.(*memEntry).caller != caller {
		return ErrNotFound
	}
	m.remove(el)
	return nil
}

// Sweep removes the responses created before cutoff.
func (m *Memory) Sweep(_ context.Context, cutoff time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for el := m.order.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*memEntry).created.Before(cutoff) {
			m.remove(el)
			n++
		}
		el = next
	}
	return n, nil
}

// Len is the number of responses held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}

// SweepEvery runs st.Sweep every interval, removing responses older than retention,
// until ctx ends. Failures are logged by report (never with content).
func SweepEvery(ctx context.Context, st Store, interval, retention time.Duration, report func(removed int, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := st.Sweep(ctx, time.Now().Add(-retention))
			if report != nil {
				report(n, err)
			}
		}
	}
}
