package rest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

// writeError is the one place errors become HTTP answers; check every kind the core
// and the transport produce: status, OpenAI type and code, and the headers that go
// with them.
func TestErrorMapping(t *testing.T) {
	wrap := func(e error) error { return fmt.Errorf("context: %w", e) }
	for _, tc := range []struct {
		err    error
		status int
		typ    string
		code   string
		retry  string // the Retry-After header
		header [2]string
	}{
		{wrap(sched.ErrOverloaded), 429, "rate_limit_error", "overloaded", "1", [2]string{}},
		{wrap(sched.ErrContextOverflow), 400, "invalid_request_error", "context_length_exceeded", "", [2]string{}},
		{wrap(sched.ErrInvalidRequest), 400, "invalid_request_error", "", "", [2]string{}},
		{wrap(engine.ErrInvalidArgument), 400, "invalid_request_error", "", "", [2]string{}},
		{wrap(engine.ErrUnknownTemplate), 400, "invalid_request_error", "chat_template_unavailable", "", [2]string{}},
		{wrap(service.ErrNoChatTemplate), 400, "invalid_request_error", "chat_template_unavailable", "", [2]string{}},
		{wrap(service.ErrEmbeddingsOff), 400, "invalid_request_error", "embeddings_disabled", "", [2]string{}},
		{wrap(service.ErrNotReady), 503, "service_unavailable_error", "model_not_ready", "5", [2]string{}},
		{wrap(sched.ErrClosed), 503, "service_unavailable_error", "shutting_down", "5", [2]string{}},
		{wrap(engine.ErrClosed), 503, "service_unavailable_error", "shutting_down", "5", [2]string{}},
		{errors.New("boom"), 500, "server_error", "", "", [2]string{}},
		{infer.Invalid("n", "x"), 400, "invalid_request_error", "", "", [2]string{}},
		{infer.ModelNotFound("m"), 404, "invalid_request_error", "model_not_found", "", [2]string{}},
		{errMissingKey, 401, "authentication_error", "invalid_api_key", "", [2]string{"WWW-Authenticate", `Bearer realm="hxp"`}},
		{&infer.Error{Kind: infer.RateLimited, Code: "rate_limit_exceeded", Message: "x", RetryAfter: 1500 * time.Millisecond,
			Quota: &infer.Quota{Requests: infer.Bucket{Limit: 10, Remaining: 0, Reset: 1500 * time.Millisecond}}},
			429, "rate_limit_error", "rate_limit_exceeded", "2", [2]string{"X-Ratelimit-Remaining-Requests", "0"}},
		{&infer.Error{Kind: infer.QuotaExceeded, Code: "insufficient_quota", Message: "x", RetryAfter: time.Hour}, 429, "insufficient_quota", "insufficient_quota", "3600", [2]string{}},
		{&infer.Error{Kind: infer.UpstreamFailed, Code: "upstream_unavailable", Message: "x"}, 502, "service_unavailable_error", "upstream_unavailable", "", [2]string{}},
		{&infer.Error{Kind: infer.DeadlineExceeded, Code: "upstream_timeout", Message: "x"}, 504, "service_unavailable_error", "upstream_timeout", "", [2]string{}},
		{infer.ErrClientGone, 499, "invalid_request_error", "client_closed_request", "", [2]string{}},
		{&statusError{status: 405, allow: "GET, POST", err: &infer.Error{Kind: infer.InvalidArgument, Code: "method_not_allowed", Message: "x"}},
			405, "invalid_request_error", "method_not_allowed", "", [2]string{"Allow", "GET, POST"}},
	} {
		var ctx fasthttp.RequestCtx
		writeError(&ctx, tc.err)
		r := response{status: ctx.Response.StatusCode(), body: ctx.Response.Body()}
		t.Run(tc.err.Error(), func(t *testing.T) {
			r.wantErr(t, tc.status, tc.typ, tc.code)
			if got := string(ctx.Response.Header.Peek("Retry-After")); got != tc.retry {
				t.Errorf("Retry-After %q, want %q", got, tc.retry)
			}
			if tc.header[0] != "" && string(ctx.Response.Header.Peek(tc.header[0])) != tc.header[1] {
				t.Errorf("%s %q, want %q", tc.header[0], ctx.Response.Header.Peek(tc.header[0]), tc.header[1])
			}
			if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
		})
	}
	if e := infer.AsError(wrap(sched.ErrContextOverflow), "prompt"); e.Param != "prompt" {
		t.Errorf("overflow blamed on %q, want prompt", e.Param)
	}
}

// badRequest is a request the server must refuse with a 400 naming param.
type badRequest struct {
	name  string
	path  string
	body  any
	param string // "" means null
	code  string // "" means any
}

func checkBadRequests(t *testing.T, url string, cases []badRequest) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, url+tc.path, tc.body)
			e := r.apiErr(t)
			if r.status != 400 || e.Type != "invalid_request_error" || e.Message == "" {
				t.Fatalf("%d %s", r.status, r.body)
			}
			got := ""
			if e.Param != nil {
				got = *e.Param
			}
			if got != tc.param {
				t.Errorf("param %q, want %q (%s)", got, tc.param, e.Message)
			}
			if tc.code != "" && (e.Code == nil || *e.Code != tc.code) {
				t.Errorf("code %v, want %s", e.Code, tc.code)
			}
		})
	}
}

const (
	chatPath = "/v1/chat/completions"
	cmplPath = "/v1/completions"
)

// Requests refused by decoding and validation, before any model: every one names its
// field. server.max_n is 2 here.
func TestBadRequests(t *testing.T) {
	fake := &infertest.Fake{}
	url := serveFake(t, fake, Options{MaxN: 2})
	msgs := []map[string]any{{"role": "user", "content": "hi"}}
	with := func(k string, v any) map[string]any { return map[string]any{"messages": msgs, k: v} }
	stops := make([]string, sched.MaxStopStrings+1)
	for i := range stops {
		stops[i] = fmt.Sprintf("s%d", i)
	}
	checkBadRequests(t, url, []badRequest{
		{"not json", chatPath, `{"model":`, "", ""},
		{"not an object", chatPath, `[1,2]`, "", ""},
		{"empty body", chatPath, ``, "", ""},
		{"wrong type", chatPath, with("n", "two"), "n", ""},
		{"temperature", chatPath, with("temperature", 3), "temperature", ""},
		{"top_p", chatPath, with("top_p", -0.5), "top_p", ""},
		{"top_k", chatPath, with("top_k", -1), "top_k", ""},
		{"presence", chatPath, with("presence_penalty", 9), "presence_penalty", ""},
		{"frequency", chatPath, with("frequency_penalty", -9), "frequency_penalty", ""},
		{"max_tokens", chatPath, with("max_tokens", 0), "max_tokens", ""},
		{"both max", chatPath, map[string]any{"messages": msgs, "max_tokens": 3, "max_completion_tokens": 4}, "max_completion_tokens", ""},
		{"no messages", chatPath, map[string]any{"messages": []any{}}, "messages", ""},
		{"bad role", chatPath, map[string]any{"messages": []map[string]any{{"role": "wizard", "content": "x"}}}, "messages[0].role", ""},
		{"function role", chatPath, map[string]any{"messages": []map[string]any{{"role": "function", "content": "x"}}}, "messages[0].role", ""},
		{"tool message without id", chatPath, map[string]any{"messages": []map[string]any{{"role": "tool", "content": "x"}}}, "messages[0].tool_call_id", ""},
		{"image part", chatPath, map[string]any{"messages": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "image_url"}}}}}, "messages[0].content[0].type", ""},
		{"nul byte", chatPath, map[string]any{"messages": []map[string]any{{"role": "user", "content": "a\x00b"}}}, "messages[0].content", ""},
		{"n too large", chatPath, with("n", 99), "n", ""},
		{"n above server.max_n", chatPath, with("n", 3), "n", ""},
		{"top_logprobs alone", chatPath, with("top_logprobs", 2), "top_logprobs", ""},
		{"top_logprobs range", chatPath, map[string]any{"messages": msgs, "logprobs": true, "top_logprobs": 21}, "top_logprobs", ""},
		{"json_schema without schema", chatPath, with("response_format", map[string]any{"type": "json_schema"}), "response_format.json_schema", ""},
		{"response_format type", chatPath, with("response_format", map[string]any{"type": "yaml"}), "response_format.type", ""},
		{"tool without name", chatPath, with("tools", []any{map[string]any{"type": "function"}}), "tools[0].function.name", ""},
		{"functions", chatPath, with("functions", []any{map[string]any{"name": "f"}}), "functions", ""},
		{"chat logit_bias", chatPath, with("logit_bias", map[string]any{"50256": -100}), "logit_bias", ""},
		{"audio", chatPath, with("audio", map[string]any{"voice": "alloy", "format": "wav"}), "audio", ""},
		{"stop type", chatPath, with("stop", 5), "stop", ""},
		{"stop empty", chatPath, with("stop", []string{"a", ""}), "stop[1]", ""},
		{"17 stop strings", chatPath, with("stop", stops), "stop", ""},
		{"stream_options without stream", chatPath, with("stream_options", map[string]any{"include_usage": true}), "stream_options", ""},
		{"model type", chatPath, map[string]any{"model": 5, "messages": msgs}, "model", ""},
		{"echo", cmplPath, map[string]any{"prompt": "x", "echo": true}, "echo", ""},
		{"suffix", cmplPath, map[string]any{"prompt": "x", "suffix": "y"}, "suffix", ""},
		{"best_of", cmplPath, map[string]any{"prompt": "x", "best_of": 2}, "best_of", ""},
		{"completion logit_bias", cmplPath, map[string]any{"prompt": "x", "logit_bias": map[string]any{"1": 5}}, "logit_bias", ""},
		{"no prompt", cmplPath, map[string]any{"max_tokens": 3}, "prompt", ""},
		{"negative token", cmplPath, map[string]any{"prompt": []int{1, -2}}, "prompt[1]", ""},
		{"legacy logprobs", cmplPath, map[string]any{"prompt": "x", "logprobs": 50}, "logprobs", ""},
		{"too many choices", cmplPath, map[string]any{"prompt": []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, "n": 2}, "n", ""},
		{"tokenize nothing", "/tokenize", map[string]any{}, "prompt", ""},
		{"detokenize nothing", "/detokenize", map[string]any{}, "tokens", ""},
	})
	for op, n := range map[string]int{"chat": fake.Calls("chat"), "complete": fake.Calls("complete")} {
		if n != 0 {
			t.Errorf("%d refused requests reached the service's %s", n, op)
		}
	}
	// The limits are not over-applied: 16 stop strings, n = server.max_n and best_of 1
	// are served.
	for _, ok := range []struct {
		path string
		body map[string]any
	}{
		{chatPath, map[string]any{"messages": msgs, "stop": stops[:sched.MaxStopStrings], "n": 2}},
		{cmplPath, map[string]any{"prompt": "x", "best_of": 1, "suffix": ""}},
	} {
		if r := post(t, url+ok.path, ok.body); r.status != 200 {
			t.Errorf("%s %v: %d %s", ok.path, ok.body, r.status, r.body)
		}
	}
}

// Requests the model refuses: too long for its context, or token ids outside its
// vocabulary.
func TestBadRequestsOfTheModel(t *testing.T) {
	_, url := sharedModel(t)
	msgs := []map[string]any{{"role": "user", "content": "hi"}}
	checkBadRequests(t, url, []badRequest{
		{"context overflow", chatPath, map[string]any{"messages": msgs, "max_tokens": 100000}, "messages", "context_length_exceeded"},
		{"oversized content", chatPath, map[string]any{"messages": []map[string]any{{"role": "user", "content": strings.Repeat("é", 1500)}}, "max_tokens": 1},
			"messages", "context_length_exceeded"},
		{"token out of vocab", cmplPath, map[string]any{"prompt": []int{1, 99999999}}, "prompt", ""},
		{"prompt overflow", cmplPath, map[string]any{"prompt": strings.Repeat("sea ", 600), "max_tokens": 1}, "prompt", "context_length_exceeded"},
	})
}

func TestNotFoundAndMethods(t *testing.T) {
	url := serveFake(t, &infertest.Fake{}, Options{})
	r := post(t, url+chatPath, chatBody("other-model", 2, nil))
	if e := r.wantErr(t, 404, "invalid_request_error", "model_not_found"); e.Param == nil || *e.Param != "model" {
		t.Errorf("unknown model: %s", r.body)
	}
	r = do(t, "GET", url+"/v1/models/other-model", nil)
	r.wantErr(t, 404, "invalid_request_error", "model_not_found")
	r = do(t, "GET", url+"/v1/nothing", nil)
	r.wantErr(t, 404, "invalid_request_error", "unknown_url")
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/chat/completions", "POST"},
		{"PUT", "/v1/completions", "POST"},
		{"POST", "/v1/models", "GET"},
		{"DELETE", "/v1/models/fake", "GET"},
		{"POST", "/health", "GET"},
	} {
		r := do(t, tc.method, url+tc.path, nil)
		r.wantErr(t, 405, "invalid_request_error", "method_not_allowed")
		if r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: Allow=%q, want %s", tc.method, tc.path, r.header.Get("Allow"), tc.allow)
		}
	}
}

func TestAuth(t *testing.T) {
	ten := keyTenancy(t, tenancy.Config{}, "secret-key-1", "secret-key-2")
	url := serveFake(t, &infertest.Fake{}, Options{Auth: ten})
	r := post(t, url+chatPath, chatBody("fake", 2, nil))
	r.wantErr(t, 401, "authentication_error", "invalid_api_key")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no Bearer challenge: %v", r.header)
	}
	r = post(t, url+chatPath, chatBody("fake", 2, nil), "Authorization", "Bearer secret-key-3")
	r.wantErr(t, 401, "authentication_error", "invalid_api_key")
	if r := post(t, url+chatPath, chatBody("fake", 2, nil), "Authorization", "Bearer secret-key-2"); r.status != 200 {
		t.Errorf("right key: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", url+"/health", nil); r.status != 200 {
		t.Errorf("/health needs no key: %d", r.status)
	}
	if r := do(t, "GET", url+"/v1/models", nil); r.status != 401 {
		t.Errorf("/v1/models without key: %d", r.status)
	}
}

func TestBodyTooLarge(t *testing.T) {
	fake := &infertest.Fake{}
	url := serve(t, "small", fakeListener(fake, Options{}), HTTPConfig{MaxBodyBytes: 2048})
	big := fmt.Sprintf(`{"prompt":%q}`, strings.Repeat("x", 4096))
	post(t, url+cmplPath, big).wantErr(t, 413, "invalid_request_error", "body_too_large")
	if fake.Calls("complete") != 0 {
		t.Error("an oversized body reached the service")
	}
}

// A full queue is 429 with Retry-After.
func TestOverloaded(t *testing.T) {
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	defer release()
	cfg := modelConfig(t, "busy")
	cfg.Parallel, cfg.QueueSize = 1, 1
	svc := newService(t, cfg, service.Options{StepHook: func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}})
	url := serveModel(t, svc, Options{})
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	send := func(i int) {
		defer wg.Done()
		statuses[i] = post(t, url+chatPath, chatBody("busy", 2, nil)).status
	}
	wg.Add(1)
	go send(0)
	<-entered // the first request holds the only slot, stalled in its first step
	wg.Add(1)
	go send(1)
	waitFor(t, "a queued request", func() bool { return svc.Stats().Queued == 1 })
	r := post(t, url+chatPath, chatBody("busy", 2, nil))
	r.wantErr(t, 429, "rate_limit_error", "overloaded")
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("full queue: Retry-After=%q", r.header.Get("Retry-After"))
	}
	release()
	wg.Wait()
	if statuses[0] != 200 || statuses[1] != 200 {
		t.Errorf("admitted requests ended with %v", statuses)
	}
}

// A model that is loading, or shutting down, answers 503 with Retry-After.
func TestNotReadyAndShuttingDown(t *testing.T) {
	loading := service.New(modelConfig(t, "loading"), testLog(), service.Options{})
	url := serveModel(t, loading, Options{})
	r := post(t, url+chatPath, chatBody("loading", 2, nil))
	r.wantErr(t, 503, "service_unavailable_error", "model_not_ready")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("loading: no Retry-After")
	}
	var list openai.ModelList
	do(t, "GET", url+"/v1/models", nil).json(t, &list)
	if len(list.Data) != 1 || list.Data[0].Status != "new" {
		t.Errorf("cards of an unloaded model: %+v", list.Data)
	}

	svc := newService(t, modelConfig(t, "draining"), service.Options{})
	url = serveModel(t, svc, Options{})
	if err := svc.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string]map[string]any{
		chatPath:         {"messages": []map[string]string{{"role": "user", "content": "x"}}},
		cmplPath:         {"prompt": "x"},
		"/v1/embeddings": {"input": "x"},
		"/tokenize":      {"prompt": "x"},
		"/detokenize":    {"tokens": []int{1}},
	} {
		r := post(t, url+path, body)
		r.wantErr(t, 503, "service_unavailable_error", "shutting_down")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s while draining: no Retry-After", path)
		}
	}
}

// Garbage never produces a 500, down to the model.
func TestGarbageNever500(t *testing.T) {
	_, url := sharedModel(t)
	bodies := []string{`{}`, `null`, `{"messages":null}`, `{"messages":[{}]}`, `{"messages":[{"role":"user","content":{}}]}`,
		`{"prompt":[[]]}`, `{"prompt":[[1,"a"]]}`, `{"prompt":[null]}`, `{"input":[[-5]]}`, `{"tokens":"abc"}`, `{"stop":[1]}`,
		`{"messages":[{"role":"user","content":"x"}],"seed":-1,"max_tokens":1}`, `{"prompt":"x","n":0}`, `{"model":"tiny","prompt":"\ud800"}`,
		"\xff\xfe", `{"prompt":"` + strings.Repeat("\\u0000", 3) + `"}`, `{"prompt":[2147483647]}`, `{"tokens":[2147483647]}`}
	for _, path := range []string{chatPath, cmplPath, "/v1/embeddings", "/tokenize", "/detokenize"} {
		for _, b := range bodies {
			if r := post(t, url+path, b); r.status >= 500 {
				t.Errorf("%s %s: %d %s", path, b, r.status, r.body)
			}
		}
	}
}
