// Package tenancy is HXP's admission and accounting, the same for every front end
// (REST, gRPC, GraphQL): API keys (static from the config, or PostgreSQL's behind a
// cache) authenticated into an infer.Caller, each caller's model scope, requests and
// tokens per minute (Redis, leased, with an in-process fallback), monthly token
// budgets, the usage ledger, the response cache, key administration and their
// Prometheus metrics.
//
// Admission and the cache are decorators of infer.Service: a front end authenticates
// the request's key (Authenticate), puts the caller and the request id into the
// context (infer.WithCaller, infer.WithRequestID) and calls
// Admit(Cache(router)). They see typed requests and results, never a body, a header
// or a status code: errors are *infer.Error, and the ledger's status is the error
// kind's HTTP-equivalent status.
//
// tenancy imports infer, limits, config, the postgres and redis connectors,
// internal/breaker, zerolog and Prometheus' client; it never imports a transport
// (no fasthttp, no net/http types), a wire format or the router.
package tenancy
