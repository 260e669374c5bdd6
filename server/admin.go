package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/connectors/postgres"
)

// adminPrefix starts every admin API path; KeyAuth leaves these paths to Admin,
// which checks its own key.
const adminPrefix = "/admin/"

// KeyAdmin manages keys and reads usage; *postgres.DB implements it.
type KeyAdmin interface {
	CreateKey(ctx context.Context, spec postgres.KeySpec) (string, postgres.Key, error)
	ListKeys(ctx context.Context) ([]postgres.Key, error)
	GetKey(ctx context.Context, id string) (postgres.Key, error)
	RevokeKey(ctx context.Context, id string) error
	Usage(ctx context.Context, f postgres.UsageFilter) ([]postgres.UsageSummary, error)
}

// Admin is the admin API, guarded by one admin key (compared in constant time):
//
//	GET    /admin/keys           list keys (never their secrets)
//	POST   /admin/keys           create a key: a postgres.KeySpec; the answer holds the key once
//	GET    /admin/keys/ID        one key
//	DELETE /admin/keys/ID        revoke a key
//	GET    /admin/usage          usage per key and model; query key_id, model, since, until (RFC 3339)
//
// Without a database every route answers 503; without an admin key the routes are
// not mounted at all.
type Admin struct {
	db    KeyAdmin
	hash  [32]byte
	cache *KeyCache
	log   zerolog.Logger
	empty bool
}

// NewAdmin returns the admin API for db (nil: no database) guarded by adminKey. cache,
// when set, forgets a key revoked here at once.
func NewAdmin(db KeyAdmin, adminKey string, cache *KeyCache, log zerolog.Logger) *Admin {
	return &Admin{db: db, hash: HashKey(adminKey), cache: cache, log: log, empty: adminKey == ""}
}

// Routes are the admin API's routes, to mount on the gateway (Options.Routes); none
// when the admin key is empty.
func (a *Admin) Routes() []Route {
	if a.empty {
		return nil
	}
	return []Route{
		{Method: "GET", Path: "/admin/keys", Handler: a.guard(a.listKeys)},
		{Method: "POST", Path: "/admin/keys", Handler: a.guard(a.createKey)},
		{Method: "GET", Path: "/admin/keys/", Handler: a.guard(a.getKey)},
		{Method: "DELETE", Path: "/admin/keys/", Handler: a.guard(a.revokeKey)},
		{Method: "GET", Path: "/admin/usage", Handler: a.guard(a.usage)},
	}
}

// guard checks the admin key, then the database.
func (a *Admin) guard(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		key, ok := bearerToken(&ctx.Request.Header)
		sum := HashKey(key)
		if !ok || subtle.ConstantTimeCompare(sum[:], a.hash[:]) != 1 {
			a.log.Warn().Str("path", string(ctx.Path())).Str("remote", ctx.RemoteIP().String()).Msg("admin API: refused key")
			unauthorized(ctx, "invalid admin key")
			return
		}
		if a.db == nil {
			writeError(ctx, &APIError{Status: fasthttp.StatusServiceUnavailable, Type: typeUnavailable, Code: "no_database",
				Message: "the admin API needs PostgreSQL (postgres.url or HXP_POSTGRES_URL); keys from the config are managed there"}, "")
			return
		}
		h(ctx)
	}
}

// adminError maps the database's errors.
func adminError(err error) error {
	var ve *postgres.ValidationError
	switch {
	case errors.As(err, &ve):
		return badRequest(ve.Field, "%s", ve.Error())
	case errors.Is(err, postgres.ErrKeyNotFound):
		return &APIError{Status: fasthttp.StatusNotFound, Type: typeNotFound, Code: "key_not_found", Message: "no such key"}
	}
	return &APIError{Status: fasthttp.StatusServiceUnavailable, Type: typeUnavailable, Code: "database_unavailable",
		Message: "the database could not answer: " + err.Error(), RetryAfter: time.Second}
}

func (a *Admin) listKeys(ctx *fasthttp.RequestCtx) {
	keys, err := a.db.ListKeys(ctx)
	if err != nil {
		writeError(ctx, adminError(err), "")
		return
	}
	if keys == nil {
		keys = []postgres.Key{}
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"object": "list", "data": keys})
}

// CreatedKey is the answer of POST /admin/keys: the stored key and, this once, its secret.
type CreatedKey struct {
	postgres.Key
	// Secret is the API key itself; it cannot be shown again.
	Secret string `json:"key"`
}

func (a *Admin) createKey(ctx *fasthttp.RequestCtx) {
	var spec postgres.KeySpec
	if err := unmarshalBody(ctx.PostBody(), &spec); err != nil {
		writeError(ctx, err, "")
		return
	}
	secret, k, err := a.db.CreateKey(ctx, spec)
	if err != nil {
		writeError(ctx, adminError(err), "")
		return
	}
	a.log.Info().Str("key_id", k.ID).Str("name", k.Name).Msg("admin API: key created")
	writeJSON(ctx, fasthttp.StatusCreated, CreatedKey{Key: k, Secret: secret})
}

func keyIDOfPath(ctx *fasthttp.RequestCtx) string {
	return strings.TrimPrefix(string(ctx.Path()), "/admin/keys/")
}

func (a *Admin) getKey(ctx *fasthttp.RequestCtx) {
	k, err := a.db.GetKey(ctx, keyIDOfPath(ctx))
	if err != nil {
		writeError(ctx, adminError(err), "")
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, k)
}

func (a *Admin) revokeKey(ctx *fasthttp.RequestCtx) {
	id := keyIDOfPath(ctx)
	if err := a.db.RevokeKey(ctx, id); err != nil {
		writeError(ctx, adminError(err), "")
		return
	}
	if a.cache != nil {
		a.cache.Invalidate(id)
	}
	a.log.Info().Str("key_id", id).Msg("admin API: key revoked")
	k, err := a.db.GetKey(ctx, id)
	if err != nil {
		writeError(ctx, adminError(err), "")
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, k)
}

func (a *Admin) usage(ctx *fasthttp.RequestCtx) {
	q := ctx.QueryArgs()
	f := postgres.UsageFilter{KeyID: string(q.Peek("key_id")), Model: string(q.Peek("model"))}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Peek(p.name); len(v) > 0 {
			t, err := time.Parse(time.RFC3339, string(v))
			if err != nil {
				writeError(ctx, badRequest(p.name, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %s", p.name, strconv.Quote(string(v))), "")
				return
			}
			*p.dst = t
		}
	}
	if f.Since.IsZero() && f.Until.IsZero() && len(q.Peek("all")) == 0 {
		now := time.Now().UTC()
		f.Since = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC) // this month by default
	}
	sums, err := a.db.Usage(ctx, f)
	if err != nil {
		writeError(ctx, adminError(err), "")
		return
	}
	if sums == nil {
		sums = []postgres.UsageSummary{}
	}
	var total postgres.UsageSummary
	for _, s := range sums {
		total.Requests += s.Requests
		total.Errors += s.Errors
		total.PromptTokens += s.PromptTokens
		total.CompletionTokens += s.CompletionTokens
		total.TotalTokens += s.TotalTokens
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"object": "usage", "since": timeOrNil(f.Since), "until": timeOrNil(f.Until),
		"data": sums, "total": map[string]int64{"requests": total.Requests, "errors": total.Errors,
			"prompt_tokens": total.PromptTokens, "completion_tokens": total.CompletionTokens, "total_tokens": total.TotalTokens}})
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
