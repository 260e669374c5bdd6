package app

import (
	"context"

	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/discovery"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/route"
	"github.com/hxp-ai/hxp/transport/rest"
)

// node serves fake on a loopback REST listener, as another hxp node would, and
// returns its endpoint.
func node(t *testing.T, fake *infertest.Fake) discovery.Endpoint {
	t.Helper()
	l := rest.NewListener("node", rest.New(fake, rest.Options{Log: zerolog.Nop()}).Handler(),
		rest.HTTPConfig{ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}, zerolog.Nop())
	if err := l.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l.Serve(nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	host, port, _ := net.SplitHostPort(l.Addr().String())
	p, _ := strconv.Atoi(port)
	return discovery.Endpoint{IP: host, Port: p}
}

// Nodes that a DNS upstream's name resolves to become the model's members as they
// appear and leave it as they disappear; a generation already running on a node that
// disappears finishes there.
func TestDiscoveredNodesJoinAndLeaveTheRouter(t *testing.T) {
	cfg := &config.Config{Upstreams: []config.Upstream{{Model: "m", DNS: "hxp-m.llm.svc.cluster.local", Port: 1}}}
	cfg.Routing.HealthInterval = config.Duration(time.Hour)
	pool := route.NewPool(route.Options{HealthInterval: -1})
	d, err := newDiscoverer(pool, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Upstreams[0]
	ctx := context.Background()
	req := func() (*infer.Generation, error) {
		return pool.Chat(ctx, &infer.ChatRequest{Model: "m", Messages: []chat.Message{{Role: chat.RoleUser, Content: "hi"}},
			GenParams: infer.GenParams{N: 1}})
	}
	if _, err := req(); infer.KindOf(err) != infer.Unavailable {
		t.Fatalf("a declared model without nodes: %v, want upstream_unavailable", err)
	}

	slow := &infertest.Fake{Model: "m", Reply: "one two three four five", Delay: 50 * time.Millisecond}
	a, b := node(t, slow), node(t, &infertest.Fake{Model: "m"})
	d.apply(u, discovery.Change{Added: []discovery.Endpoint{a}})
	running, err := req() // on a, the only member
	if err != nil {
		t.Fatal(err)
	}
	d.apply(u, discovery.Change{Added: []discovery.Endpoint{b}, Removed: []discovery.Endpoint{a}})
	if got := members(pool); len(got) != 1 || got[0] != u.NodeURL(b.String()) {
		t.Fatalf("members after a left and b came: %v", got)
	}
	res, err := running.Collect()
	if err != nil || res.Choices[0].Text != "one two three four five" {
		t.Fatalf("the generation on the node that left: %+v, %v", res, err)
	}
	for i := 0; i < 3; i++ { // every new request goes to b
		g, err := req()
		if err != nil {
			t.Fatal(err)
		}
		if r, err := g.Collect(); err != nil || r.Choices[0].Text != "hello from fake" {
			t.Fatalf("request %d: %+v, %v", i, r, err)
		}
	}
	if slow.Calls("chat") != 1 {
		t.Fatalf("the node that left got %d requests, want 1", slow.Calls("chat"))
	}
	d.apply(u, discovery.Change{Removed: []discovery.Endpoint{b}})
	if _, err := req(); infer.KindOf(err) != infer.Unavailable {
		t.Fatalf("after every node left: %v", err)
	}
}

func members(p *route.Pool) []string {
	var out []string
	for _, s := range p.Stats() {
		out = append(out, s.Upstream)
	}
	return out
}
