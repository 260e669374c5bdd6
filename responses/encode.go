package responses

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// idPrefix starts every response id.
const idPrefix = "resp_"

// NewID returns a fresh response id. Every response gets its own, even when the
// response cache answered (a cached generation keeps its generation id), so that two
// stored responses never share a key.
func NewID() string { return idPrefix + randomHex() }

func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Stream event types.
const (
	EventCreated        = "response.created"
	EventInProgress     = "response.in_progress"
	EventItemAdded      = "response.output_item.added"
	EventItemDone       = "response.output_item.done"
	EventPartAdded      = "response.content_part.added"
	EventPartDone       = "response.content_part.done"
	EventTextDelta      = "response.output_text.delta"
	EventTextDone       = "response.output_text.done"
	EventReasoningDelta = "response.reasoning_text.delta"
	EventReasoningDone  = "response.reasoning_text.done"
	EventArgsDelta      = "response.function_call_arguments.delta"
	EventArgsDone       = "response.function_call_arguments.done"
	EventCompleted      = "response.completed"
	EventIncomplete     = "response.incomplete"
	EventFailed         = "response.failed"
)

// Event is one streamed event: sent as "event: TYPE" with the event as its data.
type Event struct {
	Type           string    `json:"type"`
	SequenceNumber int       `json:"sequence_number"`
	Response       *Response `json:"response,omitempty"`
	OutputIndex    int       `json:"output_index"`
	ContentIndex   int       `json:"content_index"`
	ItemID         string    `json:"item_id,omitempty"`
	Item           *Item     `json:"item,omitempty"`
	Part           *Part     `json:"part,omitempty"`
	Delta          string    `json:"delta,omitempty"`
	Text           *string   `json:"text,omitempty"`
	Arguments      *string   `json:"arguments,omitempty"`
}

// Builder turns a generation's events into the response object and the stream's
// events, numbered in order. The same builder serves streamed and collected
// responses, so both say the same thing.
type Builder struct {
	resp  Response
	seq   int
	open  int // index in resp.Output of the item being written, or -1
	calls map[int]int
	body  strings.Builder // the open item's text or arguments
}

// NewBuilder starts the response id for in, created at created, answered by model.
func NewBuilder(in *Input, id string, created time.Time, model string) *Builder {
	r := Response{ID: id, Object: "response", CreatedAt: created.Unix(), Status: StatusInProgress, Model: model,
		Output: []Item{}, MaxOutputTokens: in.MaxOutputTokens, Reasoning: in.Reasoning, Store: in.Store,
		Temperature: in.Temperature, TopP: in.TopP, Tools: in.Tools, ToolChoice: in.ToolChoice, Metadata: in.Metadata,
		ParallelToolCalls: in.ParallelToolCalls == nil || *in.ParallelToolCalls}
	if r.Tools == nil {
		r.Tools = []Tool{}
	}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	if len(r.ToolChoice) == 0 {
		r.ToolChoice = []byte(`"auto"`)
	}
	if in.Instructions != "" {
		r.Instructions = &in.Instructions
	}
	if in.PreviousResponseID != "" {
		r.PreviousResponseID = &in.PreviousResponseID
	}
	r.Text = TextConfig{Format: &Format{Type: "text"}}
	if f := in.format(); f != nil {
		r.Text.Format = f
	}
	return &Builder{resp: r, open: -1, calls: map[int]int{}}
}

// Response is the response as built so far (complete after End).
func (b *Builder) Response() *Response { return &b.resp }

func (b *Builder) event(e Event) Event {
	e.SequenceNumber = b.seq
	b.seq++
	return e
}

// snapshot is a copy of the response that later events do not change.
func (b *Builder) snapshot() *Response {
	r := b.resp
	r.Output = slices.Clone(r.Output)
	return &r
}

// Start is the stream's first events: response.created and response.in_progress.
func (b *Builder) Start() []Event {
	return []Event{b.event(Event{Type: EventCreated, Response: b.snapshot()}),
		b.event(Event{Type: EventInProgress, Response: b.snapshot()})}
}

// Next is the stream events for one event of the generation (choice 0).
func (b *Builder) Next(ev *infer.Event) []Event {
	var out []Event
	if ev.Reasoning != "" {
		out = b.write(out, TypeReasoning, -1, ev.Reasoning)
	}
	if ev.Text != "" {
		out = b.write(out, TypeMessage, -1, ev.Text)
	}
	for _, d := range ev.ToolCalls {
		if _, ok := b.calls[d.Index]; !ok {
			out = b.closeOpen(out)
			b.calls[d.Index] = len(b.resp.Output)
			out = b.add(out, Item{Type: TypeFunctionCall, ID: "fc_" + randomHex(), CallID: d.ID, Name: d.Name})
		}
		if d.Arguments != "" {
			out = b.write(out, TypeFunctionCall, d.Index, d.Arguments)
		}
	}
	return out
}

// write appends text to the open item of kind typ (call: the tool call's index),
// opening one first when needed.
func (b *Builder) write(out []Event, typ string, call int, text string) []Event {
	if typ == TypeFunctionCall {
		if b.open != b.calls[call] {
			return out // a fragment of a call already closed: not from a parser
		}
	} else if b.open < 0 || b.resp.Output[b.open].Type != typ {
		out = b.closeOpen(out)
		part := &Part{Type: PartOutputText, Annotations: []struct{}{}}
		switch typ {
		case TypeReasoning:
			out = b.add(out, Item{Type: TypeReasoning, ID: "rs_" + randomHex(), Summary: []Part{}})
			part = &Part{Type: PartReasoningText}
		default:
			out = b.add(out, Item{Type: TypeMessage, ID: "msg_" + randomHex(), Role: chat.RoleAssistant, Content: []Part{}})
		}
		out = append(out, b.event(Event{Type: EventPartAdded, OutputIndex: b.open, ItemID: b.resp.Output[b.open].ID, Part: part}))
	}
	b.body.WriteString(text)
	it := &b.resp.Output[b.open]
	t := map[string]string{TypeReasoning: EventReasoningDelta, TypeMessage: EventTextDelta, TypeFunctionCall: EventArgsDelta}[typ]
	return append(out, b.event(Event{Type: t, OutputIndex: b.open, ItemID: it.ID, Delta: text}))
}

// add opens item as the next output item.
func (b *Builder) add(out []Event, item Item) []Event {
	item.Status = StatusInProgress
	b.resp.Output = append(b.resp.Output, item)
	b.open = len(b.resp.Output) - 1
	b.body.Reset()
	shown := item
	return append(out, b.event(Event{Type: EventItemAdded, OutputIndex: b.open, Item: &shown}))
}

// closeOpen completes the open item, if any, with its text.
func (b *Builder) closeOpen(out []Event) []Event {
	if b.open < 0 {
		return out
	}
	i, text := b.open, b.body.String()
	it := &b.resp.Output[i]
	it.Status = StatusCompleted
	switch it.Type {
	case TypeMessage:
		part := Part{Type: PartOutputText, Text: text, Annotations: []struct{}{}}
		it.Content = []Part{part}
		out = append(out, b.event(Event{Type: EventTextDone, OutputIndex: i, ItemID: it.ID, Text: &text}),
			b.event(Event{Type: EventPartDone, OutputIndex: i, ItemID: it.ID, Part: &part}))
	case TypeReasoning:
		part := Part{Type: PartReasoningText, Text: text}
		it.Content = []Part{part}
		out = append(out, b.event(Event{Type: EventReasoningDone, OutputIndex: i, ItemID: it.ID, Text: &text}),
			b.event(Event{Type: EventPartDone, OutputIndex: i, ItemID: it.ID, Part: &part}))
	case TypeFunctionCall:
		it.Arguments = text
		if it.Arguments == "" {
			it.Arguments = "{}"
		}
		out = append(out, b.event(Event{Type: EventArgsDone, OutputIndex: i, ItemID: it.ID, Arguments: &it.Arguments}))
	}
	done := *it
	b.open = -1
	b.body.Reset()
	return append(out, b.event(Event{Type: EventItemDone, OutputIndex: i, Item: &done}))
}

// End completes the response with the generation's usage and finish reason: the
// stream's last events (response.completed, or response.incomplete when
// max_output_tokens ended it).
func (b *Builder) End(u infer.Usage, finish infer.FinishReason) []Event {
	out := b.closeOpen(nil)
	b.resp.Usage = &Usage{InputTokens: u.PromptTokens, InputTokensDetails: InputTokensDetails{CachedTokens: u.CachedTokens},
		OutputTokens: u.CompletionTokens, TotalTokens: u.Total()}
	typ := EventCompleted
	b.resp.Status = StatusCompleted
	if finish == infer.FinishLength {
		typ, b.resp.Status = EventIncomplete, StatusIncomplete
		b.resp.IncompleteDetails = &IncompleteDetails{Reason: "max_output_tokens"}
	}
	return append(out, b.event(Event{Type: typ, Response: b.snapshot()}))
}

// Fail ends the stream with response.failed carrying err's code and message (never
// prompt text: errors do not hold it).
func (b *Builder) Fail(err error) Event {
	e := infer.AsError(err, "")
	code := e.Code
	if code == "" {
		code = "server_error"
	}
	b.resp.Status = StatusFailed
	b.resp.Error = &ErrorInfo{Code: code, Message: e.Message}
	return b.event(Event{Type: EventFailed, Response: b.snapshot()})
}
