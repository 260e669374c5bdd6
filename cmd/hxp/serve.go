package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/app"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

func init() {
	register(command{
		name:    "serve",
		summary: "serve models: the OpenAI-compatible gateway and one listener per model",
		run:     runServe,
	})
}

// modelFlags collects repeated --model NAME=PATH[@PORT] flags.
type modelFlags []config.Model

var modelFlagRE = regexp.MustCompile(`^([^=]+)=(.+?)(?:@(\d{1,5}))?$`)

func (m *modelFlags) String() string { return "" }

func (m *modelFlags) Set(v string) error {
	sub := modelFlagRE.FindStringSubmatch(v)
	if sub == nil {
		return fmt.Errorf("want NAME=PATH.gguf or NAME=PATH.gguf@PORT, got %q", v)
	}
	mc := config.Model{Name: sub[1], Path: sub[2]}
	if sub[3] != "" {
		mc.Port, _ = strconv.Atoi(sub[3])
	}
	*m = append(*m, mc)
	return nil
}

func runServe(args []string) error {
	fs := newFlags("serve", "--config FILE | --model NAME=PATH.gguf[@PORT] ... [--listen ADDR]")
	cfgPath := fs.String("config", "", "YAML config file (configs/dev.yaml, configs/hxp-enterprise.yaml)")
	var models modelFlags
	fs.Var(&models, "model", "serve the GGUF file at PATH as model NAME, on the gateway and, with @PORT, on its own port (repeatable; instead of --config)")
	var templates chatTemplateFlags
	fs.Var(&templates, "chat-template", chatTemplateUsage)
	listen := fs.String("listen", "", "gateway address (default :8000; overrides the config's listen)")
	logLevel := fs.String("log-level", "", "trace, debug, info, warn or error (overrides the config)")
	logFormat := fs.String("log-format", "", "json or console (overrides the config)")
	auth := fs.Bool("auth", false, "require a valid API key on every /v1 request (auth.required: true)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: hxp serve --config FILE
       hxp serve --model NAME=PATH.gguf[@PORT] [--model ...] [--chat-template NAME=FILE|BUILTIN] [--listen ADDR]

Serves the OpenAI-compatible API (/v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/models, /tokenize, /detokenize, /health) on the gateway, which
routes by the request's "model", and on each model's own port. SIGINT or SIGTERM
shuts down gracefully: streams in flight finish within server.shutdown_grace.
SIGHUP re-reads --config FILE and applies what changed without a restart (models,
static keys and their limits, fallbacks, log.level); a file that fails validation
changes nothing, and fields that need a restart are logged.

HXP_ environment variables override the config (hxp config env lists them).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	load := func() (*config.Config, error) {
		cfg, err := serveConfig(*cfgPath, models, *listen, *logLevel, *logFormat, *auth)
		if err == nil {
			err = templates.apply(cfg)
		}
		return cfg, err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, os.Stderr)
	if *cfgPath == "" {
		load = nil // nothing to re-read on SIGHUP
	}
	return serve(cfg, log, load)
}

// serveConfig builds the config from --config or --model flags, then applies the
// environment, the flag overrides (which win; auth is --auth), defaults and
// validation.
func serveConfig(path string, models modelFlags, listen, level, format string, auth bool) (*config.Config, error) {
	opts := config.Options{Environ: os.Environ(), Override: func(c *config.Config) {
		if auth {
			c.Auth.Required = true // validation then insists on a key source
		}
		if listen != "" {
			c.Listen = listen
		}
		if level != "" {
			c.Log.Level = level
		}
		if format != "" {
			c.Log.Format = format
		}
		if c.Log.Format == "" && isatty.IsTerminal(os.Stderr.Fd()) {
			c.Log.Format = "console"
		}
	}}
	switch {
	case path != "" && len(models) > 0:
		return nil, fmt.Errorf("%w: use --config or --model, not both", errUsage)
	case path != "":
		return config.Load(path, opts)
	case len(models) > 0:
		return config.Finish(&config.Config{Models: models}, opts)
	}
	return nil, fmt.Errorf("%w: give --config FILE or at least one --model NAME=PATH.gguf (see hxp serve --help)", errUsage)
}

// newLogger builds the process logger from the config. Its level is zerolog's global
// level, so that a reload can change it (setLogLevel).
func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	setLogLevel(c.Level)
	if c.Format == "console" {
		noColor := true
		if f, ok := w.(*os.File); ok {
			noColor = !isatty.IsTerminal(f.Fd())
		}
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: noColor}
	}
	return zerolog.New(w).With().Timestamp().Logger()
}

// setLogLevel sets the process's log level (info when level is not a valid one).
func setLogLevel(level string) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(lvl)
}

// serve runs the server until SIGINT/SIGTERM, then shuts it down gracefully. A second
// signal during the shutdown ends the process at once. SIGHUP reloads the config with
// load (nil: the server was not started from a file).
func serve(cfg *config.Config, log zerolog.Logger, load func() (*config.Config, error)) error {
	engLog := log.Level(zerolog.WarnLevel)
	if zerolog.GlobalLevel() <= zerolog.DebugLevel {
		engLog = log
	}
	engine.SetLogger(engLog)
	source := *cfg // as read: reloads compare the file with this, not with the plan
	source.Models = slices.Clone(cfg.Models)
	if err := prepareModels(cfg, log); err != nil { // plan.go: refuse what does not fit
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Keys, limits, ledger, cache and remote upstreams; a configured PostgreSQL or
	// Redis that cannot be reached fails the start.
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	tc := tenancy.FromConfig(cfg, log)
	ten, err := tenancy.Open(tctx, tc)
	tcancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ten.Close(cctx); err != nil {
			log.Warn().Err(err).Msg("closing the tenancy (ledger, connections)")
		}
	}()
	group := service.NewGroup(cfg.Models, log, service.Options{})
	a, err := app.New(cfg, group, app.Options{Log: log, Tenancy: ten, Reload: load, SetLogLevel: setLogLevel, Source: &source,
		Devices: func() ([]gpu.Device, uint64, error) { return planDevices(log) }})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	go reloadOnHangup(ctx, a, log)
	names := make([]string, 0, len(cfg.Models))
	for _, m := range cfg.Models {
		names = append(names, m.Name)
	}
	log.Info().Str("gateway", a.Addrs()[0].String()).Strs("models", names).Bool("auth", ten.AuthEnabled()).
		Int("static_keys", len(cfg.Auth.APIKeys)+len(cfg.Auth.Keys)).Bool("postgres", cfg.Postgres.URL != "").
		Bool("redis", cfg.Redis.URL != "").Int("remote_upstreams", len(cfg.Upstreams)).Bool("tls", cfg.Server.TLS.Enabled()).
		Msg("hxp serving; models are loading")

	var noModels atomic.Bool
	go func() {
		err := a.WaitLoaded(ctx)
		if ctx.Err() != nil {
			return
		}
		ready := 0
		for _, s := range group.Services() {
			if s.State() == service.StateReady {
				ready++
			}
		}
		switch {
		case ready == 0:
			log.Error().Err(err).Msg("no model could be loaded; shutting down")
			noModels.Store(true)
			stop()
		case err != nil:
			log.Warn().Int("ready", ready).Int("failed", len(names)-ready).Msg("some models failed to load; serving the others")
		default:
			log.Info().Int("ready", ready).Msg("all models ready")
		}
	}()

	<-ctx.Done()
	stop() // a second signal now terminates the process
	if err := a.Shutdown(cfg.Server.ShutdownGrace.D()); err != nil {
		log.Warn().Err(err).Msg("shutdown was not clean")
	}
	if noModels.Load() {
		return errors.New("no model could be loaded (see the log above)")
	}
	return nil
}

// reloadOnHangup reloads the config on each SIGHUP until ctx ends; the outcome is
// logged by the app (what changed, what needs a restart, or why nothing did).
func reloadOnHangup(ctx context.Context, a *app.App, log zerolog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info().Msg("SIGHUP: reloading the config")
			_, _ = a.Reload(ctx)
		}
	}
}

// describeModels is a one-line summary of models, for messages.
func describeModels(ms []config.Model) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Name
		if m.Port != 0 {
			parts[i] += fmt.Sprintf(" (:%d)", m.Port)
		}
	}
	return strings.Join(parts, ", ")
}
