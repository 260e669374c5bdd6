package route

import (
	"context"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
)

// A model served in this process leaves the pool while the pool serves: its
// generation in flight goes on, new requests get model_not_found, /v1/models stops
// listing it, and it can come back. A declared model stays routable without members.
func TestRemoveLocalWhileServing(t *testing.T) {
	p := newPool(t, Options{})
	m := &infertest.Fake{Model: "m", Delay: time.Hour}
	addFake(t, p, "local", m, true)
	addFake(t, p, "local", &infertest.Fake{Model: "other"}, true)
	g, err := p.Chat(context.Background(), chatReq("m", 1))
	if err != nil {
		t.Fatal(err)
	}
	if !p.RemoveLocal("m") || p.RemoveLocal("m") {
		t.Fatal("RemoveLocal: want true once, then false")
	}
	if e := kindOf(t, tokenize(p, "m")); e.Kind != infer.NotFound || e.Code != "model_not_found" {
		t.Errorf("a request after the removal: %+v", e)
	}
	for _, md := range p.Models(context.Background()) {
		if md.ID == "m" {
			t.Error("Models still lists the removed model")
		}
	}
	if len(p.Stats()) != 1 {
		t.Errorf("stats after the removal: %+v", p.Stats())
	}
	ended := make(chan struct{})
	g.OnEnd(func(infer.Summary) { close(ended) })
	g.Close()
	<-ended // the generation in flight ends normally

	again := &infertest.Fake{Model: "m"}
	addFake(t, p, "local", again, true)
	if err := tokenize(p, "m"); err != nil || again.Calls("tokenize") != 1 {
		t.Errorf("the model added back: %v, %d calls", err, again.Calls("tokenize"))
	}

	p.Declare("found-by-dns")
	addFake(t, p, "local", &infertest.Fake{Model: "found-by-dns"}, true)
	p.RemoveLocal("found-by-dns")
	if e := kindOf(t, tokenize(p, "found-by-dns")); e.Kind != infer.Unavailable {
		t.Errorf("a declared model without members: %+v, want unavailable", e)
	}
}

// SetFallbacks replaces the fallbacks while serving; ones naming an unknown model are
// refused and the old ones stay.
func TestSetFallbacks(t *testing.T) {
	p := newPool(t, Options{Retries: -1})
	down := &infertest.Fake{Model: "m", Fail: func(string) error { return &infer.Error{Kind: infer.Unavailable, Message: "down"} }}
	up := &infertest.Fake{Model: "spare"}
	addFake(t, p, "local", down, true)
	addFake(t, p, "local", up, true)
	if e := kindOf(t, tokenize(p, "m")); e.Kind != infer.Unavailable {
		t.Fatalf("without fallbacks: %+v", e)
	}
	if err := p.SetFallbacks(map[string][]string{"m": {"nope"}}); err == nil {
		t.Fatal("fallbacks to an unknown model were accepted")
	}
	if err := p.SetFallbacks(map[string][]string{"m": {"spare"}}); err != nil {
		t.Fatal(err)
	}
	if err := tokenize(p, "m"); err != nil || up.Calls("tokenize") != 1 {
		t.Errorf("with the new fallback: %v, spare called %d times", err, up.Calls("tokenize"))
	}
}

// ReplaceLocal swaps the model served in this process in one step: the generation in
// flight on the old member goes on, new requests go to the new one, and the model
// keeps one member (no 404 in between). Without a local member it adds one.
func TestReplaceLocal(t *testing.T) {
	p := newPool(t, Options{})
	old := &infertest.Fake{Model: "m", Delay: time.Hour}
	addFake(t, p, "local", old, true)
	g, err := p.Chat(context.Background(), chatReq("m", 1))
	if err != nil {
		t.Fatal(err)
	}
	next := &infertest.Fake{Model: "m"}
	if err := p.replaceLocal(&member{svc: next, model: "m", name: "local", local: true, check: func(context.Context) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := tokenize(p, "m"); err != nil || next.Calls("tokenize") != 1 || old.Calls("tokenize") != 0 {
		t.Errorf("a request after the swap: %v; new %d calls, old %d", err, next.Calls("tokenize"), old.Calls("tokenize"))
	}
	if len(p.Stats()) != 1 {
		t.Errorf("members after the swap: %+v", p.Stats())
	}
	ended := make(chan struct{})
	g.OnEnd(func(infer.Summary) { close(ended) })
	g.Close()
	<-ended

	fresh := &infertest.Fake{Model: "fresh"}
	if err := p.replaceLocal(&member{svc: fresh, model: "fresh", name: "local", local: true, check: func(context.Context) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := tokenize(p, "fresh"); err != nil || fresh.Calls("tokenize") != 1 {
		t.Errorf("a model without a local member: %v", err)
	}
}
