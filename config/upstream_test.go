package config

import (
	"strings"
	"testing"
)

func TestDiscoveredUpstreams(t *testing.T) {
	y := `
upstreams:
  - {model: a, url: "http://10.0.0.2:8000"}
  - {model: b, dns: hxp-b.llm.svc.cluster.local, port: 8000}
  - {model: c, dns: _http._tcp.hxp-c.llm.svc.cluster.local., scheme: https}
models:
  - {name: local, path: x}
`
	c, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2})
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams
	if u[0].Discovered() || !u[1].Discovered() || u[1].SRV() || !u[2].SRV() {
		t.Errorf("kinds: %+v", u)
	}
	if got := u[1].NodeURL("10.1.2.3:8000"); got != "http://10.1.2.3:8000" {
		t.Errorf("NodeURL default scheme: %s", got)
	}
	if got := u[2].NodeURL("[fd00::1]:9000"); got != "https://[fd00::1]:9000" {
		t.Errorf("NodeURL https: %s", got)
	}
}

func TestDiscoveredUpstreamValidation(t *testing.T) {
	y := `
upstreams:
  - {model: a, url: "http://x:1", dns: x.example}
  - {model: b}
  - {model: c, dns: "bad_name.example", port: 80}
  - {model: d, dns: hxp-d.example}
  - {model: e, dns: hxp-e.example, port: 70000}
  - {model: f, dns: _http._tcp.hxp-f.example, port: 8000}
  - {model: g, dns: hxp-g.example, port: 80, scheme: ftp}
  - {model: h, url: "http://x:1", port: 80}
  - {model: i, dns: "_http._tcp"}
  - {model: j, dns: "a..b", port: 1}
  - {model: k, dns: "-a.example", port: 1}
models:
  - {name: local, path: x}
`
	_, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2})
	ps := problemsOf(t, err)
	for _, w := range []struct{ path, substr string }{
		{"upstreams[0]", "sets both url and dns"},
		{"upstreams[1]", "needs url"},
		{"upstreams[2].dns", `"bad_name.example" is not a DNS name`},
		{"upstreams[3].port", "0 is out of range"},
		{"upstreams[4].port", "70000 is out of range"},
		{"upstreams[5].port", "SRV records"},
		{"upstreams[6].scheme", `"ftp"`},
		{"upstreams[7]", "go with dns only"},
		{"upstreams[8].dns", "without the name to look up"},
		{"upstreams[9].dns", "empty label"},
		{"upstreams[10].dns", "not a DNS name"},
	} {
		if !hasProblem(ps, w.path, w.substr) {
			t.Errorf("missing problem %s: ...%s...", w.path, w.substr)
		}
	}
	if len(ps) != 11 {
		t.Errorf("%d problems, want 11:\n%v", len(ps), err)
	}
}

func TestCheckDNSName(t *testing.T) {
	for _, ok := range []string{"hxp", "hxp-phi3.llm.svc.cluster.local", "hxp.example.", "_grpc._tcp.hxp.example", "a1.b-2.c"} {
		if msg := checkDNSName(ok); msg != "" {
			t.Errorf("%q: %s", ok, msg)
		}
	}
	for _, bad := range []string{"", ".", "a..", "x.-b", "b-.x", "a b", "x._tcp._http.y", "_.x.y", strings.Repeat("a", 64) + ".x",
		strings.Repeat("abcdefghi.", 26)} {
		if msg := checkDNSName(bad); msg == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestGatewayWithUpstreamsOnly(t *testing.T) {
	// A fleet's gateway serves no model itself.
	c, err := Parse([]byte("upstreams:\n  - {model: b, dns: hxp-b.llm.svc, port: 8000}\n"), Options{SkipFiles: true, HostCores: 2})
	if err != nil || len(c.Models) != 0 || len(c.Upstreams) != 1 {
		t.Fatalf("gateway only: %v %+v", err, c)
	}
	_, err = Parse([]byte("listen: \":8000\"\n"), Options{SkipFiles: true, HostCores: 2})
	if !hasProblem(problemsOf(t, err), "models", "no models configured") {
		t.Errorf("neither models nor upstreams: %v", err)
	}
}
