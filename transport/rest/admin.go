package rest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

// AdminRoutes are the admin API's routes over the tenancy's key administration
// (none when a is nil: no admin key configured):
//
//	GET    /admin/keys           list keys (never their secrets)
//	POST   /admin/keys           create a key: a postgres.KeySpec; the answer holds the key once
//	GET    /admin/keys/ID        one key
//	DELETE /admin/keys/ID        revoke a key
//	GET    /admin/usage          usage per key and model; query key_id, model, since, until (RFC 3339)
func AdminRoutes(a *tenancy.Admin, log zerolog.Logger) []Route {
	if a == nil {
		return nil
	}
	h := &adminHandlers{a: a, log: log}
	return []Route{
		{Method: "GET", Path: "/admin/keys", Handler: h.guard(h.listKeys)},
		{Method: "POST", Path: "/admin/keys", Handler: h.guard(h.createKey)},
		{Method: "GET", Path: "/admin/keys/", Handler: h.guard(h.getKey)},
		{Method: "DELETE", Path: "/admin/keys/", Handler: h.guard(h.revokeKey)},
		{Method: "GET", Path: "/admin/usage", Handler: h.guard(h.usage)},
	}
}

type adminHandlers struct {
	a   *tenancy.Admin
	log zerolog.Logger
}

// guard checks the admin key before the handler runs.
func (h *adminHandlers) guard(next func(ctx *fasthttp.RequestCtx, c context.Context)) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		key, ok := bearerToken(&ctx.Request.Header)
		if !ok || !h.a.Authorize(key) {
			h.log.Warn().Str("path", string(ctx.Path())).Str("remote", ctx.RemoteIP().String()).Msg("admin API: refused key")
			writeError(ctx, &infer.Error{Kind: infer.Unauthenticated, Code: "invalid_api_key", Message: "invalid admin key"})
			return
		}
		next(ctx, context.Background())
	}
}

func keyIDOfPath(ctx *fasthttp.RequestCtx) string {
	return strings.TrimPrefix(string(ctx.Path()), "/admin/keys/")
}

func (h *adminHandlers) listKeys(ctx *fasthttp.RequestCtx, c context.Context) {
	keys, err := h.a.ListKeys(c)
	if err != nil {
		writeError(ctx, err)
		return
	}
	if keys == nil {
		keys = []postgres.Key{}
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"object": "list", "data": keys})
}

func (h *adminHandlers) createKey(ctx *fasthttp.RequestCtx, c context.Context) {
	var spec postgres.KeySpec
	if err := openai.Unmarshal(ctx.PostBody(), &spec); err != nil {
		writeError(ctx, err)
		return
	}
	k, err := h.a.CreateKey(c, spec)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusCreated, k)
}

func (h *adminHandlers) getKey(ctx *fasthttp.RequestCtx, c context.Context) {
	k, err := h.a.GetKey(c, keyIDOfPath(ctx))
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, k)
}

func (h *adminHandlers) revokeKey(ctx *fasthttp.RequestCtx, c context.Context) {
	k, err := h.a.RevokeKey(c, keyIDOfPath(ctx))
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, k)
}

func (h *adminHandlers) usage(ctx *fasthttp.RequestCtx, c context.Context) {
	q := ctx.QueryArgs()
	f := postgres.UsageFilter{KeyID: string(q.Peek("key_id")), Model: string(q.Peek("model"))}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Peek(p.name); len(v) > 0 {
			t, err := time.Parse(time.RFC3339, string(v))
			if err != nil {
				writeError(ctx, infer.Invalid(p.name, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %s", p.name, strconv.Quote(string(v))))
				return
			}
			*p.dst = t
		}
	}
	if f.Since.IsZero() && f.Until.IsZero() && len(q.Peek("all")) == 0 {
		now := time.Now().UTC()
		f.Since = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC) // this month by default
	}
	rep, err := h.a.Usage(c, f)
	if err != nil {
		writeError(ctx, err)
		return
	}
	if rep.Data == nil {
		rep.Data = []postgres.UsageSummary{}
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"object": "usage", "since": timeOrNil(rep.Since), "until": timeOrNil(rep.Until),
		"data": rep.Data, "total": rep.Total})
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// ModelAdmin is the model lifecycle behind the admin API's model routes; app.App
// implements it. Errors are *infer.Error; those wrapping service.ErrExists answer
// 409 and those wrapping service.ErrDoesNotFit 507.
type ModelAdmin interface {
	// ModelStates describes every model service.
	ModelStates() []service.Status
	// AddModel validates, plans and starts loading a model entry.
	AddModel(ctx context.Context, m config.Model) (service.Status, error)
	// RemoveModel drains, frees and forgets a model.
	RemoveModel(ctx context.Context, name string) (service.Status, error)
	// Reload re-reads the config file and applies what changed.
	Reload(ctx context.Context) (config.Changes, error)
}

// ModelAdminRoutes are the admin API's model routes, guarded by the admin key like
// AdminRoutes (none when a is nil: no admin key configured):
//
//	GET    /admin/models         every model: state, memory, slots, queue, port
//	POST   /admin/models         load a model: one entry of the config's models: list (JSON or YAML); 202
//	DELETE /admin/models/NAME    stop admitting, finish in flight within server.shutdown_grace, free
//	POST   /admin/reload         re-read the config file and apply the difference
func ModelAdminRoutes(a *tenancy.Admin, m ModelAdmin, log zerolog.Logger) []Route {
	if a == nil || m == nil {
		return nil
	}
	h := &adminHandlers{a: a, log: log}
	mh := &modelHandlers{m: m}
	return []Route{
		{Method: "GET", Path: "/admin/models", Handler: h.guard(mh.list)},
		{Method: "POST", Path: "/admin/models", Handler: h.guard(mh.add)},
		{Method: "DELETE", Path: "/admin/models/", Handler: h.guard(mh.remove)},
		{Method: "POST", Path: "/admin/reload", Handler: h.guard(mh.reload)},
	}
}

type modelHandlers struct{ m ModelAdmin }

func (h *modelHandlers) list(ctx *fasthttp.RequestCtx, _ context.Context) {
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"object": "list", "data": h.m.ModelStates()})
}

func (h *modelHandlers) add(ctx *fasthttp.RequestCtx, c context.Context) {
	entry, err := config.ParseModel(ctx.PostBody())
	if err != nil {
		writeError(ctx, infer.Invalid("", "%v", err))
		return
	}
	st, err := h.m.AddModel(c, entry)
	if err != nil {
		writeLifecycleError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusAccepted, st)
}

func (h *modelHandlers) remove(ctx *fasthttp.RequestCtx, c context.Context) {
	st, err := h.m.RemoveModel(c, strings.TrimPrefix(string(ctx.Path()), "/admin/models/"))
	if err != nil {
		writeLifecycleError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, st)
}

func (h *modelHandlers) reload(ctx *fasthttp.RequestCtx, c context.Context) {
	ch, err := h.m.Reload(c)
	if err != nil {
		writeLifecycleError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, ch)
}

// writeLifecycleError answers a model lifecycle error: 409 for a name already served,
// 507 for a model that does not fit, else the kind's status.
func writeLifecycleError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, service.ErrExists):
		err = &statusError{status: fasthttp.StatusConflict, err: infer.AsError(err, "")}
	case errors.Is(err, service.ErrDoesNotFit):
		err = &statusError{status: fasthttp.StatusInsufficientStorage, err: infer.AsError(err, "")}
	}
	writeError(ctx, err)
}
