// Package service runs one configured model: it loads the GGUF file, creates the
// model's scheduler and (on first use) its embedder, and gives the API what it needs
// (tokenization, chat templates, generation, embeddings) behind one small type.
//
// There is one generic Service; the seed models are configuration entries, not code.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// Errors of a service, besides those of the scheduler and the engine.
var (
	// ErrNotReady means the model is still loading, failed to load, or was stopped.
	ErrNotReady = errors.New("model not ready")
	// ErrEmbeddingsOff means the model is configured with embeddings: off.
	ErrEmbeddingsOff = errors.New("embeddings are disabled for this model")
	// ErrNoChatTemplate means neither the GGUF file nor the config has a chat template.
	ErrNoChatTemplate = errors.New("model has no chat template")
)

// State is where a service is in its life.
type State int32

// Service states, in order.
const (
	StateNew      State = iota // created, not loading yet
	StateLoading               // loading the model file
	StateReady                 // serving
	StateFailed                // the load failed; see Err
	StateDraining              // shutting down: finishing in-flight requests
	StateClosed                // stopped, memory freed
	StateUnloaded              // freed after unload_after idle; the next request loads it
)

func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateLoading:
		return "loading"
	case StateReady:
		return "ready"
	case StateFailed:
		return "failed"
	case StateDraining:
		return "draining"
	case StateClosed:
		return "closed"
	case StateUnloaded:
		return "unloaded"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Service is one model being served. Its methods are safe for concurrent use.
type Service struct {
	cfg config.Model
	log zerolog.Logger

	state    atomic.Int32
	progress atomic.Uint32 // load progress in 1/1000
	created  time.Time
	lastUsed atomic.Int64 // unix nanoseconds of the latest request (idle unloading)
	idle     atomic.Bool  // unloaded for idleness (or loading again on demand)
	planned  atomic.Int64 // bytes the planner reserved for the model
	used     atomic.Int64 // bytes of weights and KV cache once loaded

	beforeWake atomic.Pointer[func(*Service) error] // asked before a load on demand (SetBeforeWake)
	next       atomic.Pointer[Service]              // the instance that replaced this one (HandOver)

	use     sync.RWMutex // read-held while the model is used (acquire); Unload and Close take it to free
	mu      sync.Mutex   // guards the fields below during Load and Close
	loadErr error
	loaded  chan struct{} // closed when the current load ends (nil before the first)
	unload  chan struct{} // closed when the current idle unload ends (nil before the first)
	model   *engine.Model
	sched   *sched.Scheduler
	embed   *sched.Embedder
	tmpl    string // the chat template in use ("" none)
	tmplSrc TemplateSource
	info    engine.ModelInfo
	opts    Options
}

// Options tune a service beyond its config entry (tests and benchmarks).
type Options struct {
	// PrefillChunk is passed to the scheduler (0: adaptive).
	PrefillChunk int
	// StepHook is passed to the scheduler (tests stall the loop with it).
	StepHook func()
	// StallAfter overrides StallThreshold's default (tests use a short one).
	StallAfter time.Duration
}

// New returns an unloaded service for one config entry (defaults applied).
func New(cfg config.Model, log zerolog.Logger, opts Options) *Service {
	s := &Service{cfg: cfg, log: log.With().Str("model", cfg.Name).Logger(), created: time.Now(), opts: opts}
	s.state.Store(int32(StateNew))
	s.lastUsed.Store(s.created.UnixNano())
	return s
}

// Name is the model id clients use.
func (s *Service) Name() string { return s.cfg.Name }

// Config is the service's config entry.
func (s *Service) Config() config.Model { return s.cfg }

// State is the service's current state.
func (s *Service) State() State { return State(s.state.Load()) }

// Created is when the service was created (the "created" of /v1/models).
func (s *Service) Created() time.Time { return s.created }

// Progress is the load progress, 0..1.
func (s *Service) Progress() float64 { return float64(s.progress.Load()) / 1000 }

// Err is the load error of a failed service.
func (s *Service) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadErr
}

// Ready returns nil when the service accepts requests, or an error wrapping
// ErrNotReady (loading, failed) or sched.ErrClosed (shutting down).
func (s *Service) Ready() error {
	switch st := s.State(); st {
	case StateReady:
		return nil
	case StateNew, StateLoading:
		return fmt.Errorf("model %s is loading (%.0f%%): %w", s.cfg.Name, 100*s.Progress(), ErrNotReady)
	case StateFailed:
		return fmt.Errorf("model %s failed to load: %w", s.cfg.Name, ErrNotReady)
	case StateUnloaded:
		return fmt.Errorf("model %s is unloaded (idle for unload_after %s); a request loads it: %w", s.cfg.Name, s.cfg.UnloadAfter, ErrNotReady)
	default:
		return fmt.Errorf("model %s is %s: %w", s.cfg.Name, st, sched.ErrClosed)
	}
}

// Info is the loaded model's metadata (zero before the load).
func (s *Service) Info() engine.ModelInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// ChatTemplate is the chat template in use, "" when the model has none.
func (s *Service) ChatTemplate() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tmpl
}

// Scheduler returns the model's scheduler (nil before the load); for stats and tests.
func (s *Service) Scheduler() *sched.Scheduler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sched
}

// use is one use of a ready instance (acquire): the instance (the one asked, or the
// one it was handed over to), its scheduler, its model and its embedder (nil until
// embeddings are enabled and loaded).
type use struct {
	svc *Service
	sc  *sched.Scheduler
	m   *engine.Model
	emb *sched.Embedder
}

// release ends the use.
func (u use) release() { u.svc.use.RUnlock() }

// acquire returns a use of the instance that serves s's requests when it is ready:
// an unload, Drain or Close frees the model only after every use has ended (uses are
// short: a tokenization, a template, a submission, one embeddings batch).
//
// A model unloaded for idleness between a request's Wake and this use (the request
// paused longer than unload_after) is woken again once, so the request is not refused.
// An instance handed over to its replacement (HandOver) and no longer ready is served
// by that replacement: a request that resolved it just before a switch-over does not
// fail once it drains.
func (s *Service) acquire() (use, error) {
	for woken := false; ; {
		for next := s.next.Load(); next != nil && s.State() != StateReady; next = s.next.Load() {
			s = next
		}
		s.use.RLock()
		err := s.Ready()
		if err == nil {
			break
		}
		s.use.RUnlock()
		if s.next.Load() != nil {
			continue // handed over: its replacement serves
		}
		if woken || !s.idle.Load() {
			return use{}, err
		}
		if err := s.Wake(context.Background()); err != nil {
			return use{}, err
		}
		woken = true
	}
	s.lastUsed.Store(time.Now().UnixNano())
	s.mu.Lock()
	u := use{svc: s, sc: s.sched, m: s.model, emb: s.embed}
	s.mu.Unlock()
	if u.sc == nil {
		u.release()
		return use{}, fmt.Errorf("model %s: %w", s.cfg.Name, sched.ErrClosed)
	}
	return u, nil
}

// SeqCtx is the context window of one request, in tokens (0 while the model is not
// loaded). It reads what the loaded scheduler recorded and never wakes a model that
// was unloaded for idleness: listing models must not load them.
func (s *Service) SeqCtx() int {
	if sc := s.Scheduler(); sc != nil {
		return sc.SeqCtx()
	}
	return 0
}

// HandOver records that next replaces s (a config reload's switch-over; s is drained
// and closed next). A request that reaches s once it is no longer ready, through a
// route or listener handler that resolved s just before the switch, is served by next
// instead of failing with "shutting down" (see acquire).
func (s *Service) HandOver(next *Service) { s.next.Store(next) }

// Submit starts a generation; see sched.Scheduler.Submit.
func (s *Service) Submit(ctx context.Context, r sched.Request) (<-chan sched.Event, error) {
	u, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer u.release()
	return u.sc.Submit(ctx, r)
}

// InFlight is the number of generations whose final event is not delivered yet.
func (s *Service) InFlight() int {
	if sc := s.Scheduler(); sc != nil {
		return sc.Stats().InFlight
	}
	return 0
}

// Tokenize converts text to tokens (see engine.Model.Tokenize).
func (s *Service) Tokenize(text string, addSpecial, parseSpecial bool) ([]engine.Token, error) {
	u, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer u.release()
	return u.m.Tokenize(text, addSpecial, parseSpecial)
}

// Detokenize converts tokens to text; ids outside the vocabulary are
// engine.ErrInvalidArgument. Control tokens are not rendered.
func (s *Service) Detokenize(toks []engine.Token) (string, error) {
	u, err := s.acquire()
	if err != nil {
		return "", err
	}
	defer u.release()
	return u.m.Detokenize(toks, false, false)
}

// TokenBytes returns the raw bytes of one token (for logprob alternatives).
func (s *Service) TokenBytes(t engine.Token) ([]byte, error) {
	u, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer u.release()
	return u.m.TokenPiece(t, false)
}

// RenderChat applies the chat template (the config's override or the model's own)
// and appends the start of the assistant's turn.
func (s *Service) RenderChat(msgs []engine.ChatMessage) (string, error) {
	u, err := s.acquire()
	if err != nil {
		return "", err
	}
	defer u.release()
	tmpl := u.svc.ChatTemplate()
	if tmpl == "" {
		return "", fmt.Errorf("model %s: %w; set chat_template in its config", s.cfg.Name, ErrNoChatTemplate)
	}
	return u.m.ApplyChatTemplate(tmpl, msgs, true)
}

// MaxEmbedTokens is the longest input /v1/embeddings accepts.
func (s *Service) MaxEmbedTokens() int {
	return min(s.cfg.CtxPerSeq, s.cfg.Batch)
}

// Embed returns one L2-normalised vector per input.
func (s *Service) Embed(ctx context.Context, inputs [][]engine.Token) ([][]float32, error) {
	if !s.cfg.EmbeddingsEnabled() {
		return nil, fmt.Errorf("model %s: %w (embeddings: off in its config)", s.cfg.Name, ErrEmbeddingsOff)
	}
	u, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer u.release()
	if u.emb == nil {
		return nil, fmt.Errorf("model %s: %w", s.cfg.Name, sched.ErrClosed)
	}
	return u.emb.Embed(ctx, inputs)
}

// Stats is the scheduler's snapshot (zero before the load).
func (s *Service) Stats() sched.Stats {
	if sc := s.Scheduler(); sc != nil {
		return sc.Stats()
	}
	return sched.Stats{}
}

// modelFileSize is the size of the GGUF file, for memory planning before the load.
func modelFileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
