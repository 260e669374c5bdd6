package server

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/valyala/fasthttp"
)

// Tenant is the caller a request was authenticated as: one API key and what it may
// do. Links after KeyAuth read it with TenantOf; a request on a listener without
// auth has none.
type Tenant struct {
	// ID is the key's public id: safe to log, used in the ledger and limiter keys.
	ID string
	// Name is the key's human label.
	Name string
	// Models are the models the key may use; empty allows every model.
	Models []string
	// RPM and TPM are the requests and tokens per minute allowed per model; 0 is
	// unlimited.
	RPM, TPM int64
	// Budget is the monthly token budget (prompt plus completion tokens, calendar month
	// in UTC); 0 is unlimited.
	Budget int64
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// Internal marks a node-to-node key (one gateway calling another hxp node): its
	// requests are neither limited nor recorded, because the gateway that received the
	// client's request already did both.
	Internal bool
}

// AllowsModel reports whether the tenant may use model.
func (t *Tenant) AllowsModel(model string) bool {
	return t == nil || len(t.Models) == 0 || slices.Contains(t.Models, model)
}

// expired reports whether the key has expired at now.
func (t *Tenant) expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

const tenantKey = "hxp.tenant"

// TenantOf returns the tenant of an authenticated request, or nil.
func TenantOf(ctx *fasthttp.RequestCtx) *Tenant {
	if t, ok := ctx.UserValue(tenantKey).(*Tenant); ok {
		return t
	}
	return nil
}

func setTenant(ctx *fasthttp.RequestCtx, t *Tenant) { ctx.SetUserValue(tenantKey, t) }

// pathOps maps the model endpoints' paths back to their Op.
var pathOps = func() map[string]Op {
	m := make(map[string]Op, len(opPaths))
	for op, p := range opPaths {
		m[p] = op
	}
	return m
}()

// reqMeta is what the tenancy links need to know about a model request, read from its
// body once and shared through the request's user values.
type reqMeta struct {
	op    Op
	model string // as sent ("" when absent)
	// bad is set when the body is not a JSON object or its model is not a string; the
	// links then let the handler answer the 400.
	bad bool
	// stream is the request's "stream".
	stream bool
	// deterministic reports a request whose output depends on its body only:
	// temperature 0 (or top_p 0) or a fixed seed for generations; always for
	// embeddings and tokenizer calls.
	deterministic bool
}

const metaKey = "hxp.meta"

// metaOf returns the meta of a POST to a model endpoint (decoding the body on first
// use), or nil for any other request.
func metaOf(ctx *fasthttp.RequestCtx) *reqMeta {
	if m, ok := ctx.UserValue(metaKey).(*reqMeta); ok {
		return m
	}
	if !ctx.IsPost() {
		return nil
	}
	op, ok := pathOps[string(ctx.Path())]
	if !ok {
		return nil
	}
	m := parseMeta(op, ctx.PostBody())
	ctx.SetUserValue(metaKey, m)
	return m
}

// jsonNumber returns the number in raw; ok is false for anything else (absent, null,
// another type).
func jsonNumber(raw json.RawMessage) (float64, bool) {
	var v float64
	if len(raw) == 0 || string(raw) == "null" || json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	return v, true
}

// parseMeta reads the fields the links need. It decodes with encoding/json like the
// handlers do, so that both read the same model from any body (duplicate keys
// included: the last one wins in both).
func parseMeta(op Op, body []byte) *reqMeta {
	m := &reqMeta{op: op}
	var f struct {
		Model       json.RawMessage `json:"model"`
		Stream      json.RawMessage `json:"stream"`
		Temperature json.RawMessage `json:"temperature"`
		TopP        json.RawMessage `json:"top_p"`
		Seed        json.RawMessage `json:"seed"`
	}
	if err := unmarshalBody(body, &f); err != nil {
		m.bad = true
		return m
	}
	if len(f.Model) > 0 && string(f.Model) != "null" {
		if err := json.Unmarshal(f.Model, &m.model); err != nil {
			m.bad = true
			return m
		}
	}
	_ = json.Unmarshal(f.Stream, &m.stream)
	switch op {
	case OpChat, OpCompletions:
		temp, tempOK := jsonNumber(f.Temperature)
		topP, topPOK := jsonNumber(f.TopP)
		_, seedOK := jsonNumber(f.Seed)
		m.deterministic = tempOK && temp == 0 || topPOK && topP == 0 || seedOK
	default:
		m.deterministic = true
	}
	return m
}
