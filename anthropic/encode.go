package anthropic

import (
	"encoding/json"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
)

// Rendering of the core's results in Anthropic's format. A Stream renders one
// request's events; the non-streamed message is built from a collected infer.Result.
// A Messages request has one choice: events of other choices are ignored.

// Block types of a response.
const (
	blockText     = "text"
	blockThinking = "thinking"
	blockToolUse  = "tool_use"
)

// Stop reasons.
const (
	StopEndTurn   = "end_turn"
	StopMaxTokens = "max_tokens"
	StopSequence  = "stop_sequence"
	StopToolUse   = "tool_use"
)

// Fixed values of the rendering.
const (
	messageType      = "message"
	roleAssistant    = "assistant"
	deltaText        = "text_delta"
	deltaThinking    = "thinking_delta"
	deltaInputJSON   = "input_json_delta"
	messageIDPrefix  = "msg_"
	toolUseIDPrefix  = "toolu_"
	emptyToolUseArgs = "{}"
)

// reason is the stop_reason and stop_sequence of a choice that ended with finish,
// stop being the stop string that ended it ("" when the model did).
func reason(finish infer.FinishReason, stop string) (*string, *string) {
	r := StopEndTurn
	switch {
	case finish == infer.FinishToolCalls:
		r = StopToolUse
	case finish == infer.FinishLength:
		r = StopMaxTokens
	case stop != "":
		r = StopSequence
		return &r, &stop
	}
	return &r, nil
}

// Stream renders one generation as a message and as stream events.
type Stream struct {
	id, model string
	// next is the index of the next content block; open the type of the block
	// started and not yet stopped ("" when none), call its tool call's index.
	next int
	open string
	call int
	// finish and stop are the choice's end, once its last event has come.
	finish  infer.FinishReason
	stopSeq string
}

// NewStream starts rendering a generation of model.
func NewStream(model string) *Stream {
	return &Stream{id: messageIDPrefix + openai.NewID(), model: model}
}

// ID is the message's id ("msg_...").
func (s *Stream) ID() string { return s.id }

// message is the message with content and the stop reason of finish and stop.
func (s *Stream) message(content []Block, finish infer.FinishReason, stop string, u infer.Usage) *Message {
	m := &Message{ID: s.id, Type: messageType, Role: roleAssistant, Model: s.model, Content: content,
		Usage: Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}}
	m.StopReason, m.StopSequence = reason(finish, stop)
	return m
}

// Response is the message of a collected generation: its thinking, text and tool_use
// blocks, in that order. A call cut off by max_tokens has the input {} (its
// arguments are not a whole object); any other call whose arguments are not an
// object is the server's error.
func (s *Stream) Response(r *infer.Result) (*Message, error) {
	content := []Block{}
	var c infer.ChoiceResult
	if len(r.Choices) > 0 {
		c = r.Choices[0]
	}
	if c.Reasoning != "" {
		content = append(content, Block{Type: blockThinking, Thinking: &c.Reasoning, Signature: new("")})
	}
	if c.Text != "" {
		content = append(content, Block{Type: blockText, Text: &c.Text})
	}
	for i, call := range c.ToolCalls {
		input := json.RawMessage(call.Arguments)
		if call.Arguments == "" {
			input = json.RawMessage(emptyToolUseArgs)
		}
		var obj map[string]json.RawMessage
		switch {
		case json.Unmarshal(input, &obj) == nil && obj != nil:
		case c.Finish == infer.FinishLength:
			input = json.RawMessage(emptyToolUseArgs)
		default:
			return nil, infer.Errorf(infer.Internal, "", "tool call %d (%s): the model's arguments are not a JSON object", i, call.Name)
		}
		content = append(content, Block{Type: blockToolUse, ID: toolUseID(call.ID), Name: call.Name, Input: input})
	}
	return s.message(content, c.Finish, c.StopSequence, r.Usage), nil
}

// toolUseID is a call's id as a tool_use block's: the core's, or a new one.
func toolUseID(id string) string {
	if id == "" {
		return toolUseIDPrefix + openai.NewID()
	}
	return id
}

// Start are the events sent before any output: message_start (an empty message; the
// usage comes with message_delta at the end) and a ping.
func (s *Stream) Start() []Event {
	m := &Message{ID: s.id, Type: messageType, Role: roleAssistant, Model: s.model, Content: []Block{}}
	return []Event{
		{EventMessageStart, MessageStart{Type: EventMessageStart, Message: m}},
		{EventPing, TypeOnly{Type: EventPing}},
	}
}

// Next are the events of one core event: a block is started when the output changes
// kind (thinking, text, a tool call), stopped when another starts or the choice
// ends, and each piece of output is a delta of the open block. An event's thinking
// comes before its text, and its text before its tool calls.
func (s *Stream) Next(ev *infer.Event) []Event {
	if ev.Choice != 0 {
		return nil
	}
	var out []Event
	if ev.Reasoning != "" {
		out = s.ensure(out, blockThinking, 0, "", "")
		out = s.delta(out, Delta{Type: deltaThinking, Thinking: &ev.Reasoning})
	}
	if ev.Text != "" {
		out = s.ensure(out, blockText, 0, "", "")
		out = s.delta(out, Delta{Type: deltaText, Text: &ev.Text})
	}
	for _, d := range ev.ToolCalls {
		if d.ID != "" || d.Name != "" || s.open != blockToolUse || s.call != d.Index {
			out = s.stop(out)
			out = s.ensure(out, blockToolUse, d.Index, d.ID, d.Name)
		}
		if d.Arguments != "" {
			args := d.Arguments
			out = s.delta(out, Delta{Type: deltaInputJSON, PartialJSON: &args})
		}
	}
	if ev.Done {
		out = s.stop(out)
		s.finish, s.stopSeq = ev.Finish, ev.StopSequence
	}
	return out
}

// ensure starts a block of type typ unless one is open; a tool_use block is always
// new (the caller stopped the previous one).
func (s *Stream) ensure(out []Event, typ string, call int, id, name string) []Event {
	if s.open == typ && typ != blockToolUse {
		return out
	}
	out = s.stop(out)
	b := Block{Type: typ}
	switch typ {
	case blockText:
		b.Text = new("")
	case blockThinking:
		b.Thinking, b.Signature = new(""), new("")
	case blockToolUse:
		b.ID, b.Name, b.Input = toolUseID(id), name, json.RawMessage(emptyToolUseArgs)
		s.call = call
	}
	s.open = typ
	return append(out, Event{EventBlockStart, BlockStart{Type: EventBlockStart, Index: s.next, ContentBlock: b}})
}

// delta is a piece of the open block.
func (s *Stream) delta(out []Event, d Delta) []Event {
	return append(out, Event{EventBlockDelta, BlockDelta{Type: EventBlockDelta, Index: s.next, Delta: d}})
}

// stop stops the open block, if any.
func (s *Stream) stop(out []Event) []Event {
	if s.open == "" {
		return out
	}
	out = append(out, Event{EventBlockStop, BlockStop{Type: EventBlockStop, Index: s.next}})
	s.open = ""
	s.next++
	return out
}

// End are the events after the last one of the generation: message_delta with the
// stop reason and the usage, then message_stop.
func (s *Stream) End(u infer.Usage) []Event {
	out := s.stop(nil)
	var d MessageChange
	d.StopReason, d.StopSequence = reason(s.finish, s.stopSeq)
	return append(out,
		Event{EventMessageDelta, MessageDelta{Type: EventMessageDelta, Delta: d,
			Usage: Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}}},
		Event{EventMessageStop, TypeOnly{Type: EventMessageStop}})
}

// CountOf renders a count_tokens result.
func CountOf(t *infer.Tokens) TokenCount { return TokenCount{InputTokens: len(t.Tokens)} }
