package route

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
)

// generate posts a streamed generation request and returns its generation once the
// node's first event has arrived.
func (r *Remote) generate(ctx context.Context, path string, body any, model string, choices int, kind openai.Kind) (*infer.Generation, error) {
	start := time.Now()
	gctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	resp, err := r.send(gctx, http.MethodPost, path, body)
	if err != nil {
		cancel()
		return nil, err
	}
	fail := func(err error) (*infer.Generation, error) {
		resp.Body.Close()
		cancel()
		return nil, err
	}
	if !isEventStream(resp) {
		return fail(badAnswer(fmt.Errorf("a stream answered with content type %q", resp.Header.Get("Content-Type"))))
	}
	s := &stream{sse: sseReader{br: bufio.NewReaderSize(resp.Body, 16<<10), max: r.opts.MaxResponseBytes}, kind: kind,
		start: start, done: make([]bool, choices), ttft: make([]time.Duration, choices)}
	first, err := s.sse.next()
	if err != nil {
		return fail(r.failure(gctx, err))
	}
	c, err := decodeChunk(first)
	switch {
	case err != nil:
		return fail(err)
	case c.Error != nil: // refused before any output: the pool may try elsewhere
		return fail(streamError(c.Error))
	}
	return infer.NewGeneration(infer.Served{Model: model}, choices, cancel, func(emit func(infer.Event) bool) infer.Usage {
		defer resp.Body.Close()
		s.emit = emit
		s.relay(c, func(err error) error {
			if gctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return errStreamCut
			}
			return r.failure(gctx, err)
		})
		return s.usage
	}), nil
}

// stream decodes a node's SSE chunks into the events of a generation.
type stream struct {
	sse   sseReader
	kind  openai.Kind
	start time.Time
	emit  func(infer.Event) bool
	done  []bool          // choices ended
	ttft  []time.Duration // per choice, from the call
	usage infer.Usage     // from the usage chunk
}

// relay handles first and the chunks after it until the stream is done or broken, or
// the consumer leaves. Choices the stream leaves unfinished end with an error: the
// node's error event, or broken's classification of a failed read.
func (s *stream) relay(first *chunk, broken func(error) error) {
	c := first
	for {
		if c.Error != nil {
			s.end(streamError(c.Error))
			return
		}
		if !s.handle(c) {
			return
		}
		payload, err := s.sse.next()
		switch {
		case err == nil && string(payload) == "[DONE]":
			s.end(errStreamCut)
			return
		case err != nil:
			s.end(broken(err))
			return
		}
		if c, err = decodeChunk(payload); err != nil {
			s.end(err)
			return
		}
	}
}

// handle emits a chunk's events; false when the consumer left.
func (s *stream) handle(c *chunk) bool {
	if c.Usage != nil {
		s.usage = infer.Usage{PromptTokens: c.Usage.PromptTokens, CompletionTokens: c.Usage.CompletionTokens}
		if d := c.Usage.PromptTokensDetails; d != nil {
			s.usage.CachedTokens = d.CachedTokens
		}
	}
	for _, ch := range c.Choices {
		if ch.Index < 0 || ch.Index >= len(s.done) || s.done[ch.Index] {
			continue
		}
		ev := infer.Event{Choice: ch.Index, Text: ch.Text}
		if s.kind == openai.KindChat {
			ev.Text, ev.Reasoning = deref(ch.Delta.Content), deref(ch.Delta.ReasoningContent)
			for i, tc := range ch.Delta.ToolCalls {
				d := infer.ToolCallDelta{Index: i, ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments}
				if tc.Index != nil {
					d.Index = *tc.Index
				}
				ev.ToolCalls = append(ev.ToolCalls, d)
			}
		}
		ev.Logprobs = logprobsOf(s.kind, ch.Logprobs)
		output := ev.Text != "" || ev.Reasoning != "" || len(ev.ToolCalls) > 0 || len(ev.Logprobs) > 0
		if output && s.ttft[ch.Index] == 0 {
			s.ttft[ch.Index] = time.Since(s.start)
		}
		if ch.FinishReason != nil {
			ev.Done, ev.Finish, ev.TTFT = true, finishOf(*ch.FinishReason), s.ttft[ch.Index]
			if ev.Finish == infer.FinishStop {
				ev.StopSequence = stopString(ch.StopReason)
			}
			s.done[ch.Index] = true
		}
		if !ev.Done && !output {
			continue
		}
		if !s.emit(ev) {
			return false
		}
	}
	return true
}

// errStreamCut ends the choices of a stream that ended before they finished.
var errStreamCut = &infer.Error{Kind: infer.UpstreamFailed, Code: "upstream_stream_cut",
	Message: "the upstream node's stream ended before the choice finished"}

// end ends every unfinished choice with err.
func (s *stream) end(err error) {
	for i, d := range s.done {
		if !d {
			s.done[i] = true
			if !s.emit(infer.Event{Choice: i, Done: true, TTFT: s.ttft[i], Err: err}) {
				return
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// chunk is a streamed chat or completion chunk, or an error event.
type chunk struct {
	Choices []struct {
		Index        int              `json:"index"`
		Delta        openai.ChatDelta `json:"delta"` // chat
		Text         string           `json:"text"`  // completions
		Logprobs     json.RawMessage  `json:"logprobs"`
		FinishReason *string          `json:"finish_reason"`
		// StopReason is the matched stop string (vLLM also sends a stop token's id
		// here: not a string, so not a stop string).
		StopReason json.RawMessage `json:"stop_reason"`
	} `json:"choices"`
	Usage *openai.Usage       `json:"usage"`
	Error *openai.ErrorObject `json:"error"`
}

func decodeChunk(payload []byte) (*chunk, error) {
	c := &chunk{}
	if err := json.Unmarshal(payload, c); err != nil {
		return nil, badAnswer(fmt.Errorf("stream event: %w", err))
	}
	return c, nil
}

// statusOfType is the HTTP status of an OpenAI error type: an error event in a stream
// carries no status of its own.
var statusOfType = map[string]int{
	openai.TypeInvalidRequest: 400, openai.TypeAuthentication: 401, openai.TypePermission: 403, openai.TypeNotFound: 404,
	openai.TypeRateLimit: 429, openai.TypeQuota: 429, openai.TypeUnavailable: 503, openai.TypeServer: 500,
}

// streamError is the core's error of a stream's error event.
func streamError(o *openai.ErrorObject) *infer.Error {
	status, ok := statusOfType[o.Type]
	if !ok {
		status = 500
	}
	return openai.ErrorFrom(status, openai.ErrorBody{Error: *o})
}

// stopString is the stop string of a chunk's stop_reason, or "".
func stopString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func finishOf(reason string) infer.FinishReason {
	switch reason {
	case "length":
		return infer.FinishLength
	case "tool_calls":
		return infer.FinishToolCalls
	}
	return infer.FinishStop
}

// logprobsOf decodes a chunk choice's logprobs: chat's carry each token's bytes;
// the legacy format of completions has only token texts (bytes that are not UTF-8 on
// their own arrive as U+FFFD) and unordered alternatives, sorted here by logprob.
func logprobsOf(kind openai.Kind, raw json.RawMessage) []infer.TokenLogprob {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var out []infer.TokenLogprob
	if kind == openai.KindChat {
		var lp openai.ChatLogprobs
		if json.Unmarshal(raw, &lp) != nil {
			return nil
		}
		for _, t := range lp.Content {
			e := infer.TokenLogprob{Bytes: tokenBytes(t.Bytes, t.Token), Logprob: float32(t.Logprob)}
			for _, alt := range t.TopLogprobs {
				e.Top = append(e.Top, infer.TopLogprob{Bytes: tokenBytes(alt.Bytes, alt.Token), Logprob: float32(alt.Logprob)})
			}
			out = append(out, e)
		}
		return out
	}
	var lp openai.CompletionLogprobs
	if json.Unmarshal(raw, &lp) != nil || len(lp.TokenLogprobs) != len(lp.Tokens) {
		return nil
	}
	for i, tok := range lp.Tokens {
		e := infer.TokenLogprob{Bytes: []byte(tok), Logprob: float32(lp.TokenLogprobs[i])}
		if i < len(lp.TopLogprobs) {
			for alt, v := range lp.TopLogprobs[i] {
				e.Top = append(e.Top, infer.TopLogprob{Bytes: []byte(alt), Logprob: float32(v)})
			}
			slices.SortFunc(e.Top, func(a, b infer.TopLogprob) int {
				if a.Logprob != b.Logprob {
					if a.Logprob > b.Logprob {
						return -1
					}
					return 1
				}
				return bytes.Compare(a.Bytes, b.Bytes)
			})
		}
		out = append(out, e)
	}
	return out
}

// tokenBytes are a token's raw bytes, or its text when the node sent none.
func tokenBytes(ints []int, text string) []byte {
	if ints == nil {
		return []byte(text)
	}
	b := make([]byte, len(ints))
	for i, v := range ints {
		b[i] = byte(v)
	}
	return b
}

// sseReader reads server-sent events.
type sseReader struct {
	br  *bufio.Reader
	max int // bytes per event
}

// next returns the data of the next event (its data lines joined by newlines),
// skipping comments and other fields. A stream that ends inside an event is
// io.ErrUnexpectedEOF; one that ends between events, io.EOF.
func (s *sseReader) next() ([]byte, error) {
	var data []byte
	has := false
	for {
		line, err := s.line()
		if err == io.EOF && has {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if has {
				return data, nil
			}
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) != "data" {
			continue // a comment (empty field), event, id or retry
		}
		if has {
			data = append(data, '\n')
		}
		data, has = append(data, bytes.TrimPrefix(value, []byte(" "))...), true
		if len(data) > s.max {
			return nil, fmt.Errorf("stream event larger than %d bytes", s.max)
		}
	}
}

// line reads one line without its end of line.
func (s *sseReader) line() ([]byte, error) {
	var line []byte
	for {
		frag, err := s.br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > s.max+8 {
			return nil, fmt.Errorf("stream line longer than %d bytes", s.max)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), nil
	}
}
