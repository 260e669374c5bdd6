// Package storetest is the conformance suite every responses.Store passes: the
// in-process store and the PostgreSQL one run the same tests.
package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/responses"
)

// Run runs the suite; open returns an empty store for one test.
func Run(t *testing.T, open func(t *testing.T) responses.Store) {
	ctx := context.Background()
	t.Run("RoundTrip", func(t *testing.T) {
		st := open(t)
		rec := Sample("key-a", time.Now())
		if err := st.Put(ctx, rec); err != nil {
			t.Fatalf("Put: %v", err)
		}
		got, err := st.Get(ctx, rec.ID, "key-a")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !got.Created.Equal(rec.Created) {
			t.Errorf("Created = %v, want %v", got.Created, rec.Created)
		}
		got.Created = rec.Created
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("Get = %+v\nwant %+v", got, rec)
		}
		got.Input[0].Content[0].Text = "changed by the reader"
		again, err := st.Get(ctx, rec.ID, "key-a")
		if err != nil || again.Input[0].Content[0].Text != rec.Input[0].Content[0].Text {
			t.Errorf("a reader's change reached the store: %v %+v", err, again)
		}
	})
	t.Run("Isolation", func(t *testing.T) {
		st := open(t)
		rec := Sample("key-a", time.Now())
		if err := st.Put(ctx, rec); err != nil {
			t.Fatalf("Put: %v", err)
		}
		for _, caller := range []string{"key-b", ""} {
			if _, err := st.Get(ctx, rec.ID, caller); !errors.Is(err, responses.ErrNotFound) {
				t.Errorf("Get by %q: err = %v, want ErrNotFound", caller, err)
			}
			if err := st.Delete(ctx, rec.ID, caller); !errors.Is(err, responses.ErrNotFound) {
				t.Errorf("Delete by %q: err = %v, want ErrNotFound", caller, err)
			}
		}
		if _, err := st.Get(ctx, rec.ID, "key-a"); err != nil {
			t.Errorf("the owner lost its response after another key's delete: %v", err)
		}
	})
	t.Run("UnknownAndDeleted", func(t *testing.T) {
		st := open(t)
		if _, err := st.Get(ctx, responses.NewID(), "key-a"); !errors.Is(err, responses.ErrNotFound) {
			t.Errorf("Get unknown: err = %v, want ErrNotFound", err)
		}
		rec := Sample("key-a", time.Now())
		if err := st.Put(ctx, rec); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := st.Delete(ctx, rec.ID, "key-a"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := st.Get(ctx, rec.ID, "key-a"); !errors.Is(err, responses.ErrNotFound) {
			t.Errorf("Get after Delete: err = %v, want ErrNotFound", err)
		}
		if err := st.Delete(ctx, rec.ID, "key-a"); !errors.Is(err, responses.ErrNotFound) {
			t.Errorf("second Delete: err = %v, want ErrNotFound", err)
		}
	})
	t.Run("Sweep", func(t *testing.T) {
		st := open(t)
		now := time.Now()
		old1, old2, fresh := Sample("key-a", now.Add(-48*time.Hour)), Sample("key-b", now.Add(-25*time.Hour)), Sample("key-a", now)
		for _, r := range []*responses.Record{old1, old2, fresh} {
			if err := st.Put(ctx, r); err != nil {
				t.Fatalf("Put: %v", err)
			}
		}
		n, err := st.Sweep(ctx, now.Add(-24*time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("Sweep = %d, %v; want 2 removed", n, err)
		}
		for _, r := range []*responses.Record{old1, old2} {
			if _, err := st.Get(ctx, r.ID, r.Caller); !errors.Is(err, responses.ErrNotFound) {
				t.Errorf("swept response %s still readable: %v", r.ID, err)
			}
		}
		if _, err := st.Get(ctx, fresh.ID, "key-a"); err != nil {
			t.Errorf("the fresh response was swept: %v", err)
		}
	})
}

// Sample is a stored response of caller created at created, with a fresh id, every
// kind of item and a full response object.
func Sample(caller string, created time.Time) *responses.Record {
	id := responses.NewID()
	instr, maxOut, temp := "be brief", 64, 0.0
	created = created.Truncate(time.Microsecond) // PostgreSQL's precision
	return &responses.Record{ID: id, Caller: caller, Created: created,
		Input: []responses.Item{
			{Type: responses.TypeMessage, Role: "user", Content: []responses.Part{{Type: responses.PartInputText, Text: "what is the weather in Paris?"}}},
			{Type: responses.TypeFunctionCall, CallID: "call_1", Name: "weather", Arguments: `{"city":"Paris"}`},
			{Type: responses.TypeFunctionCallOutput, CallID: "call_1", Output: `{"celsius":21}`},
		},
		Response: responses.Response{ID: id, Object: "response", CreatedAt: created.Unix(), Status: responses.StatusCompleted,
			Instructions: &instr, MaxOutputTokens: &maxOut, Temperature: &temp, Model: "tiny", Store: true,
			Output: []responses.Item{{Type: responses.TypeMessage, ID: "msg_1", Status: responses.StatusCompleted, Role: "assistant",
				Content: []responses.Part{{Type: responses.PartOutputText, Text: "21 degrees and sunny.", Annotations: []struct{}{}}}}},
			Text: responses.TextConfig{Format: &responses.Format{Type: "text"}}, ToolChoice: []byte(`"auto"`),
			Tools:    []responses.Tool{{Type: "function", Name: "weather", Parameters: []byte(`{"type":"object"}`)}},
			Usage:    &responses.Usage{InputTokens: 30, OutputTokens: 7, TotalTokens: 37},
			Metadata: map[string]string{"ticket": "42"}},
	}
}
