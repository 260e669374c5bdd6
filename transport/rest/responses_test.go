package rest

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	sdkresp "github.com/openai/openai-go/v3/responses"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

// responsesClients serves a fake model behind two keys and returns an SDK client for
// each.
func responsesClients(t *testing.T, f *infertest.Fake, opts Options) (a, b sdk.Client) {
	t.Helper()
	opts.Auth = keyTenancy(t, tenancy.Config{}, "sk-key-a", "sk-key-b")
	opts.Log = testLog()
	url := serveFake(t, f, opts) + "/v1/"
	client := func(key string) sdk.Client {
		return sdk.NewClient(option.WithBaseURL(url), option.WithAPIKey(key), option.WithMaxRetries(0))
	}
	return client("sk-key-a"), client("sk-key-b")
}

func text(s string) sdkresp.ResponseNewParamsInputUnion {
	return sdkresp.ResponseNewParamsInputUnion{OfString: sdk.String(s)}
}

// wantStatus checks that err is an API error with status.
func wantStatus(t *testing.T, what string, err error, status int) *sdk.Error {
	t.Helper()
	var apiErr *sdk.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != status {
		t.Fatalf("%s: err = %v, want HTTP %d", what, err, status)
	}
	return apiErr
}

// TestResponsesConversation drives create, get, input_items, a three-turn
// previous_response_id chain and delete through the official SDK.
func TestResponsesConversation(t *testing.T) {
	f := &infertest.Fake{Model: "fake", Reply: "the answer is 42"}
	a, _ := responsesClients(t, f, Options{})
	ctx := testCtx(t)

	first, err := a.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text("what is six times seven?"),
		Instructions: sdk.String("be brief"), Metadata: map[string]string{"ticket": "7"}})
	if err != nil {
		t.Fatal(err)
	}
	if first.OutputText() != f.Reply || first.Status != "completed" || !strings.HasPrefix(first.ID, "resp_") ||
		first.Usage.InputTokens == 0 || first.Usage.OutputTokens != 4 || first.Metadata["ticket"] != "7" {
		t.Fatalf("first response = %+v", first)
	}
	got, err := a.Responses.Get(ctx, first.ID, sdkresp.ResponseGetParams{})
	if err != nil || got.ID != first.ID || got.OutputText() != f.Reply || got.Usage.TotalTokens != first.Usage.TotalTokens {
		t.Fatalf("Get = %+v, %v", got, err)
	}

	// Three turns: every turn's prompt holds the whole history, visible in its tokens.
	prev, inputs := first, []int64{first.Usage.InputTokens}
	for _, q := range []string{"and times eight?", "and times nine?"} {
		next, err := a.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text(q), PreviousResponseID: sdk.String(prev.ID)})
		if err != nil {
			t.Fatal(err)
		}
		if next.PreviousResponseID != prev.ID {
			t.Errorf("previous_response_id = %q, want %q", next.PreviousResponseID, prev.ID)
		}
		inputs = append(inputs, next.Usage.InputTokens)
		prev = next
	}
	if !slices.IsSorted(inputs) || inputs[0] == inputs[1] || inputs[1] == inputs[2] {
		t.Errorf("input tokens over three turns = %v, want strictly growing (the history in the prompt)", inputs)
	}
	req := f.Last().(*infer.ChatRequest)
	var roles []string
	for _, m := range req.Messages {
		roles = append(roles, m.Role)
	}
	// The instructions belong to the first request only, as OpenAI defines them.
	if want := []string{"user", "assistant", "user", "assistant", "user"}; !slices.Equal(roles, want) {
		t.Errorf("third turn's messages have roles %v, want %v", roles, want)
	}
	if req.Messages[0].Content != "what is six times seven?" || req.Messages[1].Content != f.Reply || req.Messages[4].Content != "and times nine?" {
		t.Errorf("third turn's history = %+v", req.Messages)
	}

	page, err := a.Responses.InputItems.List(ctx, prev.ID, sdkresp.InputItemListParams{Order: sdkresp.InputItemListParamsOrderAsc})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 5 || page.Data[0].Type != "message" || page.Data[0].ID == "" {
		t.Fatalf("input items of the third turn = %+v", page.Data)
	}

	if err := a.Responses.Delete(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	_, err = a.Responses.Get(ctx, first.ID, sdkresp.ResponseGetParams{})
	wantStatus(t, "Get after Delete", err, http.StatusNotFound)
	// A deleted response's continuation keeps its own copy of the history.
	if _, err := a.Responses.Get(ctx, prev.ID, sdkresp.ResponseGetParams{}); err != nil {
		t.Errorf("deleting the first turn lost the third: %v", err)
	}

	unstored, err := a.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text("hi"), Store: sdk.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Responses.Get(ctx, unstored.ID, sdkresp.ResponseGetParams{})
	wantStatus(t, "Get of store:false", err, http.StatusNotFound)
}

// TestResponsesIsolation: key B gets exactly the 404 of an unknown id for key A's
// response, whether it reads, lists, continues or deletes it.
func TestResponsesIsolation(t *testing.T) {
	f := &infertest.Fake{Model: "fake"}
	a, b := responsesClients(t, f, Options{})
	ctx := testCtx(t)
	owned, err := a.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text("a secret of key A")})
	if err != nil {
		t.Fatal(err)
	}
	unknown := "resp_00000000000000000000000000000000"
	attempts := map[string]func(id string) error{
		"get": func(id string) error { _, err := b.Responses.Get(ctx, id, sdkresp.ResponseGetParams{}); return err },
		"input_items": func(id string) error {
			_, err := b.Responses.InputItems.List(ctx, id, sdkresp.InputItemListParams{})
			return err
		},
		"continue": func(id string) error {
			_, err := b.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text("go on"), PreviousResponseID: sdk.String(id)})
			return err
		},
		"delete": func(id string) error { return b.Responses.Delete(ctx, id) },
	}
	calls := f.Calls("chat")
	for name, try := range attempts {
		theirs := wantStatus(t, name+" of key A's response", try(owned.ID), http.StatusNotFound)
		none := wantStatus(t, name+" of an unknown id", try(unknown), http.StatusNotFound)
		if theirs.Code != none.Code || theirs.Type != none.Type || theirs.Param != none.Param ||
			strings.ReplaceAll(theirs.Message, owned.ID, unknown) != none.Message {
			t.Errorf("%s: key A's response answers %+v, an unknown id %+v: a key could tell them apart", name, theirs, none)
		}
	}
	if f.Calls("chat") != calls {
		t.Errorf("a refused continuation reached the model")
	}
	if got, err := a.Responses.Get(ctx, owned.ID, sdkresp.ResponseGetParams{}); err != nil || got.OutputText() != owned.OutputText() {
		t.Errorf("key A lost its response after key B's attempts: %v", err)
	}
}

// TestResponsesStreamEventOrder checks the streamed events' order and numbering, and
// that a streamed response is stored.
func TestResponsesStreamEventOrder(t *testing.T) {
	f := &infertest.Fake{Model: "fake", Reply: "one two three"}
	a, _ := responsesClients(t, f, Options{})
	ctx := testCtx(t)
	st := a.Responses.NewStreaming(ctx, sdkresp.ResponseNewParams{Input: text("count")})
	var types []string
	var deltas strings.Builder
	var id string
	for st.Next() {
		ev := st.Current()
		if int(ev.SequenceNumber) != len(types) {
			t.Errorf("event %d (%s) has sequence_number %d", len(types), ev.Type, ev.SequenceNumber)
		}
		types = append(types, ev.Type)
		if ev.Type == "response.output_text.delta" {
			deltas.WriteString(ev.Delta)
		}
		if ev.Type == "response.completed" {
			id = ev.Response.ID
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	if !slices.Equal(types, want) {
		t.Fatalf("events = %v\nwant %v", types, want)
	}
	if deltas.String() != f.Reply {
		t.Errorf("deltas = %q, want %q", deltas.String(), f.Reply)
	}
	got, err := a.Responses.Get(ctx, id, sdkresp.ResponseGetParams{})
	if err != nil || got.OutputText() != f.Reply {
		t.Errorf("streamed response stored as %+v, %v", got, err)
	}
}

// TestResponsesFunctionCalls sends function tools and a function call's output back:
// the call and its output reach the model as an assistant tool call and a tool turn.
func TestResponsesFunctionCalls(t *testing.T) {
	var badArgs atomic.Bool
	f := &infertest.Fake{Model: "fake", Reply: "21 degrees", Fail: func(string) error {
		if badArgs.Load() {
			return infer.Invalid("messages[2].tool_calls[0].function.arguments", "messages[2].tool_calls[0].function.arguments: not a JSON object")
		}
		return nil
	}}
	a, _ := responsesClients(t, f, Options{})
	ctx := testCtx(t)
	input := sdkresp.ResponseInputParam{
		sdkresp.ResponseInputItemParamOfMessage("weather in Paris?", sdkresp.EasyInputMessageRoleUser),
		sdkresp.ResponseInputItemParamOfFunctionCall(`{"city":"Paris"}`, "call_1", "weather"),
		sdkresp.ResponseInputItemParamOfFunctionCallOutput(`{"celsius":21}`),
	}
	input[2].OfFunctionCallOutput.CallID = sdk.String("call_1")
	_, err := a.Responses.New(ctx, sdkresp.ResponseNewParams{
		Input: sdkresp.ResponseNewParamsInputUnion{OfInputItemList: input},
		Tools: []sdkresp.ToolUnionParam{sdkresp.ToolParamOfFunction("weather",
			map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}, true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := f.Last().(*infer.ChatRequest)
	if len(req.Tools) != 1 || req.Tools[0].Name != "weather" || len(req.Messages) != 3 {
		t.Fatalf("chat request = %+v", req)
	}
	call, out := req.Messages[1], req.Messages[2]
	if call.Role != chat.RoleAssistant || len(call.ToolCalls) != 1 || call.ToolCalls[0].ID != "call_1" ||
		call.ToolCalls[0].Arguments != `{"city":"Paris"}` || out.Role != chat.RoleTool || out.ToolCallID != "call_1" ||
		out.Content != `{"celsius":21}` {
		t.Errorf("history = %+v", req.Messages)
	}

	// The model's error about the call's arguments names the call's input item
	// (input[1]), not the chat message the call became (messages[2] after the
	// instructions' system message).
	badArgs.Store(true)
	_, err = a.Responses.New(ctx, sdkresp.ResponseNewParams{Instructions: sdk.String("Be brief."),
		Input: sdkresp.ResponseNewParamsInputUnion{OfInputItemList: input}})
	if e := wantStatus(t, "bad call arguments", err, http.StatusBadRequest); e.Param != "input[1].arguments" ||
		e.Message != "input[1].arguments: not a JSON object" {
		t.Errorf("param %q, message %q; want input[1].arguments", e.Param, e.Message)
	}
}

// reasoningScript: a reasoning model's thinking, then its answer.
var reasoningScript = []infer.Event{
	{Reasoning: "Let me "}, {Reasoning: "think."},
	{Text: "It is "}, {Text: "four."},
	{Done: true, Finish: infer.FinishStop},
}

// TestResponsesReasoningItem: a model's thinking is a reasoning item (its
// reasoning_text content) before the message, never in the message's output_text;
// streamed, it has OpenAI's events in OpenAI's order: the item, its reasoning_text
// part, response.reasoning_text.delta pieces and .done, the part's and the item's
// done, then the message's events.
func TestResponsesReasoningItem(t *testing.T) {
	url := serveScripted(t, reasoningScript)
	c := sdk.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx := testCtx(t)
	resp, err := c.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text("2+2?")})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Output) != 2 || resp.Output[0].Type != "reasoning" || len(resp.Output[0].Content) != 1 ||
		resp.Output[0].Content[0].Type != "reasoning_text" || resp.Output[0].Content[0].Text != "Let me think." ||
		resp.Output[1].Type != "message" || resp.OutputText() != "It is four." {
		t.Fatalf("output %s", resp.RawJSON())
	}

	st := c.Responses.NewStreaming(ctx, sdkresp.ResponseNewParams{Input: text("2+2?")})
	var types []string
	var thought, answer strings.Builder
	for st.Next() {
		ev := st.Current()
		name := ev.Type
		switch ev.Type {
		case "response.output_item.added", "response.output_item.done":
			name += ":" + ev.Item.Type
		case "response.content_part.added", "response.content_part.done":
			name += ":" + ev.Part.Type
		case "response.reasoning_text.delta":
			thought.WriteString(ev.Delta)
		case "response.reasoning_text.done":
			if ev.Text != "Let me think." {
				t.Errorf("reasoning_text.done text %q", ev.Text)
			}
		case "response.output_text.delta":
			answer.WriteString(ev.Delta)
		}
		types = append(types, name)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"response.created", "response.in_progress",
		"response.output_item.added:reasoning", "response.content_part.added:reasoning_text",
		"response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done",
		"response.content_part.done:reasoning_text", "response.output_item.done:reasoning",
		"response.output_item.added:message", "response.content_part.added:output_text",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.done",
		"response.content_part.done:output_text", "response.output_item.done:message", "response.completed"}
	if !slices.Equal(types, want) {
		t.Fatalf("events\n%v\nwant\n%v", types, want)
	}
	if thought.String() != "Let me think." || answer.String() != "It is four." {
		t.Errorf("streamed thinking %q, answer %q", thought.String(), answer.String())
	}
}

// TestResponsesReasoningOnARealTemplate: DeepSeek-R1's template (on Qwen 2's
// tokenizer, the one of its distilled models) opens the thinking block in the prompt,
// so the model's output is a reasoning item, collected and streamed alike, and no
// message's output_text holds it. The fixture's template closes the block again
// unless enable_thinking is set: the model's config sets it (chat_template_kwargs),
// and a request's chat_template_kwargs wins over the config's.
func TestResponsesReasoningOnARealTemplate(t *testing.T) {
	cfg := modelConfig(t, "m")
	cfg.Path, cfg.ChatTemplateFile = testmodel.WithVocab(t, "qwen2", ""), r1TemplatePath(t)
	cfg.ChatTemplateKwargs = map[string]any{"enable_thinking": true}
	url := serveModel(t, newService(t, cfg, service.Options{}), Options{Log: testLog()})
	if p := applyTemplate(t, url, map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": false}}); !strings.HasSuffix(p, "</think>") {
		t.Errorf("the request's enable_thinking false does not win over the config's: prompt %q", p)
	}
	c := sdk.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx := testCtx(t)
	params := sdkresp.ResponseNewParams{Model: "m", Input: text("What is 2+2?"), MaxOutputTokens: sdk.Int(16), Temperature: sdk.Float(0)}
	resp, err := c.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Output) == 0 || resp.Output[0].Type != "reasoning" || len(resp.Output[0].Content) != 1 || resp.Output[0].Content[0].Text == "" {
		t.Fatalf("the thinking is not a reasoning item: %s", resp.RawJSON())
	}
	thought := resp.Output[0].Content[0].Text
	if strings.Contains(resp.OutputText(), thought) {
		t.Errorf("output_text %q holds the thinking %q", resp.OutputText(), thought)
	}
	st := c.Responses.NewStreaming(ctx, params)
	var streamed strings.Builder
	for st.Next() {
		if ev := st.Current(); ev.Type == "response.reasoning_text.delta" {
			streamed.WriteString(ev.Delta)
		}
	}
	if err := st.Err(); err != nil || streamed.String() != thought {
		t.Errorf("streamed thinking %q (err %v), collected %q", streamed.String(), err, thought)
	}
}

// TestResponsesJSONSchema: text.format json_schema constrains every output at
// temperature 1 (each request samples its own seed): each complete output validates
// against the schema; a schema keyword the converter cannot enforce is a 400 whose
// param is OpenAI's text.format.schema.
func TestResponsesJSONSchema(t *testing.T) {
	_, url := sharedModel(t)
	c := sdk.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx := testCtx(t)
	raw := `{"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
		"score": {"type": "integer", "minimum": 0, "maximum": 100}, "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
		"required": ["answer", "score", "tags"], "additionalProperties": false}`
	format := func(schema string) sdkresp.ResponseTextConfigParam {
		var m map[string]any
		if err := json.Unmarshal([]byte(schema), &m); err != nil {
			t.Fatal(err)
		}
		return sdkresp.ResponseTextConfigParam{Format: sdkresp.ResponseFormatTextConfigUnionParam{
			OfJSONSchema: &sdkresp.ResponseFormatTextJSONSchemaConfigParam{Name: "verdict", Schema: m, Strict: sdk.Bool(true)}}}
	}
	schema := compileSchema(t, raw)
	complete := 0
	for range 6 {
		resp, err := c.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text("Is the sea blue?"), Text: format(raw),
			Temperature: sdk.Float(1), MaxOutputTokens: sdk.Int(64)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status == "incomplete" {
			continue // cut by max_output_tokens
		}
		if resp.Status != "completed" || resp.Text.Format.Type != "json_schema" {
			t.Fatalf("status %q, format %q", resp.Status, resp.Text.Format.Type)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(resp.OutputText()))
		if err != nil {
			t.Fatalf("output %q is not JSON: %v", resp.OutputText(), err)
		}
		if err := schema.Validate(v); err != nil {
			t.Fatalf("output %q: %v", resp.OutputText(), err)
		}
		complete++
	}
	if complete < 4 {
		t.Fatalf("only %d of 6 schema outputs completed within max_output_tokens", complete)
	}
	_, err := c.Responses.New(ctx, sdkresp.ResponseNewParams{Input: text("Is the sea blue?"), Text: format(`{"type": "string", "pattern": "^a+$"}`)})
	if e := wantStatus(t, "a pattern keyword", err, http.StatusBadRequest); e.Param != "text.format.schema" || !strings.Contains(e.Message, "pattern") {
		t.Errorf("refused schema: param %q, message %q", e.Param, e.Message)
	}
}

// TestSameConversationThreeFormats: one conversation (instructions, a user turn, the
// assistant's earlier answer, a second user turn) through chat completions, Messages
// and Responses at temperature 0 is one prompt (the same input tokens) and one answer.
func TestSameConversationThreeFormats(t *testing.T) {
	_, url := sharedModel(t)
	const system, first, earlier, second = "You are terse.", "Tell me a story about the sea.", "A ship sailed.", "And then?"
	var cc openai.ChatCompletion
	r := post(t, url+"/v1/chat/completions", map[string]any{"model": "tiny", "max_tokens": 16, "temperature": 0,
		"messages": []map[string]any{{"role": "system", "content": system}, {"role": "user", "content": first},
			{"role": "assistant", "content": earlier}, {"role": "user", "content": second}}})
	r.json(t, &cc)
	if r.status != 200 || cc.Choices[0].Message.Content == "" {
		t.Fatalf("chat completions: %d %s", r.status, r.body)
	}
	want, tokens := cc.Choices[0].Message.Content, cc.Usage.PromptTokens

	var msg struct {
		Content []struct{ Text string }
		Usage   struct {
			InputTokens int `json:"input_tokens"`
		}
	}
	r = post(t, url+"/v1/messages", map[string]any{"model": "tiny", "max_tokens": 16, "temperature": 0, "system": system,
		"messages": []map[string]any{{"role": "user", "content": first}, {"role": "assistant", "content": earlier},
			{"role": "user", "content": second}}})
	r.json(t, &msg)
	if r.status != 200 || len(msg.Content) != 1 || msg.Content[0].Text != want || msg.Usage.InputTokens != tokens {
		t.Errorf("Messages: %d %s; chat answered %q from %d prompt tokens", r.status, r.body, want, tokens)
	}

	var resp struct {
		Output []struct {
			Content []struct{ Text string }
		}
		Usage struct {
			InputTokens int `json:"input_tokens"`
		}
	}
	r = post(t, url+"/v1/responses", map[string]any{"model": "tiny", "max_output_tokens": 16, "temperature": 0, "instructions": system,
		"input": []map[string]any{{"role": "user", "content": first},
			{"type": "message", "role": "assistant", "content": []map[string]any{{"type": "output_text", "text": earlier}}},
			{"role": "user", "content": second}}})
	r.json(t, &resp)
	if r.status != 200 || len(resp.Output) != 1 || len(resp.Output[0].Content) != 1 || resp.Output[0].Content[0].Text != want ||
		resp.Usage.InputTokens != tokens {
		t.Errorf("Responses: %d %s; chat answered %q from %d prompt tokens", r.status, r.body, want, tokens)
	}
}
