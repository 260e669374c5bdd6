package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// A generation is one request's choices (prompts x n) running in the scheduler.
// Chat and completions share it; a formatter turns its events into their wire format.

// formatter renders one endpoint's responses.
type formatter interface {
	// startChunks are sent before any output (chat: each choice's role).
	startChunks(n int) []any
	// deltaChunk is the chunk for new output of choice idx, or nil when there is none.
	deltaChunk(idx int, ev *sched.Event) (any, error)
	// finishChunk ends choice idx.
	finishChunk(idx int, reason string) any
	// usageChunk is the last chunk with stream_options.include_usage.
	usageChunk(u *Usage) any
	// response is the non-streamed response.
	response(choices []choiceResult, u *Usage) (any, error)
}

// choiceResult is the collected output of one choice.
type choiceResult struct {
	text     strings.Builder
	logprobs []sched.TokenLogprob
	finish   sched.FinishReason
	usage    sched.Usage
	ttft     time.Duration
	err      error
}

// indexed is an event of choice idx.
type indexed struct {
	idx int
	ev  sched.Event
}

type generation struct {
	cancel  context.CancelFunc
	chans   []<-chan sched.Event
	n       int // choices per prompt
	prompts int
}

// startGeneration submits every choice. When one submission fails, the ones already
// running are cancelled and the error returned.
func startGeneration(b Backend, p *genParams, prompts [][]engine.Token) (*generation, error) {
	ctx, cancel := context.WithCancel(context.Background())
	g := &generation{cancel: cancel, n: p.N, prompts: len(prompts)}
	for _, toks := range prompts {
		for j := 0; j < p.N; j++ {
			s := p.Sampling
			s.Seed += uint32(j) // distinct choices from one seed, reproducibly
			ch, err := b.Submit(ctx, sched.Request{
				Prompt: toks, MaxTokens: p.MaxTokens, Sampling: s, Stop: p.Stop,
				Logprobs: p.Logprobs, TopLogprobs: p.TopLogprobs,
			})
			if err != nil {
				g.abandon()
				return nil, err
			}
			g.chans = append(g.chans, ch)
		}
	}
	return g, nil
}

// abandon cancels every choice and drains their channels in the background.
func (g *generation) abandon() {
	g.cancel()
	for _, ch := range g.chans {
		go func() {
			for range ch {
			}
		}()
	}
	g.chans = nil
}

// merge interleaves the choices' events in arrival order; the channel closes after
// every choice's final event.
func (g *generation) merge() <-chan indexed {
	out := make(chan indexed, len(g.chans))
	var wg sync.WaitGroup
	for i, ch := range g.chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				out <- indexed{idx: i, ev: ev}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// usage sums the choices: prompt tokens once per prompt, completion tokens of all.
func (g *generation) usage(final []sched.Usage) *Usage {
	u := &Usage{}
	cached := 0
	for i, f := range final {
		if i%g.n == 0 {
			u.PromptTokens += f.PromptTokens
			cached += f.CachedTokens
		}
		u.CompletionTokens += f.CompletionTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: cached}
	return u
}

// finishReason maps the scheduler's reason to OpenAI's.
func finishReason(f sched.FinishReason) string {
	if f == sched.FinishLength {
		return "length"
	}
	return "stop"
}

// run answers the request: a stream when p.Stream, else one JSON response. param is
// the request field that generation errors are blamed on.
func (l *Local) run(ctx *fasthttp.RequestCtx, g *generation, p *genParams, f formatter, param string) {
	info := infoOf(ctx)
	if !p.Stream {
		defer g.cancel()
		var left atomic.Bool
		stop := watchPeer(ctx.Conn(), peerCheckEvery, func() { left.Store(true); g.cancel() })
		results := make([]choiceResult, len(g.chans))
		finals := make([]sched.Usage, len(g.chans))
		for ie := range g.merge() {
			r := &results[ie.idx]
			r.text.WriteString(ie.ev.Text)
			r.logprobs = append(r.logprobs, ie.ev.Logprobs...)
			if ie.ev.Done {
				r.finish, r.usage, r.ttft, r.err = ie.ev.Finish, ie.ev.Usage, ie.ev.TimeToFirstToken, ie.ev.Err
				finals[ie.idx] = ie.ev.Usage
			}
		}
		stop()
		if left.Load() {
			recordUsage(info, g.usage(finals), results[0].ttft, "")
			writeError(ctx, errClientGone, "")
			return
		}
		for _, r := range results {
			if r.err != nil {
				writeError(ctx, r.err, param)
				return
			}
		}
		u := g.usage(finals)
		recordUsage(info, u, results[0].ttft, finishReason(results[0].finish))
		resp, err := f.response(results, u)
		if err != nil {
			writeError(ctx, err, param)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, resp)
		return
	}

	startSSE(ctx, info)
	conn := ctx.Conn()
	merged := g.merge()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		// A client that leaves before the first token (queued, or while its prompt is
		// evaluated) is noticed here; later, a failed write notices it too.
		defer watchPeer(conn, peerCheckEvery, g.cancel)()
		sse := &sseWriter{w: w, conn: conn, timeout: l.writeTimeout}
		finals := make([]sched.Usage, len(g.chans))
		var ttft time.Duration
		finish := ""
		defer func() {
			if p := recover(); p != nil {
				_ = sse.event(toAPIError(fmt.Errorf("stream panic: %v", p), "").body())
			}
			// The client may be gone: stop generating and let the choices end.
			g.cancel()
			go func() {
				for range merged {
				}
			}()
			if info != nil {
				recordUsage(info, g.usage(finals), ttft, finish)
				info.FinishRequest()
			}
		}()
		for _, c := range f.startChunks(len(g.chans)) {
			if sse.event(c) != nil {
				return
			}
		}
		for ie := range merged {
			ev := &ie.ev
			if ev.Done && ev.Err != nil {
				ae := toAPIError(ev.Err, param)
				if info != nil {
					info.ErrType, info.ErrCode, info.ErrStatus = ae.Type, ae.Code, ae.Status
				}
				_ = sse.event(ae.body())
				_ = sse.done()
				return
			}
			c, err := f.deltaChunk(ie.idx, ev)
			if err != nil {
				_ = sse.event(toAPIError(err, param).body())
				return
			}
			if c != nil && sse.event(c) != nil {
				return
			}
			if ev.Done {
				if ev.Finish == sched.FinishCancelled { // we cancelled: the client left
					return
				}
				finals[ie.idx] = ev.Usage
				if ie.idx == 0 {
					ttft, finish = ev.TimeToFirstToken, finishReason(ev.Finish)
				}
				if sse.event(f.finishChunk(ie.idx, finishReason(ev.Finish))) != nil {
					return
				}
			}
		}
		if p.IncludeUsage {
			if sse.event(f.usageChunk(g.usage(finals))) != nil {
				return
			}
		}
		_ = sse.done()
	})
}

func recordUsage(info *RequestInfo, u *Usage, ttft time.Duration, finish string) {
	if info == nil {
		return
	}
	info.PromptTokens, info.CompletionTokens, info.TTFT, info.Finish = u.PromptTokens, u.CompletionTokens, ttft, finish
	if u.PromptTokensDetails != nil {
		info.CachedTokens = u.PromptTokensDetails.CachedTokens
	}
}

// usageField renders the usage member of a chunk: absent without include_usage,
// null on ordinary chunks with it.
func usageField(include bool, u *Usage) json.RawMessage {
	if !include {
		return nil
	}
	if u == nil {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(u)
	return b
}
