// Package discovery finds the nodes behind a DNS name, such as a Kubernetes headless
// Service, and follows them as they come and go.
//
// A Watcher resolves its name (A and AAAA records with a fixed port, or SRV records that
// carry their own ports) now and then every interval, and reports each difference from
// the previous answer as a Change: the endpoints added and removed. A name that does not
// exist or has no records (NXDOMAIN, or no data) is an answer: every endpoint is removed.
// A failed lookup (timeout, SERVFAIL, refused) is not: the endpoints stay as they were
// and the failure is logged, so a DNS outage never empties a pool of healthy nodes.
//
// Queries go to the servers and search domains of /etc/resolv.conf, or to one server
// given in Options (tests, or a cluster DNS reached directly).
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// Defaults of Options.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	// ResolvConf is the resolver configuration used when Options.Server is empty.
	ResolvConf = "/etc/resolv.conf"
)

// Options configures a Watcher; only Port (for A/AAAA names) is required.
type Options struct {
	// Port is the nodes' port for a name of A/AAAA records. Unused with SRV.
	Port int
	// SRV looks the name up as SRV records (_service._proto.NAME), whose targets are
	// resolved to addresses and whose ports are used.
	SRV bool
	// Interval is the time between lookups in Run; 0 means DefaultInterval.
	Interval time.Duration
	// Server is the DNS server (host:port) to ask; "" means those of ResolvConf, with its
	// search domains.
	Server string
	// Timeout bounds each query; 0 means DefaultTimeout.
	Timeout time.Duration
	// Logger receives a line for every change and every failed lookup; the zero value
	// discards them.
	Logger zerolog.Logger
}

// Endpoint is one node: an IP address and a port.
type Endpoint struct {
	IP   string
	Port int
}

// String is host:port, with brackets around an IPv6 address.
func (e Endpoint) String() string { return net.JoinHostPort(e.IP, strconv.Itoa(e.Port)) }

// Change is the difference between two answers for a name.
type Change struct {
	// Added and Removed are sorted by address.
	Added, Removed []Endpoint
}

// Empty reports whether nothing changed.
func (c Change) Empty() bool { return len(c.Added) == 0 && len(c.Removed) == 0 }

// Watcher follows the endpoints of one DNS name. Its methods are safe for concurrent use.
type Watcher struct {
	name     string
	opts     Options
	servers  []string
	names    []string // the name, expanded by the search domains, in query order
	udp, tcp *dns.Client
	log      zerolog.Logger

	mu      sync.Mutex
	current map[Endpoint]bool
}

// New returns a Watcher for name. It reads /etc/resolv.conf unless opts.Server is set,
// and queries nothing yet.
func New(name string, opts Options) (*Watcher, error) {
	if name == "" {
		return nil, errors.New("discovery: empty name")
	}
	if !opts.SRV && (opts.Port < 1 || opts.Port > 65535) {
		return nil, fmt.Errorf("discovery: %s: port %d is out of range (1..65535)", name, opts.Port)
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	w := &Watcher{
		name:    name,
		opts:    opts,
		udp:     &dns.Client{Net: "udp", Timeout: opts.Timeout},
		tcp:     &dns.Client{Net: "tcp", Timeout: opts.Timeout},
		log:     opts.Logger.With().Str("component", "discovery").Str("name", name).Logger(),
		current: map[Endpoint]bool{},
	}
	if opts.Server != "" {
		if _, _, err := net.SplitHostPort(opts.Server); err != nil {
			return nil, fmt.Errorf("discovery: server %q is not host:port: %w", opts.Server, err)
		}
		w.servers = []string{opts.Server}
		w.names = []string{dns.Fqdn(name)}
		return w, nil
	}
	conf, err := dns.ClientConfigFromFile(ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("discovery: read the resolver configuration: %w", err)
	}
	if len(conf.Servers) == 0 {
		return nil, fmt.Errorf("discovery: %s names no nameserver", ResolvConf)
	}
	for _, s := range conf.Servers {
		w.servers = append(w.servers, net.JoinHostPort(s, conf.Port))
	}
	w.names = conf.NameList(name)
	return w, nil
}

// Name is the name the Watcher resolves.
func (w *Watcher) Name() string { return w.name }

// Endpoints returns the endpoints of the last successful lookup, sorted.
func (w *Watcher) Endpoints() []Endpoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	return sortedKeys(w.current)
}

// Run looks the name up now and then every interval until ctx ends, calling fn with each
// non-empty Change (from this goroutine, so fn sees changes in order). Failed lookups are
// logged and keep the endpoints. It returns ctx's error.
func (w *Watcher) Run(ctx context.Context, fn func(Change)) error {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	failing := false
	for {
		ch, err := w.Refresh(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			ev := w.log.Warn()
			if failing {
				ev = w.log.Debug() // one warning per outage, not one per interval
			}
			ev.Err(err).Int("endpoints", len(w.Endpoints())).Msg("discovery: lookup failed; keeping the endpoints")
			failing = true
		default:
			if failing {
				w.log.Info().Msg("discovery: lookups succeed again")
			}
			failing = false
			if !ch.Empty() {
				fn(ch)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Refresh looks the name up once and returns how the endpoints changed. On error the
// endpoints are kept and the Change is empty.
func (w *Watcher) Refresh(ctx context.Context) (Change, error) {
	eps, err := w.Lookup(ctx)
	if err != nil {
		return Change{}, err
	}
	next := make(map[Endpoint]bool, len(eps))
	for _, e := range eps {
		next[e] = true
	}
	w.mu.Lock()
	var ch Change
	for e := range next {
		if !w.current[e] {
			ch.Added = append(ch.Added, e)
		}
	}
	for e := range w.current {
		if !next[e] {
			ch.Removed = append(ch.Removed, e)
		}
	}
	w.current = next
	w.mu.Unlock()
	sortEndpoints(ch.Added)
	sortEndpoints(ch.Removed)
	if !ch.Empty() {
		w.log.Info().Strs("added", strs(ch.Added)).Strs("removed", strs(ch.Removed)).Int("endpoints", len(next)).
			Msg("discovery: endpoints changed")
	}
	return ch, nil
}

// Lookup resolves the name once and returns its endpoints, sorted; none (and no error)
// when the name does not exist or has no records of the type asked.
func (w *Watcher) Lookup(ctx context.Context) ([]Endpoint, error) {
	var firstErr error
	for _, name := range w.names {
		var eps []Endpoint
		var err error
		if w.opts.SRV {
			eps, err = w.lookupSRV(ctx, name)
		} else {
			eps, err = w.lookupAddrs(ctx, name, w.opts.Port, nil)
		}
		if len(eps) > 0 {
			sortEndpoints(eps)
			return slices.Compact(eps), nil
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("discovery: look up %s: %w", w.name, firstErr)
	}
	return nil, nil
}

// lookupAddrs returns name's A and AAAA addresses as endpoints on port, taken from extra
// (the additional section of an SRV answer) when it has them, else queried.
func (w *Watcher) lookupAddrs(ctx context.Context, name string, port int, extra []dns.RR) ([]Endpoint, error) {
	if eps := addrRecords(extra, name, port); len(eps) > 0 {
		return eps, nil
	}
	var eps []Endpoint
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := w.query(ctx, name, qtype)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The answer may lead through CNAMEs: its addresses are name's whatever their owner.
		eps = append(eps, addrRecords(resp.Answer, "", port)...)
	}
	if len(eps) > 0 {
		return eps, nil // one family answering is enough
	}
	return nil, errors.Join(errs...)
}

// addrRecords returns the A and AAAA records among rrs as endpoints on port, only those
// owned by name unless name is "".
func addrRecords(rrs []dns.RR, name string, port int) []Endpoint {
	var eps []Endpoint
	for _, rr := range rrs {
		if name != "" && !strings.EqualFold(rr.Header().Name, name) {
			continue
		}
		switch a := rr.(type) {
		case *dns.A:
			eps = append(eps, Endpoint{IP: a.A.String(), Port: port})
		case *dns.AAAA:
			eps = append(eps, Endpoint{IP: a.AAAA.String(), Port: port})
		}
	}
	return eps
}

// lookupSRV resolves name's SRV records to endpoints.
func (w *Watcher) lookupSRV(ctx context.Context, name string) ([]Endpoint, error) {
	resp, err := w.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var eps []Endpoint
	var errs []error
	for _, rr := range resp.Answer {
		srv, ok := rr.(*dns.SRV)
		if !ok || srv.Target == "." { // "." means the service is not offered
			continue
		}
		addrs, err := w.lookupAddrs(ctx, srv.Target, int(srv.Port), resp.Extra)
		if err != nil {
			errs = append(errs, err)
		}
		eps = append(eps, addrs...)
	}
	if len(eps) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return eps, nil
}

// query asks the servers in turn for name's records of qtype, over TCP when a UDP answer
// is truncated. NXDOMAIN and no data are answers (with no records), other failures errors.
func (w *Watcher) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(dns.DefaultMsgSize, false)
	var errs []error
	for _, server := range w.servers {
		resp, _, err := w.udp.ExchangeContext(ctx, m, server)
		if err == nil && resp.Truncated {
			resp, _, err = w.tcp.ExchangeContext(ctx, m, server)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s %s at %s: %w", dns.TypeToString[qtype], name, server, err))
		case resp.Rcode == dns.RcodeSuccess, resp.Rcode == dns.RcodeNameError:
			return resp, nil
		default:
			errs = append(errs, fmt.Errorf("%s %s at %s: %s", dns.TypeToString[qtype], name, server, dns.RcodeToString[resp.Rcode]))
		}
	}
	return nil, errors.Join(errs...)
}

func sortEndpoints(eps []Endpoint) {
	slices.SortFunc(eps, func(a, b Endpoint) int {
		if c := strings.Compare(a.IP, b.IP); c != 0 {
			return c
		}
		return a.Port - b.Port
	})
}

func sortedKeys(set map[Endpoint]bool) []Endpoint {
	out := make([]Endpoint, 0, len(set))
	for e := range set {
		out = append(out, e)
	}
	sortEndpoints(out)
	return out
}

func strs(eps []Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out
}
