package server

import (
	"encoding/json"
	"strings"

	"github.com/valyala/fasthttp"
)

// Scope keeps a tenant to its allowed models on every route: a model request for
// another model gets the same 404 as a model that does not exist (so a key cannot
// probe which models the server has), GET /v1/models lists only the allowed models
// and GET /v1/models/ID of another model is a 404. Requests without a tenant pass.
type Scope struct {
	// DefaultModel is the model of requests without one (a model's own listener);
	// "" on the gateway, where the router refuses them.
	DefaultModel string
}

// Name implements Middleware.
func (Scope) Name() string { return "scope" }

// Wrap implements Middleware.
func (s Scope) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		t := TenantOf(ctx)
		if t == nil || len(t.Models) == 0 {
			next(ctx)
			return
		}
		if m := metaOf(ctx); m != nil {
			model := m.model
			if model == "" {
				model = s.DefaultModel
			}
			if !m.bad && model != "" && !t.AllowsModel(model) {
				writeError(ctx, modelNotFound(model), "")
				return
			}
			next(ctx)
			return
		}
		path := string(ctx.Path())
		switch {
		case !ctx.IsGet() && !ctx.IsHead():
			next(ctx)
		case path == "/v1/models":
			next(ctx)
			filterModelList(ctx, t)
		case strings.HasPrefix(path, "/v1/models/"):
			if id := strings.TrimPrefix(path, "/v1/models/"); !t.AllowsModel(id) {
				writeError(ctx, modelNotFound(id), "")
				return
			}
			next(ctx)
		default:
			next(ctx)
		}
	}
}

// filterModelList removes the models t may not use from a /v1/models response.
func filterModelList(ctx *fasthttp.RequestCtx, t *Tenant) {
	if ctx.Response.StatusCode() != fasthttp.StatusOK || ctx.Response.IsBodyStream() {
		return
	}
	var list ModelList
	if err := json.Unmarshal(ctx.Response.Body(), &list); err != nil {
		writeError(ctx, err, "")
		return
	}
	kept := list.Data[:0]
	for _, c := range list.Data {
		if t.AllowsModel(c.ID) {
			kept = append(kept, c)
		}
	}
	list.Data = kept
	writeJSON(ctx, fasthttp.StatusOK, list)
}
