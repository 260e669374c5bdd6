package graphql

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/infer/infertest"
)

// TestAuthMatrix: with tenancy's static keys (tenancy.Admit in front, as the gateway
// has it), every operation without a key or with a wrong one is refused before
// execution (401 over POST, close 4403 over WebSocket), and a key scoped to other
// models gets NOT_FOUND for this one, as REST answers 404.
func TestAuthMatrix(t *testing.T) {
	fake := &infertest.Fake{Model: "m1"}
	ten := keyTenancy(t, staticKey("k-all", "sk-all-models-1"), staticKey("k-other", "sk-other-model-1", "m2"))
	base := serve(t, ten.Admit(fake), Options{Auth: ten})

	ops := map[string]struct {
		query string
		vars  map[string]any
	}{
		"models":         {`{ models { id } }`, nil},
		"model":          {`{ model(id: "m1") { id } }`, nil},
		"chatCompletion": {chatMutation, chatInput("m1", nil)},
		"completion":     {completionMutation, map[string]any{"in": map[string]any{"model": "m1", "prompt": "x"}}},
		"embeddings":     {embeddingsMutation, map[string]any{"in": map[string]any{"model": "m1", "input": "x"}}},
	}
	for name, op := range ops {
		for _, key := range []string{"", "sk-wrong-key-1"} {
			status, r := post(t, base, key, op.query, op.vars)
			if status != http.StatusUnauthorized || r.code() != "UNAUTHENTICATED" || len(r.Data) != 0 {
				t.Errorf("%s with key %q: %d %+v, want 401 UNAUTHENTICATED", name, key, status, r.Errors)
			}
		}
		status, r := post(t, base, "sk-all-models-1", op.query, op.vars)
		if status != http.StatusOK || len(r.Errors) != 0 {
			t.Errorf("%s with a valid key: %d %+v", name, status, r.Errors)
		}
		status, r = post(t, base, "sk-other-model-1", op.query, op.vars)
		switch name {
		case "models":
			if status != http.StatusOK || strings.Contains(string(r.Data), "m1") {
				t.Errorf("models with a key scoped to m2: %d %s", status, r.Data)
			}
		default:
			if status != http.StatusOK || r.code() != "NOT_FOUND" {
				t.Errorf("%s out of scope: %d %+v, want NOT_FOUND", name, status, r.Errors)
			}
		}
	}
	if n := fake.Calls("chat") + fake.Calls("complete") + fake.Calls("embed"); n != 3 {
		t.Errorf("the service ran %d generations and embeddings, want 3 (the valid key's only)", n)
	}

	// WebSocket: the key comes with connection_init.
	for _, key := range []string{"", "sk-wrong-key-1"} {
		ws := dial(t, base)
		if _, err := ws.init(key); closeCode(err) != closeForbidden {
			t.Errorf("connection_init with key %q: %v, want close %d", key, err, closeForbidden)
		}
	}
	ws := dial(t, base)
	ws.subscribe("early", chatSubscription, chatInput("m1", nil))
	if _, err := ws.read(); closeCode(err) != closeUnauthorized {
		t.Errorf("subscribe before connection_init: %v, want close %d", err, closeUnauthorized)
	}
	ws = dial(t, base)
	ws.mustInit("sk-other-model-1")
	ws.subscribe("s1", chatSubscription, chatInput("m1", nil))
	if m, err := ws.read(); err != nil || m.Type != msgError || !strings.Contains(string(m.Payload), "NOT_FOUND") {
		t.Errorf("subscription out of scope: %+v %v, want an error message with NOT_FOUND", m, err)
	}
	ws = dial(t, base)
	ws.mustInit("sk-all-models-1")
	ws.subscribe("s1", chatSubscription, chatInput("m1", nil))
	if s := readStream(t, ws, "s1"); !s.closeOK || s.text != "hello from fake" {
		t.Errorf("subscription with a valid key: %+v", s)
	}
}

// TestDepthAndComplexityLimits: operations beyond the limits are refused before any
// resolver runs; introspection is not counted against the depth.
func TestDepthAndComplexityLimits(t *testing.T) {
	fake := &infertest.Fake{Model: "m1"}
	base := serve(t, fake, Options{MaxDepth: 3, MaxComplexity: 12, Introspection: true})

	deep := `mutation($in: ChatCompletionInput!) { chatCompletion(input: $in) { choices { message { content } } } }`
	status, r := post(t, base, "", deep, chatInput("m1", nil))
	if status != http.StatusOK || r.code() != "DEPTH_LIMIT_EXCEEDED" || fake.Calls("chat") != 0 {
		t.Fatalf("depth 4 with max 3: %d %+v (chat calls %d)", status, r.Errors, fake.Calls("chat"))
	}
	viaFragment := `mutation($in: ChatCompletionInput!) { chatCompletion(input: $in) { ...C } }
		fragment C on ChatCompletion { choices { message { content } } }`
	if _, r := post(t, base, "", viaFragment, chatInput("m1", nil)); r.code() != "DEPTH_LIMIT_EXCEEDED" || fake.Calls("chat") != 0 {
		t.Fatalf("depth 4 through a fragment: %+v", r.Errors)
	}
	ws := dial(t, base)
	ws.mustInit("")
	ws.subscribe("s1", `subscription($in: ChatCompletionInput!) { chatCompletionStream(input: $in) { choices { delta { content } } } }`,
		chatInput("m1", nil))
	if m, err := ws.read(); err != nil || m.Type != msgError || !strings.Contains(string(m.Payload), "DEPTH_LIMIT_EXCEEDED") || fake.Calls("chat") != 0 {
		t.Fatalf("deep subscription: %+v %v", m, err)
	}
	if _, r := post(t, base, "", `mutation($in: ChatCompletionInput!) { chatCompletion(input: $in) { choices { finishReason } } }`,
		chatInput("m1", nil)); len(r.Errors) != 0 || fake.Calls("chat") != 1 {
		t.Fatalf("depth 3 should pass: %+v", r.Errors)
	}
	wide := `{ models { id object created ownedBy status contextLength chatTemplate } a: models { id object created ownedBy status } }`
	if _, r := post(t, base, "", wide, nil); r.code() != "COMPLEXITY_LIMIT_EXCEEDED" {
		t.Fatalf("complexity 14 with max 12: %+v", r.Errors)
	}
	if _, r := post(t, base, "", `{ __schema { types { name fields { name type { name ofType { name ofType { name } } } } } } }`, nil); len(r.Errors) != 0 {
		t.Fatalf("introspection is not limited by depth: %+v", r.Errors)
	}
}

// TestIntrospectionSwitch: introspection is answered only when on.
func TestIntrospectionSwitch(t *testing.T) {
	fake := &infertest.Fake{Model: "m1"}
	const q = `{ __schema { queryType { name } } }`
	_, r := post(t, serve(t, fake, Options{Introspection: true}), "", q, nil)
	if len(r.Errors) != 0 || !strings.Contains(string(r.Data), `"Query"`) {
		t.Fatalf("introspection on: %s %+v", r.Data, r.Errors)
	}
	_, r = post(t, serve(t, fake, Options{}), "", q, nil)
	if len(r.Errors) == 0 || strings.Contains(string(r.Data), `"Query"`) {
		t.Fatalf("introspection off answered: %s", r.Data)
	}
}

// TestClosedSubscriptionFreesSlot: a subscription whose socket closes, or which the
// client completes, closes its generation: the service's running count drops to 0
// while the reply had many words left.
func TestClosedSubscriptionFreesSlot(t *testing.T) {
	fake := &infertest.Fake{Model: "m1", Reply: strings.Repeat("word ", 500), Delay: 20 * time.Millisecond}
	base := serve(t, fake, Options{})
	for _, how := range []string{"socket closed", "client completed"} {
		ws := dial(t, base)
		ws.mustInit("")
		ws.subscribe("s1", chatSubscription, chatInput("m1", nil))
		for i := 0; i < 3; i++ { // the role chunk and two words
			if m, err := ws.read(); err != nil || m.Type != msgNext {
				t.Fatalf("%s: chunk %d: %+v %v", how, i, m, err)
			}
		}
		if fake.Running.Load() != 1 {
			t.Fatalf("%s: running %d, want 1", how, fake.Running.Load())
		}
		if how == "socket closed" {
			_ = ws.conn.Close()
		} else {
			ws.send(wsMessage{Type: msgComplete, ID: "s1"})
		}
		waitFor(t, how+": the generation to end", func() bool { return fake.Running.Load() == 0 })
	}
}

// TestProtocolErrors: the socket is closed with the protocol's codes for an unknown
// message, a second connection_init, and a duplicate operation id; a GET without the
// subprotocol is refused.
func TestProtocolErrors(t *testing.T) {
	fake := &infertest.Fake{Model: "m1", Reply: strings.Repeat("w ", 300), Delay: 20 * time.Millisecond}
	base := serve(t, fake, Options{})

	ws := dial(t, base)
	ws.mustInit("")
	if _, err := ws.init(""); closeCode(err) != closeTooManyInits {
		t.Errorf("second connection_init: %v", err)
	}
	ws = dial(t, base)
	ws.mustInit("")
	ws.send(wsMessage{Type: "bogus"})
	if _, err := ws.read(); closeCode(err) != closeBadRequest {
		t.Errorf("unknown message: %v", err)
	}
	ws = dial(t, base)
	ws.mustInit("")
	ws.subscribe("dup", chatSubscription, chatInput("m1", nil))
	ws.subscribe("dup", chatSubscription, chatInput("m1", nil))
	for {
		m, err := ws.read()
		if err != nil {
			if closeCode(err) != closeDuplicateID {
				t.Errorf("duplicate id: %v", err)
			}
			break
		}
		if m.Type != msgNext {
			t.Fatalf("duplicate id: %+v", m)
		}
	}
	waitFor(t, "the first operation's generation to end", func() bool { return fake.Running.Load() == 0 })

	resp, err := http.Get(base + Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET without upgrade: %d, want 400", resp.StatusCode)
	}
}
