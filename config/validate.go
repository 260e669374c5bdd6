package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/kvtype"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

var (
	logLevels   = []string{"trace", "debug", "info", "warn", "error"}
	logFormats  = []string{"json", "console"}
	embeddingsV = []string{"mean", "cls", "last", "model", "off"}
	toolFormats = []string{"auto", "hermes", "llama3", "mistral", "generic"}
)

// Validate checks every field and returns all problems (nil when the config is valid).
// Defaults must have been applied.
func (c *Config) Validate(opts Options) Problems {
	var ps Problems
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	gwPort := -1
	if _, port, err := splitListen(c.Listen); err != nil {
		add("listen", "%q: %v (want host:port, e.g. \":8000\" or \"127.0.0.1:8000\")", c.Listen, err)
	} else {
		gwPort = port
	}
	if !oneOf(c.Log.Level, logLevels) {
		add("log.level", "%q is not one of %s", c.Log.Level, strings.Join(logLevels, ", "))
	}
	if !oneOf(c.Log.Format, logFormats) {
		add("log.format", "%q is not one of %s", c.Log.Format, strings.Join(logFormats, ", "))
	}
	for _, d := range []struct {
		path string
		v    Duration
	}{{"server.read_timeout", c.Server.ReadTimeout}, {"server.write_timeout", c.Server.WriteTimeout},
		{"server.idle_timeout", c.Server.IdleTimeout}, {"server.shutdown_grace", c.Server.ShutdownGrace}} {
		if d.v < 0 {
			add(d.path, "%s is negative (want a positive duration)", d.v)
		}
	}
	if c.Server.MaxBodyBytes < 1024 || c.Server.MaxBodyBytes > 1<<30 {
		add("server.max_body_bytes", "%d is out of range (1024..1073741824)", c.Server.MaxBodyBytes)
	}
	if c.Server.MaxN < 1 || c.Server.MaxN > MaxN {
		add("server.max_n", "%d is out of range (1..%d)", c.Server.MaxN, MaxN)
	}
	for i, k := range c.Auth.APIKeys {
		if len(k) < 8 || strings.ContainsAny(k, " \t\r\n") {
			// Never echo a key: name its position only.
			add("auth.api_keys", "key %d is shorter than 8 characters or contains whitespace", i+1)
		}
	}

	local := make([]string, 0, len(c.Models))
	for _, m := range c.Models {
		local = append(local, m.Name)
	}
	validateTenancy(add, &c.Auth.KeyAuth, &c.Postgres, &c.Redis, &c.Cache, c.Upstreams, &c.Routing, &c.Server.CORS, &c.Server.TLS,
		local, len(c.Auth.APIKeys))

	if len(c.Models) == 0 && len(c.Upstreams) == 0 {
		// A gateway of a fleet may serve remote upstreams only.
		add("models", "no models configured (add at least one under models: or upstreams:, or use `hxp serve --model NAME=PATH`)")
	}
	names := map[string]int{}
	ports := map[int]string{}
	if gwPort > 0 {
		ports[gwPort] = "listen"
	}
	validateGRPC(add, c.GRPC, ports)
	validateGraphQL(add, c.GraphQL)
	validateResponses(add, c.Responses)
	validateRetrieval(add, c.Retrieval)
	cores := opts.cores()
	totalCores := 0
	for i := range c.Models {
		m := &c.Models[i]
		p := fmt.Sprintf("models[%d]", i)
		if m.Name != "" {
			p = fmt.Sprintf("models[%d] (%s)", i, m.Name)
		}
		f := func(field string) string { return fmt.Sprintf("models[%d].%s", i, field) }
		switch {
		case m.Name == "":
			add(f("name"), "missing (every model needs a name; clients send it as \"model\")")
		case !nameRE.MatchString(m.Name):
			add(f("name"), "%q is not allowed (1-64 of a-z 0-9 . _ -, starting with a letter or digit)", m.Name)
		default:
			if j, dup := names[m.Name]; dup {
				add(f("name"), "%q is already used by models[%d]", m.Name, j)
			}
			names[m.Name] = i
		}
		if m.Path == "" {
			add(f("path"), "missing (the GGUF file to serve)")
		} else if !opts.SkipFiles {
			if msg := checkModelFile(m.Path); msg != "" {
				add(f("path"), "%q: %s", m.Path, msg)
			}
		}
		if m.Port < 0 || m.Port > 65535 {
			add(f("port"), "%d is out of range (1..65535, or 0 for no own listener)", m.Port)
		} else if m.Port > 0 {
			if other, dup := ports[m.Port]; dup {
				add(f("port"), "%d is already used by %s", m.Port, other)
			}
			ports[m.Port] = p
		}
		if m.MemoryLimitGB < 0 || math.IsNaN(m.MemoryLimitGB) || m.MemoryLimitGB > 1<<20 {
			add(f("memory_limit_gb"), "%v is out of range (0 for no limit, or a positive size in GiB)", m.MemoryLimitGB)
		}
		switch {
		case m.CPUCores < 1:
			add(f("cpu_cores"), "%d is out of range (1..%d, this host's cores)", m.CPUCores, cores)
		case m.CPUCores > cores:
			add(f("cpu_cores"), "%d exceeds this host's %d cores", m.CPUCores, cores)
		default:
			totalCores += m.CPUCores
		}
		if m.TargetLatencyMS < 1 || m.TargetLatencyMS > 3_600_000 {
			add(f("target_latency_ms"), "%d is out of range (1..3600000)", m.TargetLatencyMS)
		}
		if m.TargetITLMS < 0 || m.TargetITLMS > m.TargetLatencyMS && m.TargetLatencyMS > 0 {
			add(f("target_itl_ms"), "%d is out of range (0 for target_latency_ms/10, or 1..target_latency_ms=%d)", m.TargetITLMS, m.TargetLatencyMS)
		}
		if m.GatherWindow.D() > MaxGatherWindow {
			add(f("gather_window"), "%s is out of range (a negative duration for none, 0 for 2ms, or up to %s)", m.GatherWindow.D(), MaxGatherWindow)
		}
		if m.Parallel < 1 || m.Parallel > MaxParallel {
			add(f("parallel"), "%d is out of range (1..%d)", m.Parallel, MaxParallel)
		}
		if m.CtxPerSeq < MinCtxPerSeq || m.CtxPerSeq > MaxCtxPerSeq {
			add(f("ctx_per_seq"), "%d is out of range (%d..%d tokens)", m.CtxPerSeq, MinCtxPerSeq, MaxCtxPerSeq)
		}
		if m.Batch < 1 || m.Batch > MaxBatch {
			add(f("batch"), "%d is out of range (1..%d)", m.Batch, MaxBatch)
		} else if m.Batch < m.Parallel {
			add(f("batch"), "%d is below parallel=%d (every running sequence needs a token in each step)", m.Batch, m.Parallel)
		}
		if m.GPULayers < -1 {
			add(f("gpu_layers"), "%d is out of range (-1 for all layers, 0 for none, or a layer count)", m.GPULayers)
		}
		if kv := kvtype.Type(m.KVType); !kv.Valid() {
			add(f("kv_type"), "%q is not one of %s", m.KVType, kvtype.Names())
		} else if kv.NeedsFlashAttention() && !m.FlashAttentionOn() {
			add(f("kv_type"), "%s needs flash_attention: true (llama.cpp quantizes the V cache only with flash attention)", kv)
		}
		if m.QueueSize < 0 || m.QueueSize > 1<<20 {
			add(f("queue_size"), "%d is out of range (0 for 4 per slot, or 1..1048576)", m.QueueSize)
		}
		if !oneOf(m.Embeddings, embeddingsV) {
			add(f("embeddings"), "%q is not one of %s", m.Embeddings, strings.Join(embeddingsV, ", "))
		}
		validateFairness(add, f("fairness"), m.Fairness)
		switch {
		case m.ChatTemplateFile != "" && m.ChatTemplate != "":
			add(f("chat_template_file"), "%q is set together with chat_template %q: set only one (chat_template names a llama.cpp built-in, chat_template_file a Jinja file)", m.ChatTemplateFile, m.ChatTemplate)
		case m.ChatTemplateFile != "" && !opts.SkipFiles:
			if _, err := ReadChatTemplateFile(m.ChatTemplateFile); err != nil {
				add(f("chat_template_file"), "%v", err)
			}
		}
		if !oneOf(m.ToolFormat, toolFormats) {
			add(f("tool_format"), "%q is not one of %s", m.ToolFormat, strings.Join(toolFormats, ", "))
		}
		validateTemplateKwargs(add, f("chat_template_kwargs"), *m)
		validateLifecycle(add, f, *m)
	}
	if totalCores > cores && len(c.Models) > 1 {
		add("models", "cpu_cores add up to %d but this host has %d cores (oversubscribed threads spin-wait and run an order of magnitude slower)", totalCores, cores)
	}
	return ps
}

// validateTemplateKwargs checks a model's chat_template_kwargs as a request's are
// checked, and that a Jinja template will render them.
func validateTemplateKwargs(add func(path, format string, args ...any), path string, m Model) {
	if len(m.ChatTemplateKwargs) == 0 {
		return
	}
	if m.ChatTemplate != "" {
		add(path, "is set with chat_template %q, a llama.cpp built-in that takes no variables: remove one of them (the GGUF's template or a chat_template_file renders them)", m.ChatTemplate)
		return
	}
	if _, err := chat.VarsOf(m.ChatTemplateKwargs); err != nil {
		var ve *chat.VarError
		if errors.As(err, &ve) {
			add(path+"."+ve.Name, "%s", ve.Reason)
			return
		}
		add(path, "%v", err)
	}
}

// splitListen parses host:port and returns the port (0 allowed: any free port).
func splitListen(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errors.New("not host:port")
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not 0..65535", ps)
	}
	return host, port, nil
}

// ReadChatTemplateFile reads a chat template file: a readable regular file of at
// most MaxChatTemplateBytes of UTF-8 text without NUL bytes. The error says what is
// wrong with it, quoting the path.
func ReadChatTemplateFile(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%q: no such file (a Jinja chat template, e.g. the model's chat_template from its tokenizer_config.json)", path)
	}
	if err != nil {
		return "", fmt.Errorf("%q: %w", path, unwrapPathErr(err))
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return "", fmt.Errorf("%q: %w", path, err)
	case !st.Mode().IsRegular():
		return "", fmt.Errorf("%q: not a regular file", path)
	case st.Size() > MaxChatTemplateBytes:
		return "", fmt.Errorf("%q: %d bytes exceed the %d-byte limit of a chat template", path, st.Size(), MaxChatTemplateBytes)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxChatTemplateBytes+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("%q: %w", path, unwrapPathErr(err))
	case len(b) > MaxChatTemplateBytes:
		return "", fmt.Errorf("%q: more than the %d-byte limit of a chat template", path, MaxChatTemplateBytes)
	case len(b) == 0:
		return "", fmt.Errorf("%q: empty (a chat template is Jinja text)", path)
	case !utf8.Valid(b):
		return "", fmt.Errorf("%q: not UTF-8 text", path)
	case bytes.IndexByte(b, 0) >= 0:
		return "", fmt.Errorf("%q: contains a NUL byte (not a text file)", path)
	}
	return string(b), nil
}

// checkModelFile returns "" when path is a readable regular file starting with the
// GGUF magic, or what is wrong with it.
func checkModelFile(path string) string {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "no such file (a test model can be made with `hxp models gen --preset demo --out FILE`)"
	}
	if err != nil {
		return unwrapPathErr(err).Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	if !st.Mode().IsRegular() {
		return "not a regular file"
	}
	var magic [4]byte
	if _, err := f.Read(magic[:]); err != nil || string(magic[:]) != "GGUF" {
		return "not a GGUF file (it does not start with the GGUF magic)"
	}
	return ""
}

func oneOf(s string, allowed []string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
