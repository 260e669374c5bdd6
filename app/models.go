package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/kvtype"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/transport/rest"
)

// Models without a restart: the App adds and removes model services while it serves
// (the admin API's POST and DELETE /admin/models, a reload of the config file), and
// unloads models idle for their unload_after. One lifecycle lock serializes these
// changes; requests never wait on it.
//
// Adding a model: its entry is validated within the running config (the config's own
// validation, so problems name the field), planned against the free memory (refused
// with the planner's need-vs-have table when it does not fit), its own port is bound,
// and it loads in the background (progress in /health/details and GET /admin/models);
// once ready it joins the gateway's router and gets its health check.
//
// Removing a model: the router stops sending it requests at once (they get the
// unknown model's 404), its own listener answers 503 to new requests, requests in
// flight finish within server.shutdown_grace, then the model is freed.

// modelListener is a model's own port: its REST server and fasthttp listener.
type modelListener struct {
	srv *rest.Server
	ln  *rest.Listener
}

// ModelSpec maps a model entry (defaults applied) to what the memory planner needs.
func ModelSpec(m config.Model) gpu.ModelSpec {
	return gpu.ModelSpec{
		Name:             m.Name,
		Path:             m.Path,
		MemoryLimitBytes: uint64(max(m.MemoryLimitBytes(), 0)),
		CPUCores:         m.CPUCores,
		CtxPerSeq:        m.CtxPerSeq,
		Parallel:         m.Parallel,
		KVType:           kvtype.Type(m.KVType),
		GPULayers:        m.GPULayers,
		BatchSize:        m.Batch,
		NoFlashAttention: !m.FlashAttentionOn(),
	}
}

// ApplyModelPlan copies the planner's decisions for one model into its entry: the
// n_gpu_layers, and the slots and context per slot it chose when the requested ones
// did not fit.
func ApplyModelPlan(m *config.Model, mp gpu.ModelPlan) {
	m.GPULayers, m.Parallel, m.CtxPerSeq = mp.NGPULayers, mp.Parallel, mp.CtxPerSeq
}

// ModelStates describes every model service (GET /admin/models).
func (a *App) ModelStates() []service.Status { return a.group.States() }

// running is the config the server runs now (reloads and admin changes applied).
func (a *App) running() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.live
}

// AddModel validates, plans and starts loading a model entry, and returns its state
// (loading). Errors are *infer.Error: InvalidArgument naming the field of a bad entry,
// one wrapping service.ErrExists for a name already served, and one wrapping
// service.ErrDoesNotFit, with the planner's table, when it does not fit.
func (a *App) AddModel(ctx context.Context, m config.Model) (service.Status, error) {
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	cur := a.running()
	if s := a.group.Get(m.Name); s != nil && m.Name != "" {
		return service.Status{}, &infer.Error{Kind: infer.InvalidArgument, Param: "name", Code: "model_exists", Err: service.ErrExists,
			Message: fmt.Sprintf("model %q is already served (state %s); DELETE /admin/models/%s first, or choose another name", m.Name, s.State(), m.Name)}
	}
	next := *cur
	next.Models = append(slices.Clone(cur.Models), m)
	next.ApplyDefaults(a.validate.HostCores)
	if err := checkConfig(&next, a.validate); err != nil {
		return service.Status{}, err
	}
	entry := next.Models[len(next.Models)-1]
	planned, err := a.planModels([]config.Model{entry}, 0)
	if err != nil {
		return service.Status{}, err
	}
	s, err := a.startModel(ctx, planned[0])
	if err != nil {
		return service.Status{}, err
	}
	a.mu.Lock()
	live := *a.live
	live.Models = append(slices.Clone(live.Models), entry)
	a.live = &live
	a.mu.Unlock()
	return s.Status(), nil
}

// checkConfig runs the config's validation and turns its problems into one
// InvalidArgument error naming the first field.
func checkConfig(c *config.Config, opts config.Options) error {
	ps := c.Validate(opts)
	if len(ps) == 0 {
		return nil
	}
	return &infer.Error{Kind: infer.InvalidArgument, Param: ps[0].Path, Code: "invalid_config", Message: ps.Error(), Err: ps}
}

// plannedModel is a model entry with the planner's decisions applied, and the memory
// it planned.
type plannedModel struct {
	entry config.Model
	bytes int64
}

// planModels plans entries against the memory free now, plus freed bytes on each
// device (the memory of running models that will be freed first; an upper bound when
// a model spans devices), and returns them with the planner's decisions applied, or
// an error wrapping service.ErrDoesNotFit that carries the need-vs-have table.
func (a *App) planModels(ms []config.Model, freed int64) ([]plannedModel, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	devs, hostFree, err := a.devices()
	if err != nil {
		return nil, &infer.Error{Kind: infer.Internal, Message: "plan the model's memory: " + err.Error(), Err: err}
	}
	for i := range devs {
		devs[i].FreeBytes = min(devs[i].FreeBytes+uint64(max(freed, 0)), max(devs[i].TotalBytes, devs[i].FreeBytes))
	}
	specs := make([]gpu.ModelSpec, len(ms))
	for i, m := range ms {
		specs[i] = ModelSpec(m)
	}
	// The cores of every model were checked by the config's validation; the planner
	// checks memory only.
	p, err := gpu.NewPlan(specs, devs, gpu.Options{HostCores: math.MaxInt32, HostFreeBytes: hostFree})
	if err != nil {
		return nil, &infer.Error{Kind: infer.InvalidArgument, Param: "path", Code: "invalid_model", Message: err.Error(), Err: err}
	}
	if !p.Fits() {
		return nil, &infer.Error{Kind: infer.Unavailable, Code: "insufficient_memory", Err: service.ErrDoesNotFit,
			Message: fmt.Sprintf("not loaded: the model does not fit the free memory. Need against have, and what to change:\n\n%s", p.Table())}
	}
	out := make([]plannedModel, len(ms))
	for i, m := range ms {
		out[i].entry = m
		if mp, ok := p.Model(m.Name); ok {
			ApplyModelPlan(&out[i].entry, mp)
			out[i].bytes = int64(mp.Need.Total())
		}
	}
	return out, nil
}

// fitsNow plans a model unloaded for idleness, before a request loads it again,
// against the memory free now (like AddModel: the devices' free memory is net of the
// models resident). When it does not fit, the request gets 503 with Retry-After and a
// message that says so; nothing is loaded. Two models woken at the same instant are
// each planned against what is resident then.
func (a *App) fitsNow(s *service.Service) error {
	_, err := a.planModels([]config.Model{s.Config()}, 0)
	if err == nil || !errors.Is(err, service.ErrDoesNotFit) {
		return err
	}
	return &infer.Error{Kind: infer.Unavailable, Code: "model_does_not_fit", RetryAfter: wakeRetry, Err: err,
		Message: fmt.Sprintf("model %s is unloaded and does not fit the free memory now (other models are resident): "+
			"retry later, or remove or unload another model. %s", s.Name(), err.Error())}
}

// wakeRetry is the Retry-After of a load on demand that does not fit now.
const wakeRetry = 30 * time.Second

// devices lists what models are planned on: Options.Devices, or the devices found
// now (their free memory already net of the models loaded).
func (a *App) devices() ([]gpu.Device, uint64, error) {
	if a.opts.Devices != nil {
		return a.opts.Devices()
	}
	devs, err := gpu.Discover()
	return devs, 0, err
}

// startModel adds a planned entry's service, binds its own port and loads it in the
// background; once ready it joins the router and gets its health check.
func (a *App) startModel(ctx context.Context, pm plannedModel) (*service.Service, error) {
	m := pm.entry
	s, err := a.group.Add(m)
	if err != nil {
		return nil, &infer.Error{Kind: infer.InvalidArgument, Param: "name", Code: "model_exists", Message: err.Error(), Err: err}
	}
	s.SetPlannedBytes(pm.bytes)
	if m.Port != 0 {
		ml := a.newModelListener(s)
		if err := ml.ln.Listen(a.modelAddr(m.Port)); err != nil {
			a.group.Remove(m.Name)
			s.Close()
			return nil, &infer.Error{Kind: infer.InvalidArgument, Param: "port", Code: "port_unavailable", Message: err.Error(), Err: err}
		}
		a.serve(ml.ln)
		a.mu.Lock()
		a.servers = append(a.servers, ml.srv)
		a.listeners = append(a.listeners, ml.ln)
		a.modelLns[m.Name] = ml
		a.mu.Unlock()
	}
	a.log.Info().Str("model", m.Name).Int("port", m.Port).Int64("planned_bytes", s.PlannedBytes()).Msg("model added: loading")
	err = s.LoadAsync(context.WithoutCancel(ctx), func(err error) {
		if err != nil {
			return // the service logged it; its state says failed (or closed: removed meanwhile)
		}
		a.lifecycle.Lock() // not removed between the load's end and joining the router
		defer a.lifecycle.Unlock()
		if a.group.Get(m.Name) != s {
			return
		}
		if err := a.pool.AddLocal(infer.NewLocal(s)); err != nil {
			a.log.Error().Err(err).Str("model", m.Name).Msg("model loaded but not routed")
		}
		if err := a.obs.health.Register(s.HealthCheck()); err != nil {
			a.log.Error().Err(err).Str("model", m.Name).Msg("health check not registered")
		}
	})
	return s, err
}

// modelAddr is the address of a model's own port: the gateway's host and the port.
func (a *App) modelAddr(port int) string {
	host, _, err := net.SplitHostPort(a.cfg.Listen)
	if err != nil {
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// newModelListener builds the REST server of a model's own port (not bound yet).
func (a *App) newModelListener(s *service.Service) *modelListener {
	mo := a.base
	mo.DefaultModel = s.Name()
	srv := rest.New(a.ten.Admit(a.ten.Cache(infer.NewLocal(s))), mo)
	return &modelListener{srv: srv, ln: rest.NewListener(s.Name(), srv.Handler(), a.hc, a.log)}
}

// serve starts serving a bound listener, with TLS when configured.
func (a *App) serve(l *rest.Listener) {
	if a.tls != nil {
		l.ServeTLS(nil, a.tls)
	} else {
		l.Serve(nil)
	}
}

// RemoveModel stops admitting requests to a model, lets the ones in flight finish
// within server.shutdown_grace, frees it and forgets it; it returns its last state.
// An unknown name is NotFound.
func (a *App) RemoveModel(ctx context.Context, name string) (service.Status, error) {
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	st, err := a.stopModel(ctx, name)
	if err != nil {
		return st, err
	}
	a.mu.Lock()
	live := *a.live
	live.Models = slices.DeleteFunc(slices.Clone(live.Models), func(m config.Model) bool { return m.Name == name })
	a.live = &live
	a.mu.Unlock()
	return st, nil
}

// stopModel is RemoveModel under the lifecycle lock.
func (a *App) stopModel(ctx context.Context, name string) (service.Status, error) {
	s := a.group.Get(name)
	if s == nil {
		return service.Status{}, infer.ModelNotFound(name)
	}
	a.log.Info().Str("model", name).Str("grace", a.cfg.Server.ShutdownGrace.String()).Msg("removing model: finishing requests in flight")
	a.pool.RemoveLocal(name)
	a.mu.Lock()
	ml := a.modelLns[name]
	a.mu.Unlock()
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Server.ShutdownGrace.D())
	defer cancel()
	var lnErr error
	var wg sync.WaitGroup
	if ml != nil {
		ml.srv.SetDraining()
		wg.Go(func() {
			if lnErr = ml.ln.Shutdown(gctx); lnErr == nil {
				lnErr = ml.ln.Wait()
			}
		})
	}
	drainErr := s.Drain(gctx)
	wg.Wait()
	if drainErr != nil {
		a.log.Warn().Err(drainErr).Str("model", name).Msg("grace period over: cancelling the model's requests still running")
	}
	s.Close()
	a.group.Remove(name)
	_ = a.obs.health.Unregister(service.HealthCheckName(name)) // not registered when it never got ready
	if ml != nil {
		a.mu.Lock()
		delete(a.modelLns, name)
		a.servers = slices.DeleteFunc(a.servers, func(x *rest.Server) bool { return x == ml.srv })
		a.listeners = slices.DeleteFunc(a.listeners, func(x *rest.Listener) bool { return x == ml.ln })
		a.mu.Unlock()
	}
	st := s.Status()
	if err := errors.Join(drainErr, lnErr); err != nil {
		a.log.Warn().Err(err).Str("model", name).Msg("model removed, not cleanly")
	} else {
		a.log.Info().Str("model", name).Msg("model removed")
	}
	return st, nil
}

// Reload re-reads the config (Options.Reload) and applies what changed: models added,
// removed or changed (see switchModel; unloaded, then loaded with the new entry when
// both do not fit, listed in OutageModels), static keys and their limits, fallbacks
// and the log level. A config that fails validation, or whose new
// models do not fit, is refused whole and nothing changes. Fields that cannot change
// live are listed in the result's NeedsRestart (and logged) and keep their values.
func (a *App) Reload(ctx context.Context) (config.Changes, error) {
	if a.opts.Reload == nil {
		return config.Changes{}, &infer.Error{Kind: infer.InvalidArgument, Code: "reload_unavailable",
			Message: "this server was not started from a config file (hxp serve --config FILE): there is nothing to re-read"}
	}
	next, err := a.opts.Reload()
	if err != nil {
		a.log.Error().Err(err).Msg("config reload refused: the running config stays")
		var ps config.Problems
		if errors.As(err, &ps) && len(ps) > 0 {
			return config.Changes{}, &infer.Error{Kind: infer.InvalidArgument, Param: ps[0].Path, Code: "invalid_config",
				Message: "reload refused, nothing changed: " + err.Error(), Err: err}
		}
		return config.Changes{}, &infer.Error{Kind: infer.InvalidArgument, Code: "invalid_config",
			Message: "reload refused, nothing changed: " + err.Error(), Err: err}
	}
	a.lifecycle.Lock()
	defer a.lifecycle.Unlock()
	cur := a.running()
	ch := config.Diff(cur, next)
	live := config.Live(cur, next)
	if ch.LogLevel && a.opts.SetLogLevel == nil { // no way to apply it here
		ch.LogLevel, live.Log.Level = false, cur.Log.Level
		ch.NeedsRestart = append(ch.NeedsRestart, "log.level")
	}
	var fresh []config.Model
	for _, m := range live.Models {
		if slices.Contains(ch.AddedModels, m.Name) || slices.Contains(ch.ChangedModels, m.Name) {
			fresh = append(fresh, m)
		}
	}
	planned, err := a.planModels(fresh, 0)
	if errors.Is(err, service.ErrDoesNotFit) && len(ch.ChangedModels) > 0 {
		// The changed models' new entries do not fit beside their running instances:
		// planned with those freed, they are unloaded first (a brief outage).
		var freed int64
		for _, name := range ch.ChangedModels {
			if s := a.group.Get(name); s != nil && resident(s) {
				freed += s.PlannedBytes()
			}
		}
		if p, ferr := a.planModels(fresh, freed); ferr == nil {
			planned, err = p, nil
			ch.OutageModels = slices.Clone(ch.ChangedModels)
			for _, name := range ch.OutageModels {
				ch.Notes = append(ch.Notes, fmt.Sprintf("model %s needs a brief outage: its new entry does not fit the memory beside "+
					"the running instance, so it was unloaded, then loaded with the new entry; its requests get 404 until it is ready", name))
			}
		}
	}
	if err != nil {
		a.log.Error().Err(err).Msg("config reload refused: the running config stays")
		return config.Changes{}, err
	}
	if ch.Keys {
		if err := a.ten.SetStaticKeys(live.Auth.KeyAuth, live.Auth.APIKeys); err != nil {
			return config.Changes{}, &infer.Error{Kind: infer.Internal, Message: err.Error(), Err: err}
		}
	}
	if ch.LogLevel {
		a.opts.SetLogLevel(live.Log.Level)
	}
	var wg sync.WaitGroup
	for _, name := range slices.Concat(ch.RemovedModels, ch.OutageModels) {
		wg.Go(func() { _, _ = a.stopModel(ctx, name) })
	}
	wg.Wait()
	var errs []error
	for _, m := range planned {
		if old := a.group.Get(m.entry.Name); old != nil {
			err = a.switchModel(ctx, old, m)
		} else {
			_, err = a.startModel(ctx, m)
		}
		errs = append(errs, err)
	}
	if ch.Fallbacks {
		errs = append(errs, a.pool.SetFallbacks(live.Routing.Fallbacks))
	}
	a.mu.Lock()
	a.live = live
	a.mu.Unlock()
	ev := a.log.Info()
	if len(ch.NeedsRestart) > 0 {
		ev = a.log.Warn().Strs("needs_restart", ch.NeedsRestart)
	}
	ev.Strs("added", ch.AddedModels).Strs("removed", ch.RemovedModels).Strs("changed", ch.ChangedModels).Strs("outage", ch.OutageModels).
		Bool("keys", ch.Keys).Bool("fallbacks", ch.Fallbacks).Bool("log_level", ch.LogLevel).Msg("config reloaded")
	if err := errors.Join(errs...); err != nil {
		return ch, &infer.Error{Kind: infer.Internal, Message: "config reloaded, but: " + err.Error(), Err: err}
	}
	return ch, nil
}

// resident reports whether a model holds its memory now (loaded or loading).
func resident(s *service.Service) bool {
	st := s.State()
	return st == service.StateReady || st == service.StateLoading || st == service.StateDraining
}

// switchModel replaces a running model by its changed entry without dropping a
// request: the new instance loads beside the old one (which serves meanwhile; GET
// /admin/models lists the old one until the switch), then in one step under the
// lifecycle lock it takes the old one's place in the group and the router, and on
// the model's own port (same port: the listener stays and serves the new instance
// from its next request; another port: bound now, the old port closes after its
// requests). The old instance then finishes its requests within
// server.shutdown_grace and is freed. A new instance that fails to load is dropped
// and the old one keeps serving; so is one whose model was removed or changed again
// meanwhile.
func (a *App) switchModel(ctx context.Context, old *service.Service, pm plannedModel) error {
	m := pm.entry
	s := a.group.New(m)
	s.SetPlannedBytes(pm.bytes)
	a.mu.Lock()
	oldML := a.modelLns[m.Name]
	if prev := a.switching[m.Name]; prev != nil {
		prev.Close() // an earlier change still loading: this one wins
	}
	a.switching[m.Name] = s
	a.mu.Unlock()
	var ml *modelListener
	if m.Port != 0 && (oldML == nil || m.Port != old.Config().Port) {
		ml = a.newModelListener(s)
		if err := ml.ln.Listen(a.modelAddr(m.Port)); err != nil {
			a.dropSwitch(s)
			return &infer.Error{Kind: infer.InvalidArgument, Param: "port", Code: "port_unavailable", Message: err.Error(), Err: err}
		}
	}
	a.log.Info().Str("model", m.Name).Int("port", m.Port).Int64("planned_bytes", s.PlannedBytes()).Msg("model changed: loading the new entry beside the running one")
	err := s.LoadAsync(context.WithoutCancel(ctx), func(err error) {
		a.lifecycle.Lock()
		defer a.lifecycle.Unlock()
		a.mu.Lock()
		current := a.switching[m.Name] == s
		a.mu.Unlock()
		if err != nil || !current || !a.group.Replace(old, s) {
			a.log.Warn().Err(err).Str("model", m.Name).Msg("model change not applied: the running instance stays")
			a.dropSwitch(s)
			if ml != nil {
				_ = ml.ln.Close()
			}
			return
		}
		a.takeOver(ctx, old, s, oldML, ml)
	})
	if err != nil {
		a.dropSwitch(s)
		if ml != nil {
			_ = ml.ln.Close()
		}
	}
	return err
}

// dropSwitch forgets and closes a new instance that will not replace the running one.
func (a *App) dropSwitch(s *service.Service) {
	a.mu.Lock()
	if a.switching[s.Name()] == s {
		delete(a.switching, s.Name())
	}
	a.mu.Unlock()
	s.Close()
}

// takeOver routes a loaded new instance s in place of old (already replaced in the
// group), on the old listener oldML or the new one ml, then drains and frees old. It
// runs under the lifecycle lock.
func (a *App) takeOver(ctx context.Context, old, s *service.Service, oldML, ml *modelListener) {
	name := s.Name()
	old.HandOver(s) // requests that resolved old just before the switch go to s once old drains
	if err := a.pool.ReplaceLocal(infer.NewLocal(s)); err != nil {
		a.log.Error().Err(err).Str("model", name).Msg("model changed but not routed")
	}
	a.mu.Lock()
	delete(a.switching, name)
	switch {
	case ml != nil: // a new port: serve it, close the old one below
		a.serve(ml.ln)
		a.servers = append(a.servers, ml.srv)
		a.listeners = append(a.listeners, ml.ln)
		a.modelLns[name] = ml
	case oldML != nil && s.Config().Port != 0: // the same port: the listener serves s from now on
		next := a.newModelListener(s)
		oldML.ln.SetHandler(next.srv.Handler())
		for i, x := range a.servers {
			if x == oldML.srv {
				a.servers[i] = next.srv
			}
		}
		oldML.srv, oldML = next.srv, nil
	default: // the port was dropped
		delete(a.modelLns, name)
	}
	a.mu.Unlock()
	_ = a.obs.health.Unregister(service.HealthCheckName(name))
	if err := a.obs.health.Register(s.HealthCheck()); err != nil {
		a.log.Error().Err(err).Str("model", name).Msg("health check not registered")
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Server.ShutdownGrace.D())
	defer cancel()
	var lnErr error
	if oldML != nil {
		oldML.srv.SetDraining()
		if lnErr = oldML.ln.Shutdown(gctx); lnErr == nil {
			lnErr = oldML.ln.Wait()
		}
		a.mu.Lock()
		a.servers = slices.DeleteFunc(a.servers, func(x *rest.Server) bool { return x == oldML.srv })
		a.listeners = slices.DeleteFunc(a.listeners, func(x *rest.Listener) bool { return x == oldML.ln })
		a.mu.Unlock()
	}
	drainErr := old.Drain(gctx)
	old.Close()
	if err := errors.Join(drainErr, lnErr); err != nil {
		a.log.Warn().Err(err).Str("model", name).Msg("model changed; the old instance was not freed cleanly")
	} else {
		a.log.Info().Str("model", name).Msg("model changed: the new entry serves, the old instance is freed")
	}
}

// unloadIdle unloads models idle past their unload_after until stop is closed,
// checking a few times per the shortest unload_after (at most every second).
func (a *App) unloadIdle(stop <-chan struct{}) {
	for {
		every := time.Second
		for _, s := range a.group.Services() {
			if d := s.Config().UnloadAfter.D(); d > 0 {
				every = min(every, max(d/4, 10*time.Millisecond))
			}
		}
		t := time.NewTimer(every)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		a.group.UnloadIdle(context.Background(), time.Now())
	}
}
