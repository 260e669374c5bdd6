package discovery

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/internal/testenv"
)

// zone is an authoritative DNS server for tests, on UDP and TCP on one local port, whose
// records and failures the test changes while a Watcher asks it.
type zone struct {
	mu          sync.Mutex
	rrs         []dns.RR
	rcode       int  // answer every query with this rcode when not 0
	srvExtra    bool // put the SRV targets' addresses in the additional section
	truncateUDP bool // answer UDP queries with an empty, truncated message
	tcpQueries  int
	addr        string
}

// startZone serves records (in zone-file syntax) on 127.0.0.1.
func startZone(t *testing.T, records ...string) *zone {
	t.Helper()
	z := &zone{}
	z.set(t, records...)
	// DNS serves UDP and TCP on one port: the UDP port is free, the same TCP port may
	// be another test's, so try again on another until both are ours.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatalf("no port free for both UDP and TCP: %v", err)
			}
		}
	}
	z.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return z
}

// set replaces the zone's records.
func (z *zone) set(t *testing.T, records ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		rrs = append(rrs, rr)
	}
	z.mu.Lock()
	z.rrs = rrs
	z.mu.Unlock()
}

func (z *zone) update(f func(z *zone)) {
	z.mu.Lock()
	defer z.mu.Unlock()
	f(z)
}

// ServeDNS answers from the records: NXDOMAIN for a name without any.
func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	tcp := w.RemoteAddr().Network() == "tcp"
	if tcp {
		z.tcpQueries++
	}
	switch {
	case z.rcode != 0:
		m.Rcode = z.rcode
	case z.truncateUDP && !tcp:
		m.Truncated = true
	default:
		exists := false
		for _, rr := range z.rrs {
			if strings.EqualFold(rr.Header().Name, q.Name) {
				exists = true
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		for _, a := range m.Answer {
			if srv, ok := a.(*dns.SRV); ok && z.srvExtra {
				for _, rr := range z.rrs {
					if strings.EqualFold(rr.Header().Name, srv.Target) {
						m.Extra = append(m.Extra, rr)
					}
				}
			}
		}
	}
	w.WriteMsg(m)
}

func watcher(t *testing.T, z *zone, name string, opts Options) (*Watcher, *testenv.Buffer) {
	t.Helper()
	var logs testenv.Buffer
	opts.Server = z.addr
	opts.Logger = zerolog.New(&logs)
	w, err := New(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w, &logs
}

func eps(addrs ...string) []Endpoint {
	var out []Endpoint
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			panic(err)
		}
		p, _ := net.LookupPort("tcp", port)
		out = append(out, Endpoint{IP: host, Port: p})
	}
	return out
}

func refresh(t *testing.T, w *Watcher) Change {
	t.Helper()
	ch, err := w.Refresh(context.Background())
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	return ch
}

func wantChange(t *testing.T, got Change, added, removed []Endpoint) {
	t.Helper()
	if !slices.Equal(got.Added, added) || !slices.Equal(got.Removed, removed) {
		t.Fatalf("change: added %v removed %v; want added %v removed %v", got.Added, got.Removed, added, removed)
	}
}

func TestAddressRecordsFollowPods(t *testing.T) {
	z := startZone(t,
		"hxp-phi3.llm.svc. 5 IN A 10.0.0.2",
		"hxp-phi3.llm.svc. 5 IN A 10.0.0.1",
		"hxp-phi3.llm.svc. 5 IN AAAA fd00::1",
	)
	w, logs := watcher(t, z, "hxp-phi3.llm.svc", Options{Port: 8000})
	wantChange(t, refresh(t, w), eps("10.0.0.1:8000", "10.0.0.2:8000", "[fd00::1]:8000"), nil)

	// A pod goes, another comes.
	z.set(t, "hxp-phi3.llm.svc. 5 IN A 10.0.0.2", "hxp-phi3.llm.svc. 5 IN A 10.0.0.3", "hxp-phi3.llm.svc. 5 IN AAAA fd00::1")
	wantChange(t, refresh(t, w), eps("10.0.0.3:8000"), eps("10.0.0.1:8000"))
	wantChange(t, refresh(t, w), nil, nil)
	if got := w.Endpoints(); !slices.Equal(got, eps("10.0.0.2:8000", "10.0.0.3:8000", "[fd00::1]:8000")) {
		t.Errorf("Endpoints = %v", got)
	}
	if l := logs.String(); !strings.Contains(l, `"added":["10.0.0.3:8000"],"removed":["10.0.0.1:8000"]`) ||
		strings.Count(l, "endpoints changed") != 2 {
		t.Errorf("change log:\n%s", l)
	}

	// IPv4 only: the missing AAAA records are no error.
	z.set(t, "hxp-phi3.llm.svc. 5 IN A 10.0.0.2")
	wantChange(t, refresh(t, w), nil, eps("10.0.0.3:8000", "[fd00::1]:8000"))

	// The Service is deleted (NXDOMAIN): every node goes.
	z.set(t)
	wantChange(t, refresh(t, w), nil, eps("10.0.0.2:8000"))
	if len(w.Endpoints()) != 0 {
		t.Errorf("endpoints left: %v", w.Endpoints())
	}
}

func TestSRVRecords(t *testing.T) {
	for _, extra := range []bool{true, false} {
		name := map[bool]string{true: "targets in the additional section", false: "targets queried"}[extra]
		t.Run(name, func(t *testing.T) {
			z := startZone(t,
				"_http._tcp.hxp.llm.svc. 5 IN SRV 0 50 9000 pod-a.hxp.llm.svc.",
				"_http._tcp.hxp.llm.svc. 5 IN SRV 0 50 9001 pod-b.hxp.llm.svc.",
				"_http._tcp.hxp.llm.svc. 5 IN SRV 0 0 0 .",
				"pod-a.hxp.llm.svc. 5 IN A 10.0.1.1",
				"pod-b.hxp.llm.svc. 5 IN A 10.0.1.2",
				"pod-b.hxp.llm.svc. 5 IN AAAA fd00::2",
			)
			z.update(func(z *zone) { z.srvExtra = extra })
			w, _ := watcher(t, z, "_http._tcp.hxp.llm.svc", Options{SRV: true})
			wantChange(t, refresh(t, w), eps("10.0.1.1:9000", "10.0.1.2:9001", "[fd00::2]:9001"), nil)
			z.set(t,
				"_http._tcp.hxp.llm.svc. 5 IN SRV 0 50 9001 pod-b.hxp.llm.svc.",
				"pod-b.hxp.llm.svc. 5 IN A 10.0.1.2",
			)
			wantChange(t, refresh(t, w), nil, eps("10.0.1.1:9000", "[fd00::2]:9001"))
		})
	}
}

func TestFailedLookupKeepsEndpoints(t *testing.T) {
	z := startZone(t, "hxp.llm.svc. 5 IN A 10.0.0.1")
	w, logs := watcher(t, z, "hxp.llm.svc", Options{Port: 8000, Timeout: 200 * time.Millisecond})
	refresh(t, w)
	for _, rcode := range []int{dns.RcodeServerFailure, dns.RcodeRefused} {
		z.update(func(z *zone) { z.rcode = rcode })
		ch, err := w.Refresh(context.Background())
		if err == nil || !strings.Contains(err.Error(), dns.RcodeToString[rcode]) || !ch.Empty() {
			t.Fatalf("%s: change %+v, error %v", dns.RcodeToString[rcode], ch, err)
		}
		if got := w.Endpoints(); !slices.Equal(got, eps("10.0.0.1:8000")) {
			t.Fatalf("%s dropped the endpoints: %v", dns.RcodeToString[rcode], got)
		}
	}

	// A server that never answers: the query times out, the endpoints stay.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	w.servers = []string{silent.LocalAddr().String()}
	if _, err := w.Refresh(context.Background()); err == nil || len(w.Endpoints()) != 1 {
		t.Fatalf("silent server: error %v, endpoints %v", err, w.Endpoints())
	}
	if strings.Contains(logs.String(), "removed\":[\"10.0.0.1") {
		t.Errorf("a failed lookup removed an endpoint:\n%s", logs)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	z := startZone(t, "big.llm.svc. 5 IN A 10.0.0.1", "big.llm.svc. 5 IN A 10.0.0.2")
	z.update(func(z *zone) { z.truncateUDP = true })
	w, _ := watcher(t, z, "big.llm.svc", Options{Port: 80})
	wantChange(t, refresh(t, w), eps("10.0.0.1:80", "10.0.0.2:80"), nil)
	z.update(func(z *zone) {
		if z.tcpQueries == 0 {
			t.Error("no query came over TCP")
		}
	})
}

// TestRunReportsChanges drives Run with a short interval while the answers change, and
// checks that a DNS outage is logged once and changes nothing.
func TestRunReportsChanges(t *testing.T) {
	z := startZone(t, "hxp.llm.svc. 5 IN A 10.0.0.1")
	w, logs := watcher(t, z, "hxp.llm.svc", Options{Port: 8000, Interval: 5 * time.Millisecond, Timeout: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Change, 16)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(c Change) { changes <- c }) }()
	next := func() Change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
			t.Fatal("no change reported")
			return Change{}
		}
	}
	wantChange(t, next(), eps("10.0.0.1:8000"), nil)

	// An outage of several intervals, then a new answer: the next change is that answer's,
	// so nothing was reported (or removed) during the outage.
	z.update(func(z *zone) { z.rcode = dns.RcodeServerFailure })
	for !strings.Contains(logs.String(), "lookup failed") {
		time.Sleep(time.Millisecond)
	}
	for strings.Count(logs.String(), `"level":"debug"`) < 2 { // two more failed lookups
		time.Sleep(time.Millisecond)
	}
	z.set(t, "hxp.llm.svc. 5 IN A 10.0.0.2")
	z.update(func(z *zone) { z.rcode = 0 })
	wantChange(t, next(), eps("10.0.0.2:8000"), eps("10.0.0.1:8000"))
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run returned %v", err)
	}
	if l := logs.String(); strings.Count(l, `"level":"warn"`) != 1 || !strings.Contains(l, "lookups succeed again") {
		t.Errorf("want one warning per outage and a recovery line:\n%s", l)
	}
}

func TestNewChecksOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
		want string
	}{
		{"", Options{Port: 1}, "empty name"},
		{"x.svc", Options{Port: 0}, "port 0 is out of range"},
		{"x.svc", Options{Port: 1, Server: "10.0.0.1"}, "not host:port"},
	} {
		if _, err := New(c.name, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %+v) = %v; want %q", c.name, c.opts, err, c.want)
		}
	}
	if _, err := New("_http._tcp.x.svc", Options{SRV: true, Server: "127.0.0.1:53"}); err != nil {
		t.Errorf("SRV without a port: %v", err)
	}
}
