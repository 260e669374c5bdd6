package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/service"
)

// App is a whole HXP server: the model services of a config, the gateway and every
// model's own listener, with their lifecycle (start, load, graceful shutdown).
type App struct {
	cfg       *config.Config
	log       zerolog.Logger
	group     *service.Group
	gateway   *Gateway
	models    []*Gateway // the model listeners' handlers
	listeners []*Listener
	obs       *observability // metrics registry, health checks (observe.go)
	pool      *Pool          // the gateway's router with tenancy (nil without)
	tls       *tls.Config    // server.tls (nil: plain HTTP)

	loadDone chan error
	stopOnce sync.Once
}

// NewApp builds the server for cfg (validated, defaults applied). opts.Log,
// opts.APIKeys, opts.MaxN and opts.WriteTimeout are filled from cfg when unset; the
// extra middleware and routes of opts apply to every listener. With opts.Tenancy the
// gateway routes through a Pool (local and remote upstreams) and every listener runs
// the tenancy's links; the caller closes the tenancy after Shutdown.
func NewApp(cfg *config.Config, group *service.Group, opts Options) (*App, error) {
	if opts.APIKeys == nil {
		opts.APIKeys = cfg.Auth.APIKeys
	}
	if opts.MaxN == 0 {
		opts.MaxN = cfg.Server.MaxN
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = cfg.Server.WriteTimeout.D()
	}
	obs, err := newObservability(group, opts.Log)
	if err != nil {
		return nil, err
	}
	if err := obs.options(cfg, &opts); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: opts.Log, group: group, obs: obs, loadDone: make(chan error, 1)}
	hc := HTTPConfig{ReadTimeout: cfg.Server.ReadTimeout.D(), WriteTimeout: cfg.Server.WriteTimeout.D(),
		IdleTimeout: cfg.Server.IdleTimeout.D(), MaxBodyBytes: cfg.Server.MaxBodyBytes}
	if cfg.Server.TLS.Enabled() {
		if a.tls, err = LoadTLS(cfg.Server.TLS.CertFile, cfg.Server.TLS.KeyFile); err != nil {
			return nil, err
		}
	}
	var ups []Upstream
	var locals []*Local
	for _, s := range group.Services() {
		l := NewLocal(s, opts)
		ups, locals = append(ups, l), append(locals, l)
	}
	gwOpts := opts
	ten := opts.Tenancy
	if ten != nil {
		if a.pool, err = ten.NewPool(locals...); err != nil {
			return nil, err
		}
		ups = []Upstream{a.pool}
		if err := obs.reg.Register(ten.Collector(a.pool)); err != nil {
			return nil, fmt.Errorf("server: register tenancy metrics: %w", err)
		}
		gwOpts.APIKeys = []string{} // the tenancy's key auth has them
		gwOpts.Middleware = append(ten.Links(""), opts.Middleware...)
		gwOpts.Routes = append(append([]Route(nil), opts.Routes...), ten.Routes()...)
	}
	gw, err := NewGateway(gwOpts, ups...)
	if err != nil {
		return nil, err
	}
	a.gateway = gw
	a.listeners = append(a.listeners, NewListener("gateway", gw.Handler(), hc, opts.Log))
	for _, s := range group.Services() {
		if s.Config().Port == 0 {
			continue
		}
		mlOpts := opts
		if ten != nil {
			mlOpts.APIKeys = []string{}
			mlOpts.Middleware = append(ten.Links(s.Name()), opts.Middleware...)
		}
		ml := NewModelListener(s, mlOpts)
		a.models = append(a.models, ml)
		a.listeners = append(a.listeners, NewListener(s.Name(), ml.Handler(), hc, opts.Log))
	}
	return a, nil
}

// Gateway returns the app's gateway.
func (a *App) Gateway() *Gateway { return a.gateway }

// Group returns the app's model services.
func (a *App) Group() *service.Group { return a.group }

// addrs returns the address of each listener, in order.
func (a *App) addrs() []string {
	out := []string{a.cfg.Listen}
	host, _, err := net.SplitHostPort(a.cfg.Listen)
	if err != nil {
		host = ""
	}
	for _, s := range a.group.Services() {
		if p := s.Config().Port; p != 0 {
			out = append(out, net.JoinHostPort(host, strconv.Itoa(p)))
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
				_ = bound.ln.Close()
			}
			return err
		}
	}
	if err := a.obs.start(ctx); err != nil {
		for _, l := range a.listeners {
			_ = l.ln.Close()
		}
		return err
	}
	for _, l := range a.listeners {
		if a.tls != nil {
			l.ServeTLS(nil, a.tls)
		} else {
			l.Serve(nil)
		}
	}
	if a.pool != nil {
		a.pool.Start()
	}
	go func() {
		err := a.group.LoadAll(ctx, 0)
		a.obs.loaded()
		a.loadDone <- err
	}()
	return nil
}

// Addrs are the bound addresses: the gateway's first, then each model listener's.
func (a *App) Addrs() []net.Addr {
	out := make([]net.Addr, len(a.listeners))
	for i, l := range a.listeners {
		out[i] = l.Addr()
	}
	return out
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
	a.log.Info().Str("grace", grace.String()).Msg("shutting down: no new connections, finishing requests in flight")
	a.obs.drain()
	a.gateway.SetDraining()
	for _, m := range a.models {
		m.SetDraining()
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()

	var wg sync.WaitGroup
	lnErrs := make([]error, len(a.listeners))
	for i, l := range a.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lnErrs[i] = l.Shutdown(ctx)
		}()
	}
	drainErr := a.group.Drain(ctx)
	if drainErr != nil {
		a.log.Warn().Err(drainErr).Msg("grace period over: cancelling requests still running")
	}
	// Frees the models; anything still running ends with a 503-class error event.
	a.group.Close()
	wg.Wait()
	for _, l := range a.listeners {
		if werr := l.Wait(); werr != nil {
			lnErrs = append(lnErrs, fmt.Errorf("serve %s: %w", l.name, werr))
		}
	}
	a.obs.close()
	if a.pool != nil {
		a.pool.Close()
	}
	err := errors.Join(append(lnErrs, drainErr)...)
	a.log.Info().Str("elapsed", time.Since(start).Round(time.Millisecond).String()).Bool("clean", err == nil).Msg("shutdown complete")
	return err
}
