// Package config reads HXP's YAML configuration, applies HXP_ environment overrides,
// fills defaults and validates the result.
//
// The order is fixed: the YAML file (strict: unknown keys are errors), then the
// environment (see Env), then defaults (see Config.ApplyDefaults), then validation
// (see Config.Validate), which collects every problem and names the field path, the
// bad value and what is allowed, e.g.
//
//	models[1].cpu_cores: 64 exceeds this host's 2 cores
//
// The package has no dependency on the engine: it checks shapes and ranges; what
// needs the model file (its size, trained context) is checked when it is loaded.
package config

import (
	"time"

	"github.com/hxp-ai/hxp/kvtype"
)

// Config is the whole server configuration.
type Config struct {
	// Listen is the gateway's address (host:port). Default ":8000".
	Listen string `yaml:"listen"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Server holds the HTTP limits shared by the gateway and the model listeners.
	Server Server `yaml:"server"`
	// GRPC is the gRPC front end on its own port (default ":8001"; "" turns it off).
	GRPC GRPC `yaml:"grpc"`
	// GraphQL is the GraphQL front end at /graphql on the gateway (on by default).
	GraphQL GraphQL `yaml:"graphql"`
	// Responses is the Responses API's stored conversations (retention, in-process
	// bounds).
	Responses Responses `yaml:"responses"`
	// Retrieval is the files and vector stores API (storage, vector backend, limits).
	Retrieval Retrieval `yaml:"retrieval"`
	// Auth holds API keys: static ones, the key store settings and the admin and
	// node keys. Without any key source the API is open (development).
	Auth Auth `yaml:"auth"`
	// Postgres holds API keys and the usage ledger (optional).
	Postgres Postgres `yaml:"postgres"`
	// Redis shares rate limits and the response cache between gateways (optional).
	Redis Redis `yaml:"redis"`
	// Cache is the response cache of deterministic requests.
	Cache Cache `yaml:"cache"`
	// Upstreams are remote hxp nodes serving models for this gateway.
	Upstreams []Upstream `yaml:"upstreams"`
	// Routing configures retries, health checks, circuit breakers and fallbacks.
	Routing Routing `yaml:"routing"`
	// Models are the served models; each one is an independent model service.
	Models []Model `yaml:"models"`
}

// Log configures zerolog.
type Log struct {
	// Level is trace, debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json (one object per line) or console (human readable). Default json.
	Format string `yaml:"format"`
	// Prompts adds each model request's prompt (messages, prompt or input, up to 4 KiB)
	// to its access-log line. Default false: prompts are user data, and the access log
	// otherwise holds only ids, counts and timings.
	Prompts bool `yaml:"prompts"`
}

// Server holds HTTP limits and lifecycle settings.
type Server struct {
	// ReadTimeout bounds reading one request (headers and body). Default 30s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response; for streams it bounds each chunk, so a
	// long stream lives as long as its client keeps reading. Default 10m.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 2m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxBodyBytes is the largest request body accepted (413 above). Default 8 MiB.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// ShutdownGrace is how long in-flight requests may run after SIGINT/SIGTERM before
	// they are cancelled and the models are freed. Default 30s.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// MaxN is the largest `n` (choices per request) accepted. Default 4.
	MaxN int `yaml:"max_n"`
	// TLS makes every listener serve HTTPS.
	TLS TLS `yaml:"tls"`
	// CORS allows browsers on other origins to call the API.
	CORS CORS `yaml:"cors"`
}

// Auth configures static bearer-token API keys. Keys are secrets: they come from
// a file or the environment (HXP_AUTH_API_KEYS), never from the YAML itself.
type Auth struct {
	// APIKeysFile names a file with one key per line ('#' starts a comment).
	APIKeysFile string `yaml:"api_keys_file"`
	// APIKeys is filled from HXP_AUTH_API_KEYS (comma separated); not read from YAML.
	APIKeys []string `yaml:"-"`
	// KeyAuth holds the rest: required, cache_ttl, keys (hashed), admin and node keys.
	KeyAuth `yaml:",inline"`
}

// Model configures one model service.
type Model struct {
	// Name is the model id clients send in "model". Lowercase letters, digits and
	// "._-", starting with a letter or digit.
	Name string `yaml:"name"`
	// Path is the GGUF file, relative to the working directory unless absolute.
	Path string `yaml:"path"`
	// Port is the model's own listener port; 0 means it is served by the gateway only.
	Port int `yaml:"port"`
	// MemoryLimitGB bounds weights plus KV cache; 0 means no limit. Loads run in
	// parallel while the sum of the loading models' limits fits the host's memory.
	MemoryLimitGB float64 `yaml:"memory_limit_gb"`
	// CPUCores is the number of decode threads. The sum over all models must not exceed
	// the host's cores. Default: the host's cores divided among the models.
	CPUCores int `yaml:"cpu_cores"`
	// TargetLatencyMS is the time-to-first-token target. Default 2000.
	TargetLatencyMS int `yaml:"target_latency_ms"`
	// TargetITLMS is the inter-token latency budget; 0 means target_latency_ms/10.
	TargetITLMS int `yaml:"target_itl_ms"`
	// StrictITL holds target_itl_ms even when prompts wait past target_latency_ms for
	// their first token; by default the scheduler then lets steps grow in proportion
	// to the prompts' lateness (sched.Config.StrictITL).
	StrictITL bool `yaml:"strict_itl"`
	// GatherWindow is how long a request that finds the model idle may wait for the
	// rest of its burst before the first step (sched.Config.GatherWindow): 0 (unset)
	// means 2ms, a negative duration none.
	GatherWindow Duration `yaml:"gather_window"`
	// Parallel is the number of sequences decoded together (slots). Default 4.
	Parallel int `yaml:"parallel"`
	// CtxPerSeq is each slot's context window in tokens. Default 4096 (capped at the
	// model's trained context when it is loaded).
	CtxPerSeq int `yaml:"ctx_per_seq"`
	// Batch is the most tokens per decode step. Default 512.
	Batch int `yaml:"batch"`
	// GPULayers is the number of layers offloaded to the GPU: 0 none, -1 all.
	GPULayers int `yaml:"gpu_layers"`
	// FlashAttention enables flash attention (needed for kv_type q8_0). Unset means
	// on: on the CPU it is about 20% faster at 1 and 16 streams (bench/README.md).
	FlashAttention *bool `yaml:"flash_attention"`
	// KVType is the KV-cache element type: f16 (default), bf16, f32, q8_0 or q4_0
	// (the quantized ones need flash attention); see package kvtype.
	KVType string `yaml:"kv_type"`
	// ChatTemplate overrides the model's chat template: a llama.cpp built-in name
	// (chatml, llama3, phi3, ...) or "" for the template in the GGUF file.
	ChatTemplate string `yaml:"chat_template"`
	// ChatTemplateFile is a Jinja chat template file used instead of the GGUF's own
	// template (UTF-8, at most MaxChatTemplateBytes). Exclusive with chat_template.
	ChatTemplateFile string `yaml:"chat_template_file"`
	// ToolFormat is how the model writes tool calls: auto (detected from its chat
	// template, the default), hermes, llama3, mistral or generic.
	ToolFormat string `yaml:"tool_format"`
	// ChatTemplateKwargs are extra variables of the Jinja chat template (as a
	// request's chat_template_kwargs, which win over these), e.g. enable_thinking:
	// true for DeepSeek-R1 and Qwen3 templates. Keys are identifiers other than the
	// variables the server sets (messages, tools, add_generation_prompt, bos_token,
	// eos_token).
	ChatTemplateKwargs map[string]any `yaml:"chat_template_kwargs"`
	// QueueSize bounds waiting requests (429 above); 0 means 4 per slot.
	QueueSize int `yaml:"queue_size"`
	// Embeddings is the pooling of /v1/embeddings: mean (default), cls, last, model
	// (the GGUF's own), or off to disable the endpoint for this model.
	Embeddings string `yaml:"embeddings"`
	// Fairness shares the model's slots and queue between keys (see Fairness).
	Fairness Fairness `yaml:"fairness"`
	// UnloadAfter frees the model after it has had no request for this long; it stays
	// listed (state unloaded) and its next request loads it again. 0 (the default)
	// keeps it loaded.
	UnloadAfter Duration `yaml:"unload_after"`
	// LoadWait is how long a request for an unloaded model waits for its load before
	// it gets 503 with Retry-After. Default 30s.
	LoadWait Duration `yaml:"load_wait"`
}

// Defaults used by ApplyDefaults.
const (
	DefaultListen          = ":8000"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "json"
	DefaultReadTimeout     = 30 * time.Second
	DefaultWriteTimeout    = 10 * time.Minute
	DefaultIdleTimeout     = 2 * time.Minute
	DefaultMaxBodyBytes    = 8 << 20
	DefaultShutdownGrace   = 30 * time.Second
	DefaultMaxN            = 4
	DefaultTargetLatencyMS = 2000
	DefaultParallel        = 4
	DefaultCtxPerSeq       = 4096
	DefaultBatch           = 512
	DefaultKVType          = string(kvtype.Default)
	DefaultEmbeddings      = "mean"
	DefaultToolFormat      = "auto"
	DefaultLoadWait        = 30 * time.Second
)

// Limits of per-model fields (llama.cpp's own limits where they exist).
const (
	MaxParallel  = 256 // llama.cpp's LLAMA_MAX_SEQ
	MinCtxPerSeq = 16
	MaxCtxPerSeq = 1 << 20
	MaxBatch     = 1 << 16
	// MaxGatherWindow bounds gather_window: a burst arrives within milliseconds, and a
	// lone request on an idle model pays a quarter of the window.
	MaxGatherWindow = 100 * time.Millisecond
	MaxN            = 16
	// MaxChatTemplateBytes bounds a chat_template_file (published templates are a
	// few KiB to a few tens of KiB).
	MaxChatTemplateBytes = 1 << 20
)

// FlashAttentionOn reports whether the model uses flash attention (default on).
func (m Model) FlashAttentionOn() bool { return m.FlashAttention == nil || *m.FlashAttention }

// ApplyDefaults fills unset fields. hostCores divides the host among models whose
// cpu_cores is unset.
func (c *Config) ApplyDefaults(hostCores int) {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *Duration, v time.Duration) {
		if *p == 0 {
			*p = Duration(v)
		}
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Listen, DefaultListen)
	setStr(&c.Log.Level, DefaultLogLevel)
	setStr(&c.Log.Format, DefaultLogFormat)
	setDur(&c.Server.ReadTimeout, DefaultReadTimeout)
	setDur(&c.Server.WriteTimeout, DefaultWriteTimeout)
	setDur(&c.Server.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.Server.ShutdownGrace, DefaultShutdownGrace)
	setInt(&c.Server.MaxBodyBytes, DefaultMaxBodyBytes)
	setInt(&c.Server.MaxN, DefaultMaxN)
	c.GRPC.applyDefaults()
	c.GraphQL.applyDefaults()
	c.Responses.applyDefaults()
	c.Retrieval.applyDefaults()
	tenancyDefaults(&c.Auth.KeyAuth, &c.Postgres, &c.Redis, &c.Cache, &c.Routing)

	// Cores left for models without cpu_cores, shared evenly (at least 1 each).
	unset, used := 0, 0
	for _, m := range c.Models {
		if m.CPUCores == 0 {
			unset++
		} else if m.CPUCores > 0 {
			used += m.CPUCores
		}
	}
	share := 1
	if unset > 0 && hostCores-used > unset {
		share = (hostCores - used) / unset
	}
	for i := range c.Models {
		m := &c.Models[i]
		setInt(&m.CPUCores, share)
		setInt(&m.TargetLatencyMS, DefaultTargetLatencyMS)
		setInt(&m.Parallel, DefaultParallel)
		setInt(&m.CtxPerSeq, DefaultCtxPerSeq)
		setInt(&m.Batch, DefaultBatch)
		setStr(&m.KVType, DefaultKVType)
		setStr(&m.Embeddings, DefaultEmbeddings)
		m.Fairness.applyDefaults()
		setStr(&m.ToolFormat, DefaultToolFormat)
		setDur(&m.LoadWait, DefaultLoadWait)
	}
}

// TargetLatency is the model's time-to-first-token target.
func (m Model) TargetLatency() time.Duration {
	return time.Duration(m.TargetLatencyMS) * time.Millisecond
}

// TargetITL is the model's inter-token latency target (0: the scheduler's default).
func (m Model) TargetITL() time.Duration { return time.Duration(m.TargetITLMS) * time.Millisecond }

// MemoryLimitBytes is MemoryLimitGB in bytes (0: no limit).
func (m Model) MemoryLimitBytes() int64 { return int64(m.MemoryLimitGB * (1 << 30)) }

// EmbeddingsEnabled reports whether the model serves /v1/embeddings.
func (m Model) EmbeddingsEnabled() bool { return m.Embeddings != "off" }
