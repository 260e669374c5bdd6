package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
)

// node is a stand-in for another hxp node: an http.Server whose handlers take the
// REST front end's path (decode with openai, call an infer.Service, encode with
// openai) over svc. mode switches it to failing on purpose.
type node struct {
	url  string
	svc  infer.Service
	mode atomic.Value // "ok"; "hangup": closes the connection unanswered; "fail": 500 on everything
	hits atomic.Int64 // inference requests (health checks not counted)

	mu     sync.Mutex
	header http.Header // of the last inference request
	// cancelled receives a request's path when its handler saw its context end
	// before the handler did.
	cancelled chan string
}

// startNode serves svc on a loopback port until the test ends.
func startNode(t testing.TB, svc infer.Service) *node {
	t.Helper()
	n := &node{svc: svc, cancelled: make(chan string, 16)}
	n.mode.Store("ok")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	n.url = "http://" + ln.Addr().String()
	return n
}

func (n *node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	health := r.Method == http.MethodGet
	if !health {
		n.hits.Add(1)
		n.mu.Lock()
		n.header = r.Header.Clone()
		n.mu.Unlock()
	}
	switch n.mode.Load().(string) {
	case "hangup":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case "fail":
		writeError(w, errors.New("the node is broken"))
		return
	}
	ctx := r.Context()
	if health {
		n.card(w, r)
	} else {
		n.serve(ctx, w, r)
	}
	if ctx.Err() != nil {
		n.cancelled <- r.URL.Path
	}
}

func (n *node) lastHeader() http.Header {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.header
}

func (n *node) card(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	for _, m := range n.svc.Models(r.Context()) {
		if m.ID == id {
			writeJSON(w, 200, openai.Card(m))
			return
		}
	}
	writeError(w, infer.ModelNotFound(id))
}

// serve answers an inference request as the REST transport does.
func (n *node) serve(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	lim := openai.Limits{MaxN: 16}
	switch r.URL.Path {
	case "/v1/chat/completions":
		in, err := openai.DecodeChat(body, lim)
		if err != nil {
			writeError(w, err)
			return
		}
		g, err := n.svc.Chat(ctx, &in.ChatRequest)
		answerGeneration(w, g, err, openai.KindChat, in.IncludeUsage, &in.GenParams)
	case "/v1/completions":
		in, err := openai.DecodeCompletion(body, lim)
		if err != nil {
			writeError(w, err)
			return
		}
		g, err := n.svc.Complete(ctx, &in.CompletionRequest)
		answerGeneration(w, g, err, openai.KindCompletion, in.IncludeUsage, &in.GenParams)
	case "/v1/embeddings":
		in, err := openai.DecodeEmbeddings(body)
		if err == nil {
			var e *infer.Embeddings
			if e, err = n.svc.Embed(ctx, &in.EmbedRequest); err == nil {
				writeJSON(w, 200, openai.EmbeddingsResponse(e, in.Base64))
				return
			}
		}
		writeError(w, err)
	case "/tokenize":
		in, err := openai.DecodeTokenize(body)
		if err == nil {
			var tk *infer.Tokens
			if tk, err = n.svc.Tokenize(ctx, in); err == nil {
				writeJSON(w, 200, openai.TokenizeResponseOf(tk))
				return
			}
		}
		writeError(w, err)
	case "/apply-template":
		in, err := openai.DecodeApplyTemplate(body)
		if err == nil {
			var rp *infer.RenderedPrompt
			if rp, err = n.svc.ApplyTemplate(ctx, in); err == nil {
				writeJSON(w, 200, openai.ApplyTemplateResponseOf(rp))
				return
			}
		}
		writeError(w, err)
	case "/detokenize":
		in, err := openai.DecodeDetokenize(body)
		if err == nil {
			var tx *infer.Text
			if tx, err = n.svc.Detokenize(ctx, in); err == nil {
				writeJSON(w, 200, openai.DetokenizeResponse{Prompt: tx.Text})
				return
			}
		}
		writeError(w, err)
	default:
		writeError(w, infer.Errorf(infer.NotFound, "", "no route %s", r.URL.Path))
	}
}

// answerGeneration writes a generation as one response or as server-sent events.
func answerGeneration(w http.ResponseWriter, g *infer.Generation, err error, kind openai.Kind, includeUsage bool, p *infer.GenParams) {
	if err != nil {
		writeError(w, err)
		return
	}
	s := openai.NewStream(kind, g.Served, g.Choices, includeUsage, p.Logprobs)
	if !p.Stream {
		res, err := g.Collect()
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, 200, s.Response(res))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	flusher := w.(http.Flusher)
	send := func(v any) bool {
		b, _ := json.Marshal(v)
		_, err := fmt.Fprintf(w, "data: %s\n\n", b)
		flusher.Flush()
		return err == nil
	}
	defer g.Close()
	for _, c := range s.Start(g.Choices) {
		if !send(c) {
			return
		}
	}
	for ev := range g.Events() {
		if ev.Done && ev.Err != nil {
			_, body := openai.ErrorOf(ev.Err)
			send(body)
			fmt.Fprint(w, "data: [DONE]\n\n")
			return
		}
		if c := s.Delta(&ev); c != nil && !send(c) {
			return
		}
		if ev.Done && !send(s.Finish(&ev)) {
			return
		}
	}
	if includeUsage && !send(s.UsageChunk(g.Summary().Usage)) {
		return
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status, body := openai.ErrorOf(err)
	if e := infer.AsError(err, ""); e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, status, body)
}

// scripted is a node that answers every request with the given raw SSE events (each
// a data payload), or stops after them without [DONE] when cut is set.
func scripted(t testing.TB, events []string, cut bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.WriteHeader(200)
		for _, ev := range events {
			fmt.Fprintf(w, ": a comment\ndata: %s\n\n", ev)
			w.(http.Flusher).Flush()
		}
		if cut {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// closedURL is the URL of a port nothing listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func mustRemote(t testing.TB, url string, models ...string) *Remote {
	t.Helper()
	r, err := NewRemote(RemoteOptions{URL: url, Models: models, Timeout: 30 * time.Second, APIKey: "node-key"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}
