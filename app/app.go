// Package app is HXP's composition root: it builds a whole server from a config (the
// model services, the router over local and remote upstreams, tenancy, the response
// cache, the REST transport on the gateway and on each model's own port, metrics and
// health) and runs its lifecycle (start, load, graceful shutdown). It may import
// every package; nothing imports it but cmd/hxp and tests.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/breaker"
	"github.com/hxp-ai/hxp/responses"
	"github.com/hxp-ai/hxp/route"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
	graphqlt "github.com/hxp-ai/hxp/transport/graphql"
	grpct "github.com/hxp-ai/hxp/transport/grpc"
	"github.com/hxp-ai/hxp/transport/rest"
)

// Options configure an App beyond its config.
type Options struct {
	// Log receives every log line of the server.
	Log zerolog.Logger
	// Tenancy is the gateway's keys, limits, ledger and cache (see tenancy.Open). When
	// nil, the App opens one from the config's auth section only (static keys, no
	// PostgreSQL or Redis) and closes it at Shutdown.
	Tenancy *tenancy.Tenancy
	// Routes are extra REST endpoints on every listener.
	Routes []rest.Route
	// Validate is how model entries added while serving are validated (the host's
	// cores; zero: this host's).
	Validate config.Options
	// Devices lists the devices, and the host memory free for GPU models' CPU parts,
	// that models added while serving are planned on (nil: the devices found then).
	Devices func() ([]gpu.Device, uint64, error)
	// Reload re-reads the config file for Reload (SIGHUP, POST /admin/reload); nil
	// when the server was not started from a file.
	Reload func() (*config.Config, error)
	// SetLogLevel applies a reloaded log.level (nil: the level needs a restart).
	SetLogLevel func(level string)
	// Source is the config as read, before the memory planner adjusted it; reloads
	// compare the file with it (nil: the config given to New).
	Source *config.Config
}

// App is a whole HXP server: the model services of a config, the gateway and every
// model's own listener, with their lifecycle.
type App struct {
	cfg       *config.Config
	log       zerolog.Logger
	group     *service.Group
	ten       *tenancy.Tenancy
	ownTen    bool // the App opened ten and closes it
	pool      *route.Pool
	disc      *discoverer // members of the upstreams found by DNS
	gateway   *rest.Server
	servers   []*rest.Server // the gateway first, then the model listeners
	listeners []*rest.Listener
	grpc      *grpct.Server // nil when grpc.listen is ""
	grpcLn    net.Listener
	grpcDone  chan error
	obs       *observability
	tls       *tls.Config        // server.tls (nil: plain HTTP)
	responses responses.Store    // the Responses API's stored responses
	stopSweep context.CancelFunc // ends their retention sweep (nil before Start)
	retrieval *retrievalStack    // the files and vector stores API (nil when off)

	opts      Options
	base      rest.Options    // the model listeners' options
	hc        rest.HTTPConfig // every listener's limits
	validate  config.Options  // how added model entries are validated
	lifecycle sync.Mutex      // serializes adding, removing and reloading models
	mu        sync.Mutex      // guards live, servers, listeners and modelLns after Start
	live      *config.Config  // the running config (reloads and admin changes applied)
	modelLns  map[string]*modelListener
	switching map[string]*service.Service // changed models' new instances while they load (switchModel)
	stopIdle  chan struct{}               // ends the idle unloading loop

	loadDone chan error
	stopOnce sync.Once
}

// New builds the server for cfg (validated, defaults applied).
func New(cfg *config.Config, group *service.Group, opts Options) (*App, error) {
	a := &App{cfg: cfg, log: opts.Log, group: group, ten: opts.Tenancy, loadDone: make(chan error, 1), opts: opts,
		validate: opts.Validate, modelLns: map[string]*modelListener{}, switching: map[string]*service.Service{}, stopIdle: make(chan struct{}), live: opts.Source}
	if a.live == nil {
		a.live = cfg
	}
	group.SetBeforeWake(a.fitsNow)
	if a.validate.HostCores <= 0 {
		a.validate.HostCores = runtime.NumCPU()
	}
	var err error
	if a.ten == nil {
		if a.ten, err = tenancy.Open(context.Background(), tenancy.Config{Auth: cfg.Auth.KeyAuth, PlainKeys: cfg.Auth.APIKeys,
			Cache: cfg.Cache, Log: opts.Log}); err != nil {
			return nil, err
		}
		a.ownTen = true
	}
	if a.obs, err = newObservability(group, opts.Log); err != nil {
		return nil, err
	}
	if err := a.obs.addConnectors(a.ten); err != nil {
		return nil, err
	}
	if cfg.Server.TLS.Enabled() {
		if a.tls, err = rest.LoadTLS(cfg.Server.TLS.CertFile, cfg.Server.TLS.KeyFile); err != nil {
			return nil, err
		}
	}
	if a.pool, err = newPool(cfg, group, opts.Log); err != nil {
		return nil, err
	}
	if a.disc, err = newDiscoverer(a.pool, cfg, opts.Log); err != nil {
		return nil, err
	}
	if err := a.pool.Validate(); err != nil {
		return nil, err
	}
	if err := a.obs.register(a.ten.Collector(), route.NewCollector(a.pool)); err != nil {
		return nil, err
	}
	base := rest.Options{Log: opts.Log, MaxN: cfg.Server.MaxN, WriteTimeout: cfg.Server.WriteTimeout.D(), Metrics: a.obs.metrics,
		LogPrompts: cfg.Log.Prompts,
		CORS:       rest.CORS{Origins: cfg.Server.CORS.Origins, Headers: cfg.Server.CORS.Headers, MaxAge: cfg.Server.CORS.MaxAge.D()},
		Routes:     append(rest.ObservabilityRoutes(a.obs.reg, a.obs, opts.Log), opts.Routes...)}
	if a.ten.AuthEnabled() {
		base.Auth = a.ten
	}
	a.responses = a.responseStore(cfg)
	base.Responses = a.responses
	gw := base
	gw.Routes = slices.Concat(base.Routes, rest.AdminRoutes(a.ten.Admin(), opts.Log), rest.ModelAdminRoutes(a.ten.Admin(), a, opts.Log))
	// One decorated service behind every front end of the gateway: REST and gRPC share
	// admission, the cache and the router.
	front := a.ten.Admit(a.ten.Cache(a.pool))
	if a.retrieval, err = openRetrieval(cfg.Retrieval, front, a.ten.DB, a.obs, opts.Log); err != nil {
		return nil, err
	}
	if a.retrieval != nil {
		gw.Retrieval = a.retrieval.svc
	}
	if cfg.GraphQL.On() {
		gw.Routes, gw.PublicPaths = mountGraphQL(cfg, front, a.ten, gw, opts.Log)
	}
	a.gateway = rest.New(front, gw)
	if cfg.GRPC.Enabled() {
		gm := grpct.NewMetrics()
		if err := a.obs.register(gm); err != nil {
			return nil, err
		}
		g := cfg.GRPC
		opts := grpct.Options{Log: opts.Log, MaxN: cfg.Server.MaxN, MaxMessageBytes: g.MaxMessageBytes,
			MaxConcurrentStreams: uint32(g.MaxConcurrentStreams), KeepaliveTime: g.KeepaliveTime.D(),
			KeepaliveTimeout: g.KeepaliveTimeout.D(), TLS: a.tls, Metrics: gm}
		if a.ten.AuthEnabled() {
			opts.Auth = a.ten
		}
		a.grpc = grpct.New(front, opts)
	}
	a.servers = append(a.servers, a.gateway)
	hc := rest.HTTPConfig{ReadTimeout: cfg.Server.ReadTimeout.D(), WriteTimeout: cfg.Server.WriteTimeout.D(),
		IdleTimeout: cfg.Server.IdleTimeout.D(), MaxBodyBytes: cfg.Server.MaxBodyBytes}
	a.listeners = append(a.listeners, rest.NewListener("gateway", a.gateway.Handler(), gatewayHTTP(hc, cfg.Retrieval), opts.Log))
	a.base, a.hc = base, hc
	for _, s := range group.Services() {
		if s.Config().Port == 0 {
			continue
		}
		ml := a.newModelListener(s)
		a.modelLns[s.Name()] = ml
		a.servers = append(a.servers, ml.srv)
		a.listeners = append(a.listeners, ml.ln)
	}
	return a, nil
}

// mountGraphQL adds /graphql (POST and its WebSocket) to the gateway's routes over
// the decorated service; the path checks its own keys (a WebSocket presents its key in
// connection_init), so REST's key check leaves it public.
func mountGraphQL(cfg *config.Config, front infer.Service, ten *tenancy.Tenancy, gw rest.Options, log zerolog.Logger) ([]rest.Route, []string) {
	g := cfg.GraphQL
	o := graphqlt.Options{Log: log, MaxN: cfg.Server.MaxN, MaxDepth: g.MaxDepth, MaxComplexity: g.MaxComplexity,
		Introspection: g.IntrospectionOn(ten.AuthEnabled()), WriteTimeout: cfg.Server.WriteTimeout.D()}
	if ten.AuthEnabled() {
		o.Auth = ten
	}
	public := gw.PublicPaths
	if public == nil {
		public = rest.DefaultPublicPaths
	}
	return append(gw.Routes, graphqlt.New(front, o).Routes()...), append(slices.Clip(public), graphqlt.Path)
}

// newPool builds the gateway's router: every local model, the configured remote
// upstreams (one connection pool per node URL) and the fallbacks.
func newPool(cfg *config.Config, group *service.Group, log zerolog.Logger) (*route.Pool, error) {
	rt := cfg.Routing
	p := route.NewPool(route.Options{
		Breaker:        breaker.Config{FailureThreshold: rt.Breaker.Failures, OpenFor: rt.Breaker.OpenFor.D(), HalfOpenProbes: rt.Breaker.HalfOpenProbes},
		Retries:        rt.Retries,
		Fallbacks:      rt.Fallbacks,
		HealthInterval: rt.HealthInterval.D(),
		Log:            log,
	})
	for _, s := range group.Services() {
		if err := p.AddLocal(infer.NewLocal(s)); err != nil {
			return nil, err
		}
	}
	byURL := map[string][]string{}
	var urls []string
	for _, u := range cfg.Upstreams {
		if u.Discovered() {
			continue // newDiscoverer declares them; their nodes come and go
		}
		if byURL[u.URL] == nil {
			urls = append(urls, u.URL)
		}
		byURL[u.URL] = append(byURL[u.URL], u.Model)
	}
	for _, u := range urls {
		r, err := route.NewRemote(route.RemoteOptions{URL: u, Models: byURL[u], APIKey: cfg.Auth.NodeKey, Timeout: rt.Timeout.D(),
			ConnectTimeout: rt.ConnectTimeout.D()})
		if err != nil {
			return nil, err
		}
		for _, m := range byURL[u] {
			if err := p.AddRemote(m, r); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// Gateway returns the app's gateway server.
func (a *App) Gateway() *rest.Server { return a.gateway }

// Group returns the app's model services.
func (a *App) Group() *service.Group { return a.group }

// Pool returns the gateway's router.
func (a *App) Pool() *route.Pool { return a.pool }

// addrs returns the address of each listener, in order.
func (a *App) addrs() []string {
	out := []string{a.cfg.Listen}
	for _, s := range a.group.Services() {
		if p := s.Config().Port; p != 0 {
			out = append(out, a.modelAddr(p))
		}
	}
	return out
}

// Start binds every listener (failing at once when a port is taken), serves, and
// loads the models in the background: requests for a model still loading get 503.
// WaitLoaded reports the end of the loads.
func (a *App) Start(ctx context.Context) error {
	addrs := a.addrs()
	for i, l := range a.listeners {
		if err := l.Listen(addrs[i]); err != nil {
			for _, bound := range a.listeners[:i] {
				_ = bound.Close()
			}
			return err
		}
	}
	if a.grpc != nil {
		ln, err := net.Listen("tcp", a.cfg.GRPC.Addr())
		if err != nil {
			for _, l := range a.listeners {
				_ = l.Close()
			}
			return fmt.Errorf("grpc: listen on %s (grpc.listen): %w", a.cfg.GRPC.Addr(), err)
		}
		a.grpcLn = ln
	}
	if err := a.obs.start(ctx); err != nil {
		for _, l := range a.listeners {
			_ = l.Close()
		}
		if a.grpcLn != nil {
			_ = a.grpcLn.Close()
		}
		return err
	}
	if a.grpc != nil {
		a.grpcDone = make(chan error, 1)
		go func() { a.grpcDone <- a.grpc.Serve(a.grpcLn) }()
	}
	for _, l := range a.listeners {
		a.serve(l)
	}
	a.sweepResponses()
	initial := a.group.Services()
	go a.unloadIdle(a.stopIdle)
	go func() {
		err := a.group.LoadAll(ctx, 0)
		a.obs.loaded(initial)
		// The router's active checks start once the loads are over: a local model
		// checked while loading would stay out of rotation (and its
		// hxp_upstream_healthy 0) for a whole health interval after it is ready.
		a.pool.Start()
		a.disc.start()
		a.retrieval.start()
		a.loadDone <- err
	}()
	return nil
}

// Addrs are the bound addresses: the gateway's first, then each model listener's.
func (a *App) Addrs() []net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]net.Addr, len(a.listeners))
	for i, l := range a.listeners {
		out[i] = l.Addr()
	}
	return out
}

// GRPCAddr is the bound gRPC address, or nil when gRPC is off or not started.
func (a *App) GRPCAddr() net.Addr {
	if a.grpcLn == nil {
		return nil
	}
	return a.grpcLn.Addr()
}

// WaitLoaded waits until every model has loaded or failed, and returns the joined
// load errors.
func (a *App) WaitLoaded(ctx context.Context) error {
	select {
	case err := <-a.loadDone:
		a.loadDone <- err // later callers see it too
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops the server gracefully: the listeners stop accepting and /health
// reports shutting_down; requests in flight (streams included) may finish until grace
// has passed; then whatever still runs is cancelled and the models are freed.
func (a *App) Shutdown(grace time.Duration) error {
	var err error
	a.stopOnce.Do(func() { err = a.shutdown(grace) })
	return err
}

func (a *App) shutdown(grace time.Duration) error {
	start := time.Now()
	if a.stopSweep != nil {
		a.stopSweep()
	}
	a.log.Info().Str("grace", grace.String()).Msg("shutting down: no new connections, finishing requests in flight")
	close(a.stopIdle)
	// No model comes or goes from now on; a change in progress ends first.
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	a.obs.drain()
	a.mu.Lock()
	servers, listeners := slices.Clone(a.servers), slices.Clone(a.listeners)
	a.mu.Unlock()
	for _, s := range servers {
		s.SetDraining()
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()

	var wg sync.WaitGroup
	lnErrs := make([]error, len(listeners))
	for i, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lnErrs[i] = l.Shutdown(ctx)
		}()
	}
	var grpcErr error
	if a.grpcDone != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.grpc.Shutdown(ctx); err != nil {
				grpcErr = fmt.Errorf("grpc: graceful stop: %w", err)
			}
		}()
	}
	a.retrieval.stop() // unfinished ingestions resume at the next start
	a.mu.Lock()
	for _, s := range a.switching { // changed models' new instances still loading
		s.Close()
	}
	clear(a.switching)
	a.mu.Unlock()
	drainErr := a.group.Drain(ctx)
	if drainErr != nil {
		a.log.Warn().Err(drainErr).Msg("grace period over: cancelling requests still running")
	}
	// Frees the models; anything still running ends with a 503-class error event.
	a.group.Close()
	wg.Wait()
	for _, l := range listeners {
		if werr := l.Wait(); werr != nil {
			lnErrs = append(lnErrs, fmt.Errorf("serve %s: %w", l.Name(), werr))
		}
	}
	lnErrs = append(lnErrs, grpcErr)
	if a.grpcDone != nil {
		if werr := <-a.grpcDone; werr != nil {
			lnErrs = append(lnErrs, fmt.Errorf("serve grpc: %w", werr))
		}
	}
	a.obs.close()
	lnErrs = append(lnErrs, a.retrieval.close())
	a.disc.stop()
	a.pool.Close()
	if a.ownTen {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		lnErrs = append(lnErrs, a.ten.Close(cctx))
		ccancel()
	}
	err := errors.Join(append(lnErrs, drainErr)...)
	a.log.Info().Str("elapsed", time.Since(start).Round(time.Millisecond).String()).Bool("clean", err == nil).Msg("shutdown complete")
	return err
}

// responseStore is the Responses API's store shared by every listener: PostgreSQL
// when postgres.url is set (durable, shared by gateways), else a bounded in-process
// store. Start runs its retention sweep (sweepResponses).
func (a *App) responseStore(cfg *config.Config) responses.Store {
	if a.ten.DB != nil {
		return a.ten.DB.Responses()
	}
	return responses.NewMemory(cfg.Responses.MaxStored, cfg.Responses.MaxStoredBytes)
}

// sweepResponses removes stored responses older than responses.retention in the
// background until Shutdown.
func (a *App) sweepResponses() {
	ctx, cancel := context.WithCancel(context.Background())
	a.stopSweep = cancel
	retention := a.cfg.Responses.Retention.D()
	if retention <= 0 { // a config without defaults applied: keep responses
		return
	}
	go responses.SweepEvery(ctx, a.responses, min(retention/10, time.Hour), retention, func(n int, err error) {
		if err != nil {
			a.log.Warn().Err(err).Msg("responses retention sweep failed")
		} else if n > 0 {
			a.log.Info().Int("removed", n).Msg("responses retention sweep")
		}
	})
}
