package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// toAPIError is the one place errors become statuses; check every kind.
func TestToAPIErrorMapping(t *testing.T) {
	wrap := func(e error) error { return fmt.Errorf("context: %w", e) }
	for _, tc := range []struct {
		err    error
		status int
		code   string
		retry  bool
	}{
		{wrap(sched.ErrOverloaded), 429, "overloaded", true},
		{wrap(sched.ErrContextOverflow), 400, "context_length_exceeded", false},
		{wrap(sched.ErrInvalidRequest), 400, "", false},
		{wrap(engine.ErrInvalidArgument), 400, "", false},
		{wrap(engine.ErrUnknownTemplate), 400, "chat_template_unavailable", false},
		{wrap(service.ErrNoChatTemplate), 400, "chat_template_unavailable", false},
		{wrap(service.ErrEmbeddingsOff), 400, "embeddings_disabled", false},
		{wrap(service.ErrNotReady), 503, "model_not_ready", true},
		{wrap(sched.ErrClosed), 503, "shutting_down", true},
		{wrap(engine.ErrClosed), 503, "shutting_down", true},
		{errors.New("boom"), 500, "", false},
		{badRequest("n", "x"), 400, "", false},
	} {
		ae := toAPIError(tc.err, "messages")
		if ae.Status != tc.status || ae.Code != tc.code || (ae.RetryAfter > 0) != tc.retry {
			t.Errorf("%v -> %d %q retry=%v; want %d %q retry=%v", tc.err, ae.Status, ae.Code, ae.RetryAfter, tc.status, tc.code, tc.retry)
		}
	}
	if ae := toAPIError(wrap(sched.ErrContextOverflow), "prompt"); ae.Param != "prompt" {
		t.Errorf("overflow blamed on %q, want prompt", ae.Param)
	}
}

func TestBadRequests(t *testing.T) {
	_, url := sharedModel(t)
	chat := url + "/v1/chat/completions"
	msgs := []map[string]any{{"role": "user", "content": "hi"}}
	for _, tc := range []struct {
		name  string
		url   string
		body  any
		param string // "" means null
		code  string
	}{
		{"not json", chat, `{"model":`, "", ""},
		{"not an object", chat, `[1,2]`, "", ""},
		{"empty body", chat, ``, "", ""},
		{"wrong type", chat, map[string]any{"messages": msgs, "n": "two"}, "n", ""},
		{"temperature", chat, map[string]any{"messages": msgs, "temperature": 3}, "temperature", ""},
		{"top_p", chat, map[string]any{"messages": msgs, "top_p": -0.5}, "top_p", ""},
		{"presence", chat, map[string]any{"messages": msgs, "presence_penalty": 9}, "presence_penalty", ""},
		{"frequency", chat, map[string]any{"messages": msgs, "frequency_penalty": -9}, "frequency_penalty", ""},
		{"max_tokens", chat, map[string]any{"messages": msgs, "max_tokens": 0}, "max_tokens", ""},
		{"both max", chat, map[string]any{"messages": msgs, "max_tokens": 3, "max_completion_tokens": 4}, "max_completion_tokens", ""},
		{"no messages", chat, map[string]any{"messages": []any{}}, "messages", ""},
		{"bad role", chat, map[string]any{"messages": []map[string]any{{"role": "wizard", "content": "x"}}}, "messages[0].role", ""},
		{"tool role", chat, map[string]any{"messages": []map[string]any{{"role": "tool", "content": "x"}}}, "messages[0].role", ""},
		{"image part", chat, map[string]any{"messages": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "image_url"}}}}}, "messages[0].content[0].type", ""},
		{"nul byte", chat, map[string]any{"messages": []map[string]any{{"role": "user", "content": "a\x00b"}}}, "messages[0].content", ""},
		{"n too large", chat, map[string]any{"messages": msgs, "n": 99}, "n", ""},
		{"top_logprobs alone", chat, map[string]any{"messages": msgs, "top_logprobs": 2}, "top_logprobs", ""},
		{"top_logprobs range", chat, map[string]any{"messages": msgs, "logprobs": true, "top_logprobs": 21}, "top_logprobs", ""},
		{"json_schema", chat, map[string]any{"messages": msgs, "response_format": map[string]any{"type": "json_schema"}}, "response_format.type", ""},
		{"tools", chat, map[string]any{"messages": msgs, "tools": []any{map[string]any{"type": "function"}}}, "tools", ""},
		{"stop type", chat, map[string]any{"messages": msgs, "stop": 5}, "stop", ""},
		{"stop empty", chat, map[string]any{"messages": msgs, "stop": []string{"a", ""}}, "stop[1]", ""},
		{"stream_options without stream", chat, map[string]any{"messages": msgs, "stream_options": map[string]any{"include_usage": true}}, "stream_options", ""},
		{"context overflow", chat, map[string]any{"messages": msgs, "max_tokens": 100000}, "messages", "context_length_exceeded"},
		{"echo", url + "/v1/completions", map[string]any{"prompt": "x", "echo": true}, "echo", ""},
		{"no prompt", url + "/v1/completions", map[string]any{"max_tokens": 3}, "prompt", ""},
		{"token out of vocab", url + "/v1/completions", map[string]any{"prompt": []int{1, 99999999}}, "prompt", ""},
		{"prompt overflow", url + "/v1/completions", map[string]any{"prompt": strings.Repeat("sea ", 600), "max_tokens": 1}, "prompt", "context_length_exceeded"},
		{"legacy logprobs", url + "/v1/completions", map[string]any{"prompt": "x", "logprobs": 50}, "logprobs", ""},
		{"tokenize nothing", url + "/tokenize", map[string]any{}, "prompt", ""},
		{"detokenize nothing", url + "/detokenize", map[string]any{}, "tokens", ""},
		{"model type", chat, map[string]any{"model": 5, "messages": msgs}, "model", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, tc.url, tc.body)
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

func TestNotFoundAndMethods(t *testing.T) {
	_, url := sharedModel(t)
	r := post(t, url+"/v1/chat/completions", chatBody("other-model", 2, nil))
	if e := r.apiErr(t); r.status != 404 || *e.Code != "model_not_found" || *e.Param != "model" {
		t.Errorf("unknown model: %d %s", r.status, r.body)
	}
	r = do(t, "GET", url+"/v1/nothing", nil)
	if r.apiErr(t); r.status != 404 {
		t.Errorf("unknown path: %d", r.status)
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/chat/completions", "POST"},
		{"PUT", "/v1/completions", "POST"},
		{"POST", "/v1/models", "GET"},
		{"DELETE", "/v1/models/tiny", "GET"},
		{"POST", "/health", "GET"},
	} {
		r := do(t, tc.method, url+tc.path, nil)
		if r.apiErr(t); r.status != 405 || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow=%q, want 405 Allow=%s", tc.method, tc.path, r.status, r.header.Get("Allow"), tc.allow)
		}
	}
}

func TestAuth(t *testing.T) {
	svc, _ := sharedModel(t)
	url := serveModel(t, svc, Options{APIKeys: []string{"secret-key-1", "secret-key-2"}})
	r := post(t, url+"/v1/chat/completions", chatBody("tiny", 2, nil))
	if e := r.apiErr(t); r.status != 401 || *e.Code != "invalid_api_key" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no key: %d %s", r.status, r.body)
	}
	if r := post(t, url+"/v1/chat/completions", chatBody("tiny", 2, nil), "Authorization", "Bearer secret-key-3"); r.status != 401 {
		t.Errorf("wrong key: %d", r.status)
	}
	if r := post(t, url+"/v1/chat/completions", chatBody("tiny", 2, nil), "Authorization", "Bearer secret-key-2"); r.status != 200 {
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
	svc, _ := sharedModel(t)
	url := serve(t, "small", func() *Gateway { return NewModelListener(svc, Options{Log: testLog()}) }, HTTPConfig{MaxBodyBytes: 2048})
	big := fmt.Sprintf(`{"prompt":%q}`, strings.Repeat("x", 4096))
	r := post(t, url+"/v1/completions", big)
	if e := r.apiErr(t); r.status != 413 || *e.Code != "body_too_large" {
		t.Errorf("%d %s", r.status, r.body)
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
		statuses[i] = post(t, url+"/v1/chat/completions", chatBody("busy", 2, nil)).status
	}
	wg.Add(1)
	go send(0)
	<-entered // the first request holds the only slot, stalled in its first step
	wg.Add(1)
	go send(1)
	waitFor(t, "a queued request", func() bool { return svc.Stats().Queued == 1 })
	r := post(t, url+"/v1/chat/completions", chatBody("busy", 2, nil))
	if e := r.apiErr(t); r.status != 429 || e.Type != "rate_limit_error" || r.header.Get("Retry-After") != "1" {
		t.Errorf("full queue: %d Retry-After=%q %s", r.status, r.header.Get("Retry-After"), r.body)
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
	r := post(t, url+"/v1/chat/completions", chatBody("loading", 2, nil))
	if e := r.apiErr(t); r.status != 503 || *e.Code != "model_not_ready" || r.header.Get("Retry-After") == "" {
		t.Errorf("loading: %d %s", r.status, r.body)
	}
	var list ModelList
	do(t, "GET", url+"/v1/models", nil).json(t, &list)
	if list.Data[0].Status != "new" {
		t.Errorf("card of an unloaded model: %+v", list.Data[0])
	}

	svc := newService(t, modelConfig(t, "draining"), service.Options{})
	url = serveModel(t, svc, Options{})
	if err := svc.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string]map[string]any{
		"/v1/chat/completions": {"messages": []map[string]string{{"role": "user", "content": "x"}}},
		"/v1/completions":      {"prompt": "x"},
		"/v1/embeddings":       {"input": "x"},
		"/tokenize":            {"prompt": "x"},
		"/detokenize":          {"tokens": []int{1}},
	} {
		r := post(t, url+path, body)
		if e := r.apiErr(t); r.status != 503 || *e.Code != "shutting_down" {
			t.Errorf("%s while draining: %d %s", path, r.status, r.body)
		}
	}
}

// Garbage never produces a 500.
func TestGarbageNever500(t *testing.T) {
	_, url := sharedModel(t)
	bodies := []string{`{}`, `null`, `{"messages":null}`, `{"messages":[{}]}`, `{"messages":[{"role":"user","content":{}}]}`,
		`{"prompt":[[]]}`, `{"prompt":[[1,"a"]]}`, `{"prompt":[null]}`, `{"input":[[-5]]}`, `{"tokens":"abc"}`, `{"stop":[1]}`,
		`{"messages":[{"role":"user","content":"x"}],"seed":-1,"max_tokens":1}`, `{"prompt":"x","n":0}`, `{"model":"tiny","prompt":"\ud800"}`,
		"\xff\xfe", `{"prompt":"` + strings.Repeat("\\u0000", 3) + `"}`}
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize", "/detokenize"} {
		for _, b := range bodies {
			if r := post(t, url+path, b); r.status >= 500 {
				t.Errorf("%s %s: %d %s", path, b, r.status, r.body)
			}
		}
	}
}
