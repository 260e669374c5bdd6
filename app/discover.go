package app

import (
	"context"
	"sync"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/discovery"
	"github.com/hxp-ai/hxp/route"
)

// discoverer keeps the router's members of the upstreams found by DNS
// (`upstreams: [{model, dns, port}]`) in step with what their names resolve to: a node
// that appears becomes a member (with its own breaker and health check), a node that
// disappears is taken out (requests already on it finish there; new ones go to the
// others).
type discoverer struct {
	pool    *route.Pool
	cfg     *config.Config
	log     zerolog.Logger
	watches []watch

	mu    sync.Mutex
	nodes map[string]*route.Remote // by model + " " + node URL

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// watch is one DNS upstream and its watcher.
type watch struct {
	up config.Upstream
	w  *discovery.Watcher
}

// newDiscoverer declares every DNS upstream's model in pool and prepares its watcher.
func newDiscoverer(pool *route.Pool, cfg *config.Config, log zerolog.Logger) (*discoverer, error) {
	d := &discoverer{pool: pool, cfg: cfg, log: log, nodes: map[string]*route.Remote{}}
	for _, u := range cfg.Upstreams {
		if !u.Discovered() {
			continue
		}
		w, err := discovery.New(u.DNS, discovery.Options{Port: u.Port, SRV: u.SRV(), Interval: cfg.Routing.HealthInterval.D(),
			Logger: log.With().Str("model", u.Model).Logger()})
		if err != nil {
			return nil, err
		}
		pool.Declare(u.Model)
		d.watches = append(d.watches, watch{up: u, w: w})
	}
	return d, nil
}

// start runs the watchers until stop.
func (d *discoverer) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for _, wt := range d.watches {
		d.done.Add(1)
		go func() {
			defer d.done.Done()
			_ = wt.w.Run(ctx, func(c discovery.Change) { d.apply(wt.up, c) })
		}()
	}
}

// stop ends the watchers.
func (d *discoverer) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.done.Wait()
}

// apply adds and removes the members of one change.
func (d *discoverer) apply(u config.Upstream, c discovery.Change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ep := range c.Removed {
		url := u.NodeURL(ep.String())
		if r := d.nodes[u.Model+" "+url]; r != nil {
			d.pool.RemoveRemote(u.Model, url)
			delete(d.nodes, u.Model+" "+url)
			r.Close()
		}
	}
	for _, ep := range c.Added {
		url := u.NodeURL(ep.String())
		r, err := route.NewRemote(route.RemoteOptions{URL: url, Models: []string{u.Model}, APIKey: d.cfg.Auth.NodeKey,
			Timeout: d.cfg.Routing.Timeout.D(), ConnectTimeout: d.cfg.Routing.ConnectTimeout.D()})
		if err == nil {
			err = d.pool.AddRemote(u.Model, r)
		}
		if err != nil {
			d.log.Warn().Err(err).Str("model", u.Model).Str("upstream", url).Msg("discovered node not added")
			continue
		}
		d.nodes[u.Model+" "+url] = r
	}
}
