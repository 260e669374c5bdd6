package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/tenancy"
)

// The Anthropic Messages API through the official Go SDK (an independent client of the
// wire format): shapes and errors on infertest.Fake (and a scripted service for
// thinking and tool-call events), generation on the tiny model.

// anthropicClient is an SDK client of the server at url that never retries (errors
// must be seen as sent).
func anthropicClient(url string, opts ...option.RequestOption) sdk.Client {
	return sdk.NewClient(append([]option.RequestOption{option.WithBaseURL(url + "/"), option.WithAPIKey("sk-test"),
		option.WithMaxRetries(0)}, opts...)...)
}

// scripted is a Fake whose chat generations emit a fixed list of events on one choice
// (thinking, text and tool-call pieces as the core's parsers emit them).
type scripted struct {
	*infertest.Fake
	events []infer.Event
	usage  infer.Usage
}

func (s *scripted) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	g, err := s.Fake.Chat(ctx, r) // records the request, answers its errors
	if err != nil {
		return nil, err
	}
	g.Close()
	return infer.NewGeneration(infer.Served{Model: "fake"}, 1, func() {}, func(emit func(infer.Event) bool) infer.Usage {
		for _, ev := range s.events {
			if !emit(ev) {
				break
			}
		}
		return s.usage
	}), nil
}

// toolScript: thinking, text, then two tool calls whose arguments come in pieces.
var toolScript = []infer.Event{
	{Reasoning: "Let me "}, {Reasoning: "think."},
	{Text: "Calling "}, {Text: "the tools."},
	{ToolCalls: []infer.ToolCallDelta{{Index: 0, ID: "call_a", Name: "get_weather"}}},
	{ToolCalls: []infer.ToolCallDelta{{Index: 0, Arguments: `{"city":`}}},
	{ToolCalls: []infer.ToolCallDelta{{Index: 0, Arguments: `"Paris"}`}, {Index: 1, ID: "call_b", Name: "get_time", Arguments: `{}`}}},
	{Done: true, Finish: infer.FinishToolCalls},
}

func serveScripted(t *testing.T, events []infer.Event) string {
	t.Helper()
	s := &scripted{Fake: &infertest.Fake{}, events: events, usage: infer.Usage{PromptTokens: 11, CompletionTokens: 7}}
	return serve(t, "fake", New(s, Options{Log: testLog(), DefaultModel: "fake"}), HTTPConfig{})
}

func userText(text string) []sdk.MessageParam {
	return []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock(text))}
}

// namedEvent is one event of Anthropic's SSE framing.
type namedEvent struct {
	name string
	data map[string]any
}

// anthropicEvents splits an SSE body into events, failing on any framing error: each
// is exactly "event: NAME\ndata: JSON\n\n" with the data's type equal to NAME.
func anthropicEvents(t *testing.T, body []byte) []namedEvent {
	t.Helper()
	var out []namedEvent
	rest := string(body)
	for rest != "" {
		ev, after, ok := strings.Cut(rest, "\n\n")
		if !ok {
			t.Fatalf("SSE event not terminated by a blank line: %q", rest)
		}
		lines := strings.Split(ev, "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("SSE event is not an event line and a data line: %q", ev)
		}
		e := namedEvent{name: strings.TrimPrefix(lines[0], "event: ")}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &e.data); err != nil {
			t.Fatalf("event data is not JSON: %q", ev)
		}
		if e.data["type"] != e.name {
			t.Fatalf("event %s has data of type %v", e.name, e.data["type"])
		}
		out = append(out, e)
		rest = after
	}
	return out
}

// eventSummary names each event, with its block type or delta type and index.
func eventSummary(evs []namedEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		s := e.name
		if b, ok := e.data["content_block"].(map[string]any); ok {
			s += " " + b["type"].(string)
		}
		if d, ok := e.data["delta"].(map[string]any); ok && e.name == "content_block_delta" {
			s += " " + d["type"].(string)
		}
		if idx, ok := e.data["index"].(float64); ok {
			s += " " + string(rune('0'+int(idx)))
		}
		out[i] = s
	}
	return out
}

// TestAnthropicSDKText: a text answer through the SDK: message id and type, one text
// block, end_turn, usage; the request decoded into the core's chat request exactly
// (system, tool_use and tool_result history, sampling, stop sequences, tool_choice),
// with metadata accepted and never logged.
func TestAnthropicSDKText(t *testing.T) {
	f := &infertest.Fake{}
	log, buf := captureLog()
	url := serveFake(t, f, Options{Log: log, LogPrompts: true})
	c := anthropicClient(url, option.WithJSONSet("temperature", 0.5), option.WithJSONSet("top_p", 0.9),
		option.WithJSONSet("top_k", 40))
	msg, err := c.Messages.New(testCtx(t), sdk.MessageNewParams{
		Model: "fake", MaxTokens: 64,
		System: []sdk.TextBlockParam{{Text: "You are terse."}},
		Messages: []sdk.MessageParam{
			sdk.NewUserMessage(sdk.NewTextBlock("Weather in Paris?")),
			sdk.NewAssistantMessage(sdk.NewTextBlock("Checking."), sdk.NewToolUseBlock("toolu_1", map[string]any{"city": "Paris"}, "get_weather")),
			sdk.NewUserMessage(sdk.NewToolResultBlock("toolu_1", "sunny", false), sdk.NewTextBlock("And now?")),
		},
		StopSequences: []string{"END"},
		Tools: []sdk.ToolUnionParam{{OfTool: &sdk.ToolParam{Name: "get_weather", Description: sdk.String("Weather."),
			InputSchema: sdk.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}}}}},
		ToolChoice: sdk.ToolChoiceParamOfTool("get_weather"),
		Metadata:   sdk.MetadataParam{UserID: sdk.String("user-7e1d-private")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg.ID, "msg_") || msg.Type != "message" || msg.Role != "assistant" || msg.Model != "fake" {
		t.Errorf("message %s %s %s %s", msg.ID, msg.Type, msg.Role, msg.Model)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != "hello from fake" {
		t.Errorf("content %+v", msg.Content)
	}
	if msg.StopReason != sdk.StopReasonEndTurn || msg.StopSequence != "" || msg.Usage.OutputTokens != 3 || msg.Usage.InputTokens < 1 {
		t.Errorf("stop %q %q usage %+v", msg.StopReason, msg.StopSequence, msg.Usage)
	}

	r := f.Last().(*infer.ChatRequest)
	wantMsgs := []chat.Message{
		{Role: chat.RoleSystem, Content: "You are terse."},
		{Role: chat.RoleUser, Content: "Weather in Paris?"},
		{Role: chat.RoleAssistant, Content: "Checking.", ToolCalls: []chat.ToolCall{{ID: "toolu_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}},
		{Role: chat.RoleTool, Content: "sunny", ToolCallID: "toolu_1"},
		{Role: chat.RoleUser, Content: "And now?"},
	}
	if !reflect.DeepEqual(r.Messages, wantMsgs) {
		t.Errorf("messages\n got %+v\nwant %+v", r.Messages, wantMsgs)
	}
	if r.MaxTokens != 64 || r.N != 1 || r.Sampling.Temperature != 0.5 || r.Sampling.TopP != 0.9 || r.Sampling.TopK != 40 ||
		!reflect.DeepEqual(r.Stop, []string{"END"}) || r.SeedFixed || r.Stream {
		t.Errorf("generation params %+v", r.GenParams)
	}
	if len(r.Tools) != 1 || r.Tools[0].Name != "get_weather" || !strings.Contains(string(r.Tools[0].Parameters), `"city"`) ||
		r.ToolChoice != (chat.ToolChoice{Mode: chat.ToolFunction, Name: "get_weather"}) || !r.ParallelToolCalls {
		t.Errorf("tools %+v choice %+v parallel %v", r.Tools, r.ToolChoice, r.ParallelToolCalls)
	}
	waitFor(t, "the access log line", func() bool { return strings.Contains(buf.String(), `"path":"/v1/messages"`) })
	if strings.Contains(buf.String(), "user-7e1d-private") || strings.Contains(buf.String(), "sk-test") {
		t.Errorf("metadata.user_id or the key reached the log: %s", buf.String())
	}
}

// TestAnthropicStreamEventOrder: thinking, text and two tool calls stream in
// Anthropic's exact order (message_start, ping, one block per kind with its deltas
// between start and stop, message_delta, message_stop), the SDK accumulates them
// into the message the non-streamed request returns (tool input as an object), and
// stop_reason is tool_use.
func TestAnthropicStreamEventOrder(t *testing.T) {
	url := serveScripted(t, toolScript)
	body := map[string]any{"model": "fake", "max_tokens": 32, "stream": true,
		"messages": []map[string]any{{"role": "user", "content": "hi"}}}
	r := post(t, url+"/v1/messages", body, "anthropic-version", "2023-06-01")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	evs := anthropicEvents(t, r.body)
	want := []string{
		"message_start", "ping",
		"content_block_start thinking 0", "content_block_delta thinking_delta 0", "content_block_delta thinking_delta 0", "content_block_stop 0",
		"content_block_start text 1", "content_block_delta text_delta 1", "content_block_delta text_delta 1", "content_block_stop 1",
		"content_block_start tool_use 2", "content_block_delta input_json_delta 2", "content_block_delta input_json_delta 2", "content_block_stop 2",
		"content_block_start tool_use 3", "content_block_delta input_json_delta 3", "content_block_stop 3",
		"message_delta", "message_stop",
	}
	if got := eventSummary(evs); !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
	md := evs[len(evs)-2].data
	if d := md["delta"].(map[string]any); d["stop_reason"] != "tool_use" || d["stop_sequence"] != nil {
		t.Errorf("message_delta %v", md)
	}
	if u := md["usage"].(map[string]any); u["input_tokens"] != 11.0 || u["output_tokens"] != 7.0 {
		t.Errorf("message_delta usage %v", u)
	}

	c := anthropicClient(url)
	params := sdk.MessageNewParams{Model: "fake", MaxTokens: 32, Messages: userText("hi")}
	stream := c.Messages.NewStreaming(testCtx(t), params)
	var acc sdk.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	whole, err := c.Messages.New(testCtx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]*sdk.Message{"streamed": &acc, "collected": whole} {
		if len(m.Content) != 4 || m.StopReason != sdk.StopReasonToolUse || m.Usage.InputTokens != 11 || m.Usage.OutputTokens != 7 {
			t.Fatalf("%s: %d blocks, stop %q, usage %+v", name, len(m.Content), m.StopReason, m.Usage)
		}
		th, tx, a, b := m.Content[0], m.Content[1], m.Content[2], m.Content[3]
		if th.Type != "thinking" || th.Thinking != "Let me think." || tx.Type != "text" || tx.Text != "Calling the tools." {
			t.Errorf("%s: thinking %+v text %+v", name, th, tx)
		}
		var in map[string]string
		if a.Type != "tool_use" || a.ID != "call_a" || a.Name != "get_weather" || json.Unmarshal(a.Input, &in) != nil || in["city"] != "Paris" {
			t.Errorf("%s: first call %+v (input %s)", name, a, a.Input)
		}
		if b.Type != "tool_use" || b.ID != "call_b" || b.Name != "get_time" || string(b.Input) != "{}" {
			t.Errorf("%s: second call %+v (input %s)", name, b, b.Input)
		}
	}
}

// TestAnthropicErrors: errors are Anthropic's envelope with its type and status, from
// the one table: invalid requests name the field, unknown models are not_found_error,
// a full queue is overloaded_error with 529 and Retry-After, and an error in the
// middle of a stream is an error event.
func TestAnthropicErrors(t *testing.T) {
	f := &infertest.Fake{}
	url := serveFake(t, f, Options{Log: testLog()})
	c := anthropicClient(url)
	params := sdk.MessageNewParams{Model: "fake", MaxTokens: 16, Messages: userText("hi")}

	for _, bad := range []struct {
		body  string
		param string
	}{
		{`{"model":"fake","messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{`{"model":"fake","max_tokens":8,"temperature":1.5,"messages":[{"role":"user","content":"hi"}]}`, "temperature"},
		{`{"model":"fake","max_tokens":8,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}`, "messages[0].content[0].type"},
		{`{"model":"fake","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"any"}}`, "tool_choice"},
		{`{"model":"fake","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"x"}]}`, "tools[0].input_schema"},
	} {
		r := post(t, url+"/v1/messages", bad.body)
		var e struct {
			Type  string
			Error struct{ Type, Message string }
		}
		r.json(t, &e)
		if r.status != 400 || e.Type != "error" || e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, bad.param) {
			t.Errorf("%s: %d %s", bad.body, r.status, r.body)
		}
	}

	wantErr := func(err error, status int, typ string) *sdk.Error {
		t.Helper()
		var ae *sdk.Error
		if !errors.As(err, &ae) || ae.StatusCode != status || string(ae.Type()) != typ || ae.Message == "" {
			t.Fatalf("got %v, want %d %s", err, status, typ)
		}
		return ae
	}
	_, err := c.Messages.New(testCtx(t), sdk.MessageNewParams{Model: "nope", MaxTokens: 16, Messages: userText("hi")})
	wantErr(err, 404, "not_found_error")

	for _, k := range []struct {
		err    error
		status int
		typ    string
	}{
		{sched.ErrOverloaded, 529, "overloaded_error"},
		{&infer.Error{Kind: infer.RateLimited, Message: "slow down"}, 429, "rate_limit_error"},
		{&infer.Error{Kind: infer.PermissionDenied, Message: "no"}, 403, "permission_error"},
		{errors.New("boom"), 500, "api_error"},
	} {
		f.Err = k.err
		_, err := c.Messages.New(testCtx(t), params)
		ae := wantErr(err, k.status, k.typ)
		if k.status == 529 && ae.Response.Header.Get("Retry-After") == "" {
			t.Errorf("529 without Retry-After")
		}
	}
	f.Err = nil

	f.EventErr = sched.ErrOverloaded
	r := post(t, url+"/v1/messages", `{"model":"fake","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	evs := anthropicEvents(t, r.body)
	last := evs[len(evs)-1]
	if got := eventSummary(evs); len(got) < 4 || got[0] != "message_start" || last.name != "error" ||
		last.data["error"].(map[string]any)["type"] != "overloaded_error" {
		t.Errorf("stream ending in an error: %q %v", got, last.data)
	}
	stream := c.Messages.NewStreaming(testCtx(t), params)
	for stream.Next() {
	}
	if stream.Err() == nil || !strings.Contains(stream.Err().Error(), "overloaded_error") {
		t.Errorf("SDK stream error: %v", stream.Err())
	}
}

// TestAnthropicAuth: the key is accepted as x-api-key (the SDK's way) or a bearer
// token, refused when the two disagree or x-api-key is repeated, and a refusal on an
// Anthropic path is Anthropic's authentication_error while OpenAI paths keep theirs.
func TestAnthropicAuth(t *testing.T) {
	ten := keyTenancy(t, tenancy.Config{}, "sk-good")
	url := serveFake(t, &infertest.Fake{}, Options{Log: testLog(), Auth: ten})
	body := `{"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`

	good := anthropicClient(url, option.WithAPIKey("sk-good"))
	if _, err := good.Messages.New(testCtx(t),
		sdk.MessageNewParams{MaxTokens: 8, Messages: userText("hi")}); err != nil {
		t.Fatalf("x-api-key from the SDK: %v", err)
	}
	for _, c := range []struct {
		name    string
		headers [][2]string
		status  int
	}{
		{"bearer", [][2]string{{"Authorization", "Bearer sk-good"}}, 200},
		{"both, same key", [][2]string{{"X-Api-Key", "sk-good"}, {"Authorization", "Bearer sk-good"}}, 200},
		{"both, different keys", [][2]string{{"X-Api-Key", "sk-good"}, {"Authorization", "Bearer sk-bad"}}, 401},
		{"x-api-key twice", [][2]string{{"X-Api-Key", "sk-good"}, {"X-Api-Key", "sk-good"}}, 401},
		{"wrong key", [][2]string{{"X-Api-Key", "sk-bad"}}, 401},
		{"no key", nil, 401},
	} {
		r := rawRequest(t, "POST", url+"/v1/messages", []byte(body), c.headers)
		if r.status != c.status {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
			continue
		}
		if c.status == 401 {
			var e struct {
				Type  string
				Error struct{ Type, Message string }
			}
			r.json(t, &e)
			if e.Type != "error" || e.Error.Type != "authentication_error" || strings.Contains(string(r.body), "sk-") {
				t.Errorf("%s: %s", c.name, r.body)
			}
		}
	}
	r := rawRequest(t, "POST", url+"/v1/messages/count_tokens", []byte(body), [][2]string{{"X-Api-Key", "sk-good"}})
	if r.status != 200 {
		t.Errorf("count_tokens with x-api-key: %d %s", r.status, r.body)
	}
	r = post(t, url+"/v1/chat/completions", chatBody("", 4, nil))
	r.wantErr(t, 401, openai.TypeAuthentication, "invalid_api_key")
}

// greedy asks for temperature 0, which the SDK has no field for.
var greedy = option.WithJSONSet("temperature", 0)

// TestAnthropicSameTextAsChat: on the tiny model at temperature 0, the same
// conversation through chat completions and Messages (collected and streamed) gives
// the same text, token counts and finish; count_tokens counts the prompt Messages
// used.
func TestAnthropicSameTextAsChat(t *testing.T) {
	_, url := sharedModel(t)
	r := post(t, url+"/v1/chat/completions", chatBody("", 24, nil))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var cc openai.ChatCompletion
	r.json(t, &cc)
	want, finish := cc.Choices[0].Message.Content, cc.Choices[0].FinishReason
	if want == "" {
		t.Fatal("the chat completion is empty: nothing to compare")
	}
	c := anthropicClient(url, greedy)
	params := sdk.MessageNewParams{MaxTokens: 24, System: []sdk.TextBlockParam{{Text: "You are terse."}},
		Messages: userText("Tell me a story about the sea.")}
	msg, err := c.Messages.New(testCtx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	wantStop := map[string]sdk.StopReason{"stop": sdk.StopReasonEndTurn, "length": sdk.StopReasonMaxTokens}[finish]
	if len(msg.Content) != 1 || msg.Content[0].Text != want || msg.StopReason != wantStop {
		t.Errorf("Messages %+v stop %q, chat %q finish %s", msg.Content, msg.StopReason, want, finish)
	}
	if msg.Usage.InputTokens != int64(cc.Usage.PromptTokens) || msg.Usage.OutputTokens != int64(cc.Usage.CompletionTokens) {
		t.Errorf("usage %+v, chat %+v", msg.Usage, cc.Usage)
	}
	stream := c.Messages.NewStreaming(testCtx(t), params)
	var acc sdk.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil || len(acc.Content) != 1 || acc.Content[0].Text != want || acc.StopReason != wantStop ||
		acc.Usage.InputTokens != msg.Usage.InputTokens {
		t.Errorf("streamed %+v stop %q usage %+v (err %v), want %q", acc.Content, acc.StopReason, acc.Usage, err, want)
	}
	n, err := c.Messages.CountTokens(testCtx(t), sdk.MessageCountTokensParams{System: sdk.MessageCountTokensParamsSystemUnion{
		OfTextBlockArray: params.System}, Messages: params.Messages})
	if err != nil || n.InputTokens != msg.Usage.InputTokens {
		t.Errorf("count_tokens %+v (err %v), Messages used %d", n, err, msg.Usage.InputTokens)
	}
}

// TestAnthropicStopSequence: a stop sequence the greedy answer contains ends it with
// stop_reason stop_sequence and stop_sequence set to the matched string (the earlier
// of two), the text cut before it; without a match the reason is not stop_sequence.
func TestAnthropicStopSequence(t *testing.T) {
	_, url := sharedModel(t)
	c := anthropicClient(url, greedy)
	params := sdk.MessageNewParams{MaxTokens: 24, Messages: userText("Count to twenty.")}
	full, err := c.Messages.New(testCtx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	text := full.Content[0].Text
	if len(text) < 6 || full.StopSequence != "" || full.StopReason == sdk.StopReasonStopSequence {
		t.Fatalf("greedy answer %q stop %q %q", text, full.StopReason, full.StopSequence)
	}
	stop := text[len(text)/2 : len(text)/2+2]
	params.StopSequences = []string{"\x7fnever", stop}
	cut, err := c.Messages.New(testCtx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	wantText := text[:strings.Index(text, stop)]
	got := ""
	if len(cut.Content) > 0 {
		got = cut.Content[0].Text
	}
	if cut.StopReason != sdk.StopReasonStopSequence || cut.StopSequence != stop || got != wantText {
		t.Errorf("stop %q: got %q reason %q sequence %q, want %q", stop, got, cut.StopReason, cut.StopSequence, wantText)
	}
}

// TestAnthropicForcedToolUse: on a model with a real tool-calling template, a forced
// tool (tool_choice tool, and any) answers with one tool_use block whose input
// satisfies the schema and stop_reason tool_use, streamed as input_json_delta pieces
// that assemble into the same input; count_tokens with the tool counts the prompt
// Messages used; the call and its tool_result sent back are rendered into the next
// prompt (count_tokens grows with the result).
func TestAnthropicForcedToolUse(t *testing.T) {
	url := templateModel(t, hermesTemplate)
	schema := weatherSchema(t)
	var props struct {
		Properties map[string]any `json:"properties"`
		Required   []string       `json:"required"`
	}
	raw := weatherTool["function"].(map[string]any)["parameters"].(json.RawMessage)
	if err := json.Unmarshal(raw, &props); err != nil {
		t.Fatal(err)
	}
	tool := sdk.ToolUnionParam{OfTool: &sdk.ToolParam{Name: "get_weather", Description: sdk.String("Weather in a city."),
		InputSchema: sdk.ToolInputSchemaParam{Properties: props.Properties, Required: props.Required,
			ExtraFields: map[string]any{"additionalProperties": false}}}}
	c := anthropicClient(url, greedy)
	for _, choice := range []sdk.ToolChoiceUnionParam{
		{OfTool: &sdk.ToolChoiceToolParam{Name: "get_weather", DisableParallelToolUse: sdk.Bool(true)}},
		{OfAny: &sdk.ToolChoiceAnyParam{DisableParallelToolUse: sdk.Bool(true)}},
	} {
		params := sdk.MessageNewParams{Model: "m", MaxTokens: 96, Messages: userText("Weather in Paris?"),
			Tools: []sdk.ToolUnionParam{tool}, ToolChoice: choice}
		msg, err := c.Messages.New(testCtx(t), params)
		if err != nil {
			t.Fatal(err)
		}
		if msg.StopReason != sdk.StopReasonToolUse || len(msg.Content) != 1 || msg.Content[0].Type != "tool_use" {
			t.Fatalf("stop %q content %+v", msg.StopReason, msg.Content)
		}
		call := msg.Content[0]
		n, err := c.Messages.CountTokens(testCtx(t), sdk.MessageCountTokensParams{Model: "m", Messages: params.Messages,
			Tools: []sdk.MessageCountTokensToolUnionParam{{OfTool: tool.OfTool}}})
		if err != nil || n.InputTokens != msg.Usage.InputTokens {
			t.Errorf("count_tokens with the tool %+v (err %v), Messages used %d", n, err, msg.Usage.InputTokens)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(call.Input)))
		if err != nil || call.Name != "get_weather" || call.ID == "" {
			t.Fatalf("call %+v: %v", call, err)
		}
		if err := schema.Validate(v); err != nil {
			t.Fatalf("input %s: %v", call.Input, err)
		}
		stream := c.Messages.NewStreaming(testCtx(t), params)
		var acc sdk.Message
		for stream.Next() {
			if err := acc.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		// The pieces are the model's text; the collected input is the same JSON, compacted.
		var streamed bytes.Buffer
		if err := stream.Err(); err != nil || len(acc.Content) != 1 || acc.StopReason != sdk.StopReasonToolUse ||
			json.Compact(&streamed, acc.Content[0].Input) != nil || streamed.String() != string(call.Input) {
			t.Fatalf("streamed %d blocks, stop %q (err %v), input %s; collected input %s", len(acc.Content), acc.StopReason, err,
				acc.Content[0].Input, call.Input)
		}

		history := append(params.Messages, sdk.NewAssistantMessage(sdk.NewToolUseBlock(call.ID, call.Input, call.Name)))
		count := func(result string) int64 {
			msgs := history
			if result != "" {
				msgs = append(msgs, sdk.NewUserMessage(sdk.NewToolResultBlock(call.ID, result, false)))
			}
			n, err := c.Messages.CountTokens(testCtx(t), sdk.MessageCountTokensParams{Model: "m", Messages: msgs,
				Tools: []sdk.MessageCountTokensToolUnionParam{{OfTool: tool.OfTool}}})
			if err != nil {
				t.Fatal(err)
			}
			return n.InputTokens
		}
		if short, long := count("sunny"), count("sunny with a light breeze from the west all afternoon"); long <= short {
			t.Errorf("the tool result is not in the prompt: %d tokens with a longer result, %d with a shorter", long, short)
		}
		next, err := c.Messages.New(testCtx(t), sdk.MessageNewParams{Model: "m", MaxTokens: 8,
			Messages: append(history, sdk.NewUserMessage(sdk.NewToolResultBlock(call.ID, "sunny", false))),
			Tools:    []sdk.ToolUnionParam{tool}, ToolChoice: sdk.ToolChoiceUnionParam{OfNone: &sdk.ToolChoiceNoneParam{}}})
		if err != nil || next.StopReason == sdk.StopReasonToolUse {
			t.Fatalf("turn after the tool result: %+v (err %v)", next, err)
		}
	}
}
