package rest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/responses"
)

// The OpenAI Responses API over the same core as chat completions: package responses
// decodes the body, the stored conversation of previous_response_id (the caller's
// own, from Options.Responses) becomes the history, the service answers the chat
// request, and one responses.Builder renders the response or its events. Errors are
// OpenAI error objects; a response of another key is 404 as an unknown one is.

// Responses endpoints.
const (
	pathResponses  = "/v1/responses"
	pathResponseID = "/v1/responses/" // {id} and {id}/input_items
	inputItemsPath = "/input_items"
)

// Default bounds of the in-process response store (Options.Responses unset).
const (
	defaultStoredResponses     = 10000
	defaultStoredResponseBytes = 256 << 20
)

// callerID is the id of the key of c, or "" without auth: a stored response's owner.
func callerID(c context.Context) string {
	if caller := infer.CallerFrom(c); caller != nil {
		return caller.ID
	}
	return ""
}

// storeErr turns a store's ErrNotFound into the client's 404 for id.
func storeErr(err error, id, param string) error {
	if errors.Is(err, responses.ErrNotFound) {
		e := responses.NotFound(id)
		e.Param = param
		return e
	}
	return &infer.Error{Kind: infer.Unavailable, Code: "response_store_unavailable",
		Message: "the response store cannot answer now; retry later", RetryAfter: time.Second, Err: err}
}

// createResponse serves POST /v1/responses.
func (s *Server) createResponse(ctx *fasthttp.RequestCtx) {
	in, err := responses.Decode(ctx.PostBody())
	if err == nil {
		in.Model, err = s.resolve(ctx, in.Model)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	c, cancel := s.context(ctx)
	var history []responses.Item
	if in.PreviousResponseID != "" {
		prev, err := s.opts.Responses.Get(c, in.PreviousResponseID, callerID(c))
		if err != nil {
			cancel()
			writeError(ctx, storeErr(err, in.PreviousResponseID, "previous_response_id"))
			return
		}
		history = prev.History()
	}
	req, err := responses.Chat(in, history, s.lim)
	var search *fileSearched
	if err == nil {
		search, err = s.fileSearch(c, in, history, req)
	}
	if err != nil {
		cancel()
		writeError(ctx, err)
		return
	}
	g, err := s.svc.Chat(c, req)
	if err != nil {
		cancel()
		writeError(ctx, in.RenameParam(err, history, req))
		return
	}
	s.served(ctx, &g.Served, in.Model)
	model := g.Model
	if model == "" {
		model = in.Model
	}
	rs := &responseRun{s: s, in: in, g: g, cancel: cancel, caller: callerID(c), input: append(history, in.Items...),
		b: responses.NewBuilder(in, responses.NewID(), g.Created, model), search: search}
	if in.Stream {
		rs.stream(ctx)
		return
	}
	rs.collect(ctx)
}

// responseRun is one POST /v1/responses being answered.
type responseRun struct {
	s      *Server
	in     *responses.Input
	g      *infer.Generation
	cancel context.CancelFunc
	caller string
	input  []responses.Item
	b      *responses.Builder
	search *fileSearched // the file_search tool's search, or nil
}

// feed passes the generation's events to the builder and send; it returns the
// first choice's error and finish reason.
func (r *responseRun) feed(send func([]responses.Event) bool) (infer.FinishReason, error) {
	finish := infer.FinishStop
	for ev := range r.g.Events() {
		if ev.Choice != 0 {
			continue
		}
		if ev.Done && ev.Err != nil {
			return finish, ev.Err
		}
		if !send(r.b.Next(&ev)) {
			return finish, infer.ErrClientGone
		}
		if ev.Done {
			finish = ev.Finish
		}
	}
	return finish, nil
}

// save stores the finished response when the request asked for it.
func (r *responseRun) save(c context.Context) error {
	if !r.in.Store {
		return nil
	}
	resp := r.b.Response()
	rec := &responses.Record{ID: resp.ID, Caller: r.caller, Created: time.Unix(resp.CreatedAt, 0), Input: withIDs(r.input),
		Response: *resp}
	return r.s.opts.Responses.Put(c, rec)
}

// withIDs gives input items without an id one, as OpenAI lists them.
func withIDs(items []responses.Item) []responses.Item {
	out := slices.Clone(items)
	for i := range out {
		if out[i].ID == "" {
			out[i].ID = map[string]string{responses.TypeFunctionCall: "fc_", responses.TypeFunctionCallOutput: "fco_",
				responses.TypeReasoning: "rs_"}[out[i].Type]
			if out[i].ID == "" {
				out[i].ID = "msg_"
			}
			out[i].ID += strings.TrimPrefix(responses.NewID(), "resp_")
		}
	}
	return out
}

// collect answers with the whole response object.
func (r *responseRun) collect(ctx *fasthttp.RequestCtx) {
	defer r.cancel()
	var left atomic.Bool
	stop := watchPeer(ctx.Conn(), peerCheckEvery, func() { left.Store(true); r.g.Close() })
	r.searched()
	finish, err := r.feed(func([]responses.Event) bool { return true })
	stop()
	sum := r.g.Summary()
	infoOf(ctx).record(sum)
	switch {
	case left.Load():
		writeError(ctx, infer.ErrClientGone)
		return
	case err != nil:
		writeError(ctx, err)
		return
	}
	r.b.End(sum.Usage, finish)
	if err := r.save(context.Background()); err != nil {
		r.s.opts.Log.Error().Err(err).Str("response_id", r.b.Response().ID).Msg("store response")
		writeError(ctx, storeErr(err, r.b.Response().ID, ""))
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, r.b.Response())
}

// stream answers with the Responses API's Server-Sent Events; the response is stored
// before its last event is sent, so a client may continue it as soon as it has read
// the stream.
func (r *responseRun) stream(ctx *fasthttp.RequestCtx) {
	info := infoOf(ctx)
	startSSE(ctx, info)
	conn := ctx.Conn()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer watchPeer(conn, peerCheckEvery, r.g.Close)()
		sse := &sseWriter{w: w, conn: conn, timeout: r.s.opts.WriteTimeout}
		send := func(evs []responses.Event) bool {
			for _, e := range evs {
				if sse.typed(e.Type, e) != nil {
					return false
				}
			}
			return true
		}
		defer func() {
			if p := recover(); p != nil {
				send([]responses.Event{r.b.Fail(fmt.Errorf("stream panic: %v", p))})
			}
			r.g.Close() // the client may be gone: stop generating
			r.cancel()
			if info != nil {
				info.record(r.g.Summary())
				info.FinishRequest()
			}
		}()
		if !send(r.b.Start()) || !send(r.searched()) {
			return
		}
		finish, err := r.feed(send)
		if err != nil {
			e := infer.AsError(err, "")
			if e.Kind == infer.Cancelled { // we cancelled: the client left
				return
			}
			if info != nil {
				info.ErrCode, info.ErrStatus = e.Code, e.Kind.HTTPStatus()
			}
			send([]responses.Event{r.b.Fail(e)})
			return
		}
		last := r.b.End(r.g.Summary().Usage, finish)
		if err := r.save(context.Background()); err != nil {
			r.s.opts.Log.Error().Err(err).Str("response_id", r.b.Response().ID).Msg("store response")
			send(append(last[:len(last)-1], r.b.Fail(storeErr(err, r.b.Response().ID, ""))))
			return
		}
		send(last)
	})
}

// typed sends one event of the Responses framing: "event: TYPE" and its data.
func (s *sseWriter) typed(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.w.WriteString("event: " + name + "\n")
	return s.data(b)
}

// responseByID serves GET and DELETE /v1/responses/{id} and GET
// /v1/responses/{id}/input_items for the caller's own responses.
func (s *Server) responseByID(ctx *fasthttp.RequestCtx) {
	id := strings.TrimPrefix(string(ctx.Path()), pathResponseID)
	id, items := strings.CutSuffix(id, inputItemsPath)
	c, cancel := s.context(ctx)
	defer cancel()
	caller := callerID(c)
	switch {
	case string(ctx.Method()) == fasthttp.MethodDelete && !items:
		if err := s.opts.Responses.Delete(c, id, caller); err != nil {
			writeError(ctx, storeErr(err, id, "id"))
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, responses.Deleted{ID: id, Object: "response.deleted", Deleted: true})
	case string(ctx.Method()) == fasthttp.MethodDelete:
		writeError(ctx, &infer.Error{Kind: infer.NotFound, Code: "unknown_url", Message: "Invalid URL (DELETE " + string(ctx.Path()) + ")"})
	default:
		rec, err := s.opts.Responses.Get(c, id, caller)
		if err != nil {
			writeError(ctx, storeErr(err, id, "id"))
			return
		}
		if !items {
			writeJSON(ctx, fasthttp.StatusOK, rec.Response)
			return
		}
		list, err := itemList(rec.Input, string(ctx.QueryArgs().Peek("order")))
		if err != nil {
			writeError(ctx, err)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, list)
	}
}

// itemList is the input items in order "desc" (OpenAI's default, newest first) or
// "asc".
func itemList(items []responses.Item, order string) (*responses.ItemList, error) {
	switch order {
	case "", "desc":
		items = slices.Clone(items)
		slices.Reverse(items)
	case "asc":
	default:
		return nil, infer.Invalid("order", "order must be asc or desc, got %q", order)
	}
	l := &responses.ItemList{Object: "list", Data: items}
	if len(items) > 0 {
		l.FirstID, l.LastID = &items[0].ID, &items[len(items)-1].ID
	}
	return l, nil
}
