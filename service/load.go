package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/kvtype"
	"github.com/hxp-ai/hxp/sched"
)

// Load loads the model, checks it against its config, and starts its scheduler.
// Cancelling ctx aborts a load in progress. Load is called on a new service or on one
// unloaded for idleness; a failed service stays failed (Ready reports it).
func (s *Service) Load(ctx context.Context) error {
	if !s.beginLoad(StateNew, StateUnloaded) {
		return fmt.Errorf("service %s: Load called in state %s", s.cfg.Name, s.State())
	}
	return s.load(ctx)
}

// beginLoad moves the service from one of the states from to loading, and reports
// whether it did.
func (s *Service) beginLoad(from ...State) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.ContainsFunc(from, func(st State) bool { return s.state.CompareAndSwap(int32(st), int32(StateLoading)) }) {
		return false
	}
	s.progress.Store(0)
	s.loaded = make(chan struct{})
	return true
}

// load runs a load begun by beginLoad.
func (s *Service) load(ctx context.Context) (err error) {
	start := time.Now()
	defer func() {
		s.mu.Lock()
		close(s.loaded)
		s.mu.Unlock()
	}()
	defer func() {
		if err != nil {
			s.mu.Lock()
			s.loadErr = err
			s.mu.Unlock()
			s.state.CompareAndSwap(int32(StateLoading), int32(StateFailed))
			s.log.Error().Err(err).Str("elapsed", time.Since(start).Round(time.Millisecond).String()).Msg("model load failed")
		}
	}()
	cfg := s.cfg
	if lim := cfg.MemoryLimitBytes(); lim > 0 {
		if size := modelFileSize(cfg.Path); size > lim {
			return fmt.Errorf("model %s: memory_limit_gb %v is below the model file's %s", cfg.Name, cfg.MemoryLimitGB, gib(size))
		}
	}
	s.log.Info().Str("path", cfg.Path).Int("threads", cfg.CPUCores).Int("parallel", cfg.Parallel).
		Int("ctx_per_seq", cfg.CtxPerSeq).Msg("loading model")
	nextReport := float32(0.25)
	m, err := engine.LoadModel(engine.ModelParams{
		Path:      cfg.Path,
		GPULayers: cfg.GPULayers,
		Progress: func(f float32) bool {
			s.progress.Store(uint32(f * 1000))
			if f >= nextReport && f < 1 {
				s.log.Info().Float32("progress", f).Msg("loading model")
				for nextReport <= f {
					nextReport += 0.25
				}
			}
			return ctx.Err() == nil
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("model %s: load cancelled: %w", cfg.Name, ctx.Err())
		}
		return fmt.Errorf("model %s: %w", cfg.Name, err)
	}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	info := m.Info()
	seqCtx := cfg.CtxPerSeq
	if info.CtxTrain > 0 && seqCtx > info.CtxTrain {
		s.log.Warn().Int("ctx_per_seq", seqCtx).Int("ctx_train", info.CtxTrain).
			Msg("ctx_per_seq exceeds the model's trained context; using the trained context")
		seqCtx = info.CtxTrain
	}
	if lim := cfg.MemoryLimitBytes(); lim > 0 {
		kv := info.KVBytesPerToken(kvtype.Type(cfg.KVType)) * int64(seqCtx*cfg.Parallel)
		if need := int64(info.SizeBytes) + kv; need > lim {
			return fmt.Errorf("model %s: memory_limit_gb %v is below the %s it needs (weights %s + KV cache %s for parallel %d x ctx_per_seq %d); lower parallel or ctx_per_seq, or raise the limit",
				cfg.Name, cfg.MemoryLimitGB, gib(need), gib(int64(info.SizeBytes)), gib(kv), cfg.Parallel, seqCtx)
		}
	}
	src, err := templateSource(cfg, info)
	if err != nil {
		return fmt.Errorf("model %s: %w", cfg.Name, err)
	}
	tmpl, err := legacyTemplate(m, cfg, src)
	if err != nil {
		return fmt.Errorf("model %s: chat_template: %w", cfg.Name, err)
	}
	if src.Origin == TemplateNone {
		s.log.Warn().Str("default_template", DefaultTemplateName).
			Msg("model has no chat template (no chat_template, chat_template_file or tokenizer.chat_template in the GGUF): chat uses the default template; set chat_template_file to choose one")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("model %s: load cancelled: %w", cfg.Name, err)
	}
	cp := engine.ContextParams{
		SeqCtx: seqCtx, Sequences: cfg.Parallel, Batch: cfg.Batch, Threads: cfg.CPUCores,
		FlashAttention: cfg.FlashAttentionOn(), KVType: cfg.KVType,
	}
	sc, err := sched.New(sched.Config{
		Name: cfg.Name, Model: m, Context: cp, QueueSize: cfg.QueueSize,
		TargetLatency: cfg.TargetLatency(), TargetITL: cfg.TargetITL(), StrictITL: cfg.StrictITL, GatherWindow: cfg.GatherWindow.D(),
		PrefillChunk: s.opts.PrefillChunk, StepHook: s.opts.StepHook,
		Fairness: sched.Fairness{FCFS: cfg.Fairness.FCFS(), InputCost: cfg.Fairness.InputCost, OutputCost: cfg.Fairness.OutputCost,
			TenantQueueShare: cfg.Fairness.TenantQueueShare, MaxSlotsShare: cfg.Fairness.MaxSlotsShare, BatchAging: cfg.Fairness.BatchAging.D(),
			NoPreempt: !cfg.Fairness.PreemptOn(), PreemptSwapBytes: cfg.Fairness.PreemptSwapBytes()},
	})
	if err != nil {
		return fmt.Errorf("model %s: %w", cfg.Name, err)
	}
	var emb *sched.Embedder
	if cfg.EmbeddingsEnabled() {
		pooling := cfg.Embeddings
		if pooling == "model" {
			pooling = ""
		}
		pool, err := engine.ParsePooling(pooling)
		if err != nil {
			sc.Close()
			return fmt.Errorf("model %s: embeddings: %w", cfg.Name, err)
		}
		emb = sched.NewEmbedder(m, engine.ContextParams{
			SeqCtx: min(seqCtx, cfg.Batch), Sequences: min(cfg.Parallel, 8), Batch: cfg.Batch,
			Threads: cfg.CPUCores, Embeddings: true, Pooling: pool,
		})
	}
	s.mu.Lock()
	if !s.state.CompareAndSwap(int32(StateLoading), int32(StateReady)) {
		// Closed while loading: nobody will free what the load made, so do it now.
		s.mu.Unlock()
		sc.Close()
		if emb != nil {
			emb.Close()
		}
		return fmt.Errorf("model %s: closed while loading: %w", cfg.Name, context.Canceled)
	}
	s.model, s.sched, s.embed, s.tmpl, s.tmplSrc, s.info = m, sc, emb, tmpl, src, info
	s.progress.Store(1000)
	s.used.Store(int64(info.SizeBytes) + info.KVBytesPerToken(kvtype.Type(cfg.KVType))*int64(sc.SeqCtx()*cfg.Parallel))
	s.lastUsed.Store(time.Now().UnixNano())
	s.idle.Store(false)
	s.mu.Unlock()
	ok = true
	s.log.Info().Str("arch", info.Architecture).Uint64("params", info.Params).Str("size", gib(int64(info.SizeBytes))).
		Int("seq_ctx", sc.SeqCtx()).Str("elapsed", time.Since(start).Round(time.Millisecond).String()).Msg("model ready")
	return nil
}

// chooseTemplate returns the configured template after checking that llama.cpp
// implements it, or the model's own template, or "" when there is none.
func chooseTemplate(m *engine.Model, override string) (string, error) {
	tmpl := override
	if tmpl == "" {
		tmpl = m.Info().ChatTemplate
	}
	if tmpl == "" {
		return "", nil
	}
	probe := []engine.ChatMessage{{Role: "system", Content: "s"}, {Role: "user", Content: "u"}}
	if _, err := m.ApplyChatTemplate(tmpl, probe, true); err != nil {
		if override == "" && errors.Is(err, engine.ErrUnknownTemplate) {
			// The GGUF's own template is one llama.cpp does not implement: the model
			// can still serve completions.
			return "", nil
		}
		return "", err
	}
	return tmpl, nil
}

// Drain stops accepting requests and waits for in-flight ones until ctx ends.
func (s *Service) Drain(ctx context.Context) error {
	// Under the use lock, as Unload: a use that found the service ready ends first (a
	// submission is then in flight, and drained), and later uses see it draining.
	s.use.Lock()
	draining := s.state.CompareAndSwap(int32(StateReady), int32(StateDraining))
	s.use.Unlock()
	if !draining {
		return nil
	}
	if sc := s.Scheduler(); sc != nil {
		return sc.Drain(ctx)
	}
	return nil
}

// Close stops the scheduler (requests still running end with sched.ErrClosed) and
// frees the model. It is safe to call more than once and in any state.
func (s *Service) Close() {
	prev := State(s.state.Swap(int32(StateClosed)))
	s.free(prev)
}

// free stops the scheduler and frees the model once no one uses it; prev is the
// state it was in (the service is no longer ready: no new use begins).
func (s *Service) free(prev State) {
	s.use.Lock()
	s.mu.Lock()
	sc, emb, m := s.sched, s.embed, s.model
	s.sched, s.embed, s.model = nil, nil, nil
	s.mu.Unlock()
	s.use.Unlock()
	if sc != nil {
		sc.Close()
	}
	if emb != nil {
		emb.Close()
	}
	if m != nil {
		m.Close()
		s.used.Store(0)
		s.log.Info().Str("was", prev.String()).Msg("model freed")
	}
}

func gib(n int64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }
