package rest

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/openai"
)

// The generation path end to end on the real tiny model: the cards, greedy
// determinism, stream == non-stream, completions, stops, seeds, n, logprobs, the JSON
// grammar, embeddings and the tokenizer.

func TestModelsEndpoints(t *testing.T) {
	_, url := sharedModel(t)
	var list openai.ModelList
	r := do(t, "GET", url+"/v1/models", nil)
	r.json(t, &list)
	if r.status != 200 || list.Object != "list" || len(list.Data) != 1 {
		t.Fatalf("GET /v1/models = %d %s", r.status, r.body)
	}
	c := list.Data[0]
	if c.ID != "tiny" || c.Object != "model" || c.OwnedBy != "hxp" || c.Created == 0 || c.Status != "ready" || c.ContextLength != 512 {
		t.Errorf("card = %+v", c)
	}
	var one openai.ModelCard
	r = do(t, "GET", url+"/v1/models/tiny", nil)
	r.json(t, &one)
	if r.status != 200 || one != c {
		t.Errorf("GET /v1/models/tiny = %d %+v, want %+v", r.status, one, c)
	}
	r = do(t, "GET", url+"/v1/models/nope", nil)
	if e := r.apiErr(t); r.status != 404 || e.Code == nil || *e.Code != "model_not_found" {
		t.Errorf("unknown model: %d %s", r.status, r.body)
	}
}

func TestHealth(t *testing.T) {
	_, url := sharedModel(t)
	var h HealthResponse
	r := do(t, "GET", url+"/health", nil)
	r.json(t, &h)
	if r.status != 200 || h.Status != "ok" || len(h.Models) != 1 || h.Models[0].Status != "ready" {
		t.Errorf("/health = %d %s", r.status, r.body)
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Error("no x-request-id header")
	}
}

func TestChatCompletion(t *testing.T) {
	_, url := sharedModel(t)
	r := post(t, url+"/v1/chat/completions", chatBody("tiny", 8, nil))
	var c openai.ChatCompletion
	r.json(t, &c)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if c.Object != "chat.completion" || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Model != "tiny" || c.Created == 0 {
		t.Errorf("envelope = %+v", c)
	}
	if len(c.Choices) != 1 || c.Choices[0].Index != 0 || c.Choices[0].Message.Role != "assistant" {
		t.Fatalf("choices = %+v", c.Choices)
	}
	u := c.Usage
	if u == nil || u.PromptTokens == 0 || u.CompletionTokens < 1 || u.CompletionTokens > 8 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage = %+v", u)
	}
	switch f := c.Choices[0].FinishReason; {
	case f == "length" && u.CompletionTokens != 8, f != "length" && f != "stop":
		t.Errorf("finish_reason %q with %d tokens", f, u.CompletionTokens)
	}
	// The raw JSON has exactly OpenAI's field names.
	var raw map[string]any
	r.json(t, &raw)
	for _, k := range []string{"id", "object", "created", "model", "choices", "usage"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("response lacks %q", k)
		}
	}
	ch := raw["choices"].([]any)[0].(map[string]any)
	if _, ok := ch["logprobs"]; !ok || ch["logprobs"] != nil {
		t.Errorf("choices[0].logprobs should be null: %v", ch["logprobs"])
	}
}

// max_completion_tokens is the newer name of max_tokens.
func TestMaxCompletionTokens(t *testing.T) {
	_, url := sharedModel(t)
	body := chatBody("tiny", 0, map[string]any{"max_completion_tokens": 3})
	delete(body, "max_tokens")
	var c openai.ChatCompletion
	r := post(t, url+"/v1/chat/completions", body)
	r.json(t, &c)
	if r.status != 200 || c.Usage.CompletionTokens > 3 {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestStreamMatchesNonStream(t *testing.T) {
	_, url := sharedModel(t)
	var c openai.ChatCompletion
	r := post(t, url+"/v1/chat/completions", chatBody("tiny", 24, nil))
	r.json(t, &c)
	want := c.Choices[0].Message.Content
	if want == "" {
		t.Fatal("empty completion")
	}
	r = post(t, url+"/v1/chat/completions", chatBody("tiny", 24, map[string]any{"stream": true, "stream_options": map[string]any{"include_usage": true}}))
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	text, finish, usage := chatStream(t, r.body)
	if text != want {
		t.Errorf("streamed text %q != non-streamed %q", text, want)
	}
	if finish != c.Choices[0].FinishReason {
		t.Errorf("finish %q != %q", finish, c.Choices[0].FinishReason)
	}
	if usage == nil || usage.CompletionTokens != c.Usage.CompletionTokens || usage.PromptTokens != c.Usage.PromptTokens {
		t.Errorf("usage chunk %+v, non-streamed %+v", usage, c.Usage)
	}
	// With include_usage every other chunk has "usage": null.
	evs := sseEvents(t, r.body)
	for _, ev := range evs[:len(evs)-2] {
		var m map[string]json.RawMessage
		json.Unmarshal([]byte(ev), &m)
		if string(m["usage"]) != "null" {
			t.Fatalf("chunk without usage: null: %s", ev)
		}
	}
	// Without include_usage there is no usage field at all.
	r = post(t, url+"/v1/chat/completions", chatBody("tiny", 4, map[string]any{"stream": true}))
	for _, ev := range sseEvents(t, r.body) {
		if strings.Contains(ev, `"usage"`) {
			t.Fatalf("usage without include_usage: %s", ev)
		}
	}
}

func TestCompletions(t *testing.T) {
	svc, url := sharedModel(t)
	body := map[string]any{"model": "tiny", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}
	var c struct {
		openai.Completion
		Usage openai.Usage `json:"usage"`
	}
	r := post(t, url+"/v1/completions", body)
	r.json(t, &c)
	if r.status != 200 || c.Object != "text_completion" || !strings.HasPrefix(c.ID, "cmpl-") || len(c.Choices) != 1 || c.Usage.CompletionTokens == 0 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := c.Choices[0].Text

	// The same prompt as token ids gives the same text.
	toks, err := svc.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	body["prompt"] = toks
	r = post(t, url+"/v1/completions", body)
	r.json(t, &c)
	if r.status != 200 || c.Choices[0].Text != want {
		t.Errorf("token prompt: %d %q, want %q", r.status, c.Choices[0].Text, want)
	}

	// Streamed: identical text, text_completion chunks, [DONE].
	body["prompt"], body["stream"] = "Once upon a time", true
	r = post(t, url+"/v1/completions", body)
	var text strings.Builder
	finish := ""
	for _, ev := range sseEvents(t, r.body) {
		if ev == "[DONE]" {
			break
		}
		var ch openai.Completion
		if err := json.Unmarshal([]byte(ev), &ch); err != nil || ch.Object != "text_completion" {
			t.Fatalf("chunk %q", ev)
		}
		for _, cc := range ch.Choices {
			text.WriteString(cc.Text)
			if cc.FinishReason != nil {
				finish = *cc.FinishReason
			}
		}
	}
	if text.String() != want || finish == "" {
		t.Errorf("streamed %q finish %q, want %q", text.String(), finish, want)
	}

	// Several prompts: one choice each, in order.
	delete(body, "stream")
	body["prompt"] = []string{"Once upon a time", "The cat"}
	r = post(t, url+"/v1/completions", body)
	r.json(t, &c)
	if r.status != 200 || len(c.Choices) != 2 || c.Choices[0].Text != want || c.Choices[1].Index != 1 {
		t.Errorf("two prompts: %d %s", r.status, r.body)
	}
}

func TestCompletionControlTokensStayText(t *testing.T) {
	svc, url := sharedModel(t)
	var tk openai.TokenizeResponse
	post(t, url+"/tokenize", map[string]any{"prompt": "<|im_start|>"}).json(t, &tk)
	parsed, err := svc.Tokenize("<|im_start|>", true, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(tk.Tokens) <= len(parsed) {
		t.Errorf("user text %v was parsed into control tokens %v", tk.Tokens, parsed)
	}
}

func TestStopStrings(t *testing.T) {
	_, url := sharedModel(t)
	body := map[string]any{"model": "tiny", "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}
	var c openai.Completion
	post(t, url+"/v1/completions", body).json(t, &c)
	// The model and the request are fixed, so the greedy output is too: one too short
	// to cut is a regression, not a reason to skip.
	full := []rune(c.Choices[0].Text)
	if len(full) < 8 {
		t.Fatalf("greedy output %q is too short to cut (%d characters, want at least 8)", string(full), len(full))
	}
	stop := string(full[4:7]) // whole characters: a byte slice could split one
	want := string(full)[:strings.Index(string(full), stop)]
	for _, s := range []any{stop, []string{"\x01never", stop}} {
		body["stop"] = s
		r := post(t, url+"/v1/completions", body)
		r.json(t, &c)
		if r.status != 200 || c.Choices[0].Text != want || *c.Choices[0].FinishReason != "stop" {
			t.Errorf("stop %v: %d text %q finish %v, want %q", s, r.status, c.Choices[0].Text, c.Choices[0].FinishReason, want)
		}
		// vLLM's stop_reason names the matched string, in the response and the stream's last chunk.
		if sr := c.Choices[0].StopReason; sr == nil || *sr != stop {
			t.Errorf("stop %v: stop_reason %v, want %q", s, sr, stop)
		}
		body["stream"] = true
		var last openai.Completion
		evs := sseEvents(t, post(t, url+"/v1/completions", body).body)
		if err := json.Unmarshal([]byte(evs[len(evs)-2]), &last); err != nil || len(last.Choices) != 1 ||
			last.Choices[0].StopReason == nil || *last.Choices[0].StopReason != stop {
			t.Errorf("stop %v: the stream's last chunk %s (%v), want stop_reason %q", s, evs[len(evs)-2], err, stop)
		}
		delete(body, "stream")
	}
	delete(body, "stop")
	var plain openai.Completion
	post(t, url+"/v1/completions", body).json(t, &plain)
	if plain.Choices[0].StopReason != nil {
		t.Errorf("no stop string matched, yet stop_reason %q", *plain.Choices[0].StopReason)
	}
}

func TestSeedReproducible(t *testing.T) {
	_, url := sharedModel(t)
	body := map[string]any{"model": "tiny", "prompt": "The dog", "max_tokens": 16, "temperature": 1.0, "top_p": 0.95, "seed": 1234}
	var a, b openai.Completion
	post(t, url+"/v1/completions", body).json(t, &a)
	post(t, url+"/v1/completions", body).json(t, &b)
	if a.Choices[0].Text != b.Choices[0].Text {
		t.Errorf("same seed, different text: %q vs %q", a.Choices[0].Text, b.Choices[0].Text)
	}
}

func TestNChoices(t *testing.T) {
	_, url := sharedModel(t)
	var c openai.ChatCompletion
	r := post(t, url+"/v1/chat/completions", chatBody("tiny", 6, map[string]any{"n": 2, "temperature": 0.8, "seed": 7}))
	r.json(t, &c)
	if r.status != 200 || len(c.Choices) != 2 || c.Choices[0].Index != 0 || c.Choices[1].Index != 1 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// Streamed: both choices deliver a finish reason.
	r = post(t, url+"/v1/chat/completions", chatBody("tiny", 6, map[string]any{"n": 2, "stream": true}))
	finished := map[int]bool{}
	for _, ev := range sseEvents(t, r.body) {
		var ch openai.ChatChunk
		if ev != "[DONE]" && json.Unmarshal([]byte(ev), &ch) == nil {
			for _, cc := range ch.Choices {
				if cc.FinishReason != nil {
					finished[cc.Index] = true
				}
			}
		}
	}
	if !finished[0] || !finished[1] {
		t.Errorf("finished choices %v", finished)
	}
	// Choice j samples with seed+j: the second choice of seed 7 is the only choice of
	// seed 8, and the first is seed 7's.
	var one openai.ChatCompletion
	for j, seed := range []int{7, 8} {
		r = post(t, url+"/v1/chat/completions", chatBody("tiny", 6, map[string]any{"temperature": 0.8, "seed": seed}))
		r.json(t, &one)
		if r.status != 200 || one.Choices[0].Message.Content != c.Choices[j].Message.Content {
			t.Errorf("n=2 seed 7: choice %d %q, but seed %d alone gives %q", j, c.Choices[j].Message.Content, seed, one.Choices[0].Message.Content)
		}
	}
}

func TestChatLogprobs(t *testing.T) {
	_, url := sharedModel(t)
	var c openai.ChatCompletion
	r := post(t, url+"/v1/chat/completions", chatBody("tiny", 6, map[string]any{"logprobs": true, "top_logprobs": 3}))
	r.json(t, &c)
	if r.status != 200 || c.Choices[0].Logprobs == nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	lps := c.Choices[0].Logprobs.Content
	if len(lps) != c.Usage.CompletionTokens {
		t.Fatalf("%d logprobs for %d tokens", len(lps), c.Usage.CompletionTokens)
	}
	var joined []byte
	for _, lp := range lps {
		if lp.Logprob > 0 || len(lp.TopLogprobs) != 3 {
			t.Fatalf("entry %+v", lp)
		}
		// Greedy: the chosen token is the most likely alternative.
		if lp.TopLogprobs[0].Logprob < lp.TopLogprobs[1].Logprob || math.Abs(lp.TopLogprobs[0].Logprob-lp.Logprob) > 1e-4 {
			t.Errorf("greedy token %+v is not the top alternative %+v", lp, lp.TopLogprobs[0])
		}
		for _, b := range lp.Bytes {
			joined = append(joined, byte(b))
		}
	}
	if !strings.HasPrefix(string(joined), c.Choices[0].Message.Content) {
		t.Errorf("token bytes %q do not spell the content %q", joined, c.Choices[0].Message.Content)
	}
}

func TestCompletionLegacyLogprobs(t *testing.T) {
	_, url := sharedModel(t)
	var c openai.Completion
	r := post(t, url+"/v1/completions", map[string]any{"model": "tiny", "prompt": "Hi", "max_tokens": 5, "temperature": 0, "logprobs": 2})
	r.json(t, &c)
	lp := c.Choices[0].Logprobs
	if r.status != 200 || lp == nil || len(lp.Tokens) == 0 || len(lp.Tokens) != len(lp.TokenLogprobs) ||
		len(lp.TopLogprobs) != len(lp.Tokens) || len(lp.TextOffset) != len(lp.Tokens) || len(lp.TopLogprobs[0]) == 0 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if lp.TextOffset[0] != 0 || (len(lp.TextOffset) > 1 && lp.TextOffset[1] != len(lp.Tokens[0])) {
		t.Errorf("text offsets %v for tokens %q", lp.TextOffset, lp.Tokens)
	}
}

func TestJSONResponseFormat(t *testing.T) {
	_, url := sharedModel(t)
	var c openai.ChatCompletion
	r := post(t, url+"/v1/chat/completions", chatBody("tiny", 60, map[string]any{"response_format": map[string]any{"type": "json_object"}}))
	r.json(t, &c)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	out := c.Choices[0].Message.Content
	t.Logf("json_object output (%s): %s", c.Choices[0].FinishReason, out)
	var v any
	err := json.Unmarshal([]byte(out), &v)
	switch c.Choices[0].FinishReason {
	case "stop":
		if err != nil {
			t.Errorf("finished output is not JSON: %q (%v)", out, err)
		}
		if _, ok := v.(map[string]any); !ok {
			t.Errorf("output %q is not an object", out)
		}
	default: // cut by max_tokens: must be a prefix of JSON
		var se *json.SyntaxError
		if err == nil || !errors.As(err, &se) || !strings.Contains(err.Error(), "unexpected end") {
			t.Errorf("truncated output %q is not a JSON prefix (%v)", out, err)
		}
		if !strings.HasPrefix(out, "{") {
			t.Errorf("output %q does not start an object", out)
		}
	}
}

func TestEmbeddings(t *testing.T) {
	svc, url := sharedModel(t)
	var e struct {
		Object string
		Model  string
		Data   []struct {
			Object    string
			Index     int
			Embedding json.RawMessage
		}
		Usage openai.Usage
	}
	r := post(t, url+"/v1/embeddings", map[string]any{"model": "tiny", "input": []string{"hello world", "the sea"}})
	r.json(t, &e)
	if r.status != 200 || e.Object != "list" || e.Model != "tiny" || len(e.Data) != 2 || e.Usage.PromptTokens == 0 || e.Usage.TotalTokens != e.Usage.PromptTokens {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var v0 []float64
	json.Unmarshal(e.Data[0].Embedding, &v0)
	if len(v0) != svc.Info().Embd || e.Data[1].Index != 1 || e.Data[0].Object != "embedding" {
		t.Fatalf("vector of %d (model width %d)", len(v0), svc.Info().Embd)
	}
	var norm float64
	for _, x := range v0 {
		norm += x * x
	}
	if math.Abs(norm-1) > 1e-3 {
		t.Errorf("|v|^2 = %v, want 1", norm)
	}
	// base64: the same vector as little-endian float32s. The request that is compared
	// bit for bit embeds "hello world" alone, as the base64 one does: a vector computed
	// in a batch with other inputs may differ by rounding (the engine's tests guarantee
	// a cosine of 0.9999, not equal floats).
	var alone []float64
	r = post(t, url+"/v1/embeddings", map[string]any{"model": "tiny", "input": "hello world"})
	r.json(t, &e)
	json.Unmarshal(e.Data[0].Embedding, &alone)
	if cos := cosine(alone, v0); cos < 0.9999 {
		t.Errorf("\"hello world\" alone and in a batch: cosine %v, want at least 0.9999", cos)
	}
	r = post(t, url+"/v1/embeddings", map[string]any{"model": "tiny", "input": "hello world", "encoding_format": "base64"})
	r.json(t, &e)
	var s string
	json.Unmarshal(e.Data[0].Embedding, &s)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 4*len(alone) {
		t.Fatalf("base64 %d bytes, %v", len(raw), err)
	}
	for i := range alone {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != float32(alone[i]) {
			t.Fatalf("base64[%d] = %v, float %v", i, got, float32(alone[i]))
		}
	}
	for _, bad := range []struct {
		body  map[string]any
		param string
	}{
		{map[string]any{"model": "tiny", "input": ""}, "input[0]"},
		{map[string]any{"model": "tiny", "input": []string{"a", ""}}, "input[1]"},
		{map[string]any{"model": "tiny", "input": "a", "dimensions": 3}, "dimensions"},
		{map[string]any{"model": "tiny", "input": "a", "encoding_format": "int8"}, "encoding_format"},
		{map[string]any{"model": "tiny", "input": strings.Repeat("word ", 600)}, "input[0]"},
		{map[string]any{"model": "tiny"}, "input"},
	} {
		r := post(t, url+"/v1/embeddings", bad.body)
		if e := r.apiErr(t); r.status != 400 || e.Param == nil || *e.Param != bad.param {
			t.Errorf("%v: %d %s, want 400 param %s", bad.body, r.status, r.body, bad.param)
		}
	}
}

func TestTokenizeDetokenize(t *testing.T) {
	svc, url := sharedModel(t)
	var tk openai.TokenizeResponse
	r := post(t, url+"/tokenize", map[string]any{"model": "tiny", "prompt": "hello world"})
	r.json(t, &tk)
	if r.status != 200 || tk.Count != len(tk.Tokens) || tk.Count < 2 || tk.MaxModelLen != 512 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var noBOS openai.TokenizeResponse
	post(t, url+"/tokenize", map[string]any{"prompt": "hello world", "add_special_tokens": false}).json(t, &noBOS)
	if len(noBOS.Tokens) != len(tk.Tokens)-1 {
		t.Errorf("add_special_tokens=false: %v vs %v", noBOS.Tokens, tk.Tokens)
	}
	var dt openai.DetokenizeResponse
	r = post(t, url+"/detokenize", map[string]any{"model": "tiny", "tokens": noBOS.Tokens})
	r.json(t, &dt)
	if r.status != 200 || dt.Prompt != "hello world" {
		t.Errorf("detokenize = %d %q", r.status, dt.Prompt)
	}
	// Chat messages are tokenized as the chat endpoint does: the rendered template,
	// its control tokens parsed.
	var chat openai.TokenizeResponse
	post(t, url+"/tokenize", map[string]any{"messages": []map[string]string{{"role": "user", "content": "hi"}}}).json(t, &chat)
	text, err := svc.RenderChat([]engine.ChatMessage{{Role: "user", Content: "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := svc.Tokenize(text, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(chat.Tokens) != len(want) || chat.Count != len(want) {
		t.Fatalf("messages tokenized to %v (count %d), the rendered chat %q is %v", chat.Tokens, chat.Count, text, want)
	}
	for i := range want {
		if chat.Tokens[i] != int32(want[i]) {
			t.Fatalf("messages tokenized to %v, the rendered chat %q is %v", chat.Tokens, text, want)
		}
	}
	// Ids outside the vocabulary are the client's fault.
	r = post(t, url+"/detokenize", map[string]any{"tokens": []int{1, 999999}})
	if e := r.apiErr(t); r.status != 400 || *e.Param != "tokens" {
		t.Errorf("bad token: %d %s", r.status, r.body)
	}
	r = post(t, url+"/detokenize", map[string]any{"tokens": []int{-1}})
	if e := r.apiErr(t); r.status != 400 || *e.Param != "tokens[0]" {
		t.Errorf("negative token: %d %s", r.status, r.body)
	}
}

// cosine is the cosine similarity of a and b.
func cosine(a, b []float64) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += a[i] * b[i]
		na += a[i] * a[i]
		nb += b[i] * b[i]
	}
	return dot / math.Sqrt(na*nb)
}
