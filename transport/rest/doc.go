// Package rest is HXP's HTTP transport, and with transport/grpc and
// transport/graphql one of the only packages that import a transport library
// (fasthttp here). It serves the OpenAI-compatible API (and the other JSON wire
// formats) over an infer.Service: each handler decodes the body once into the core's
// request type (package openai), calls the service — which admission, the response
// cache and the router have already wrapped — and renders its typed result or error;
// nothing behind it sees HTTP.
//
// It owns the listeners (timeouts, TLS, fasthttp's own error logging made safe), the
// router (404 unknown_url, 405 with Allow), the middleware chain (request id, access
// log, metrics, recover, CORS, key auth with the one bearer parser), Server-Sent Events,
// client hang-up detection, and the admin and observability routes. Errors are mapped
// to HTTP statuses and OpenAI error objects in one place (openai.ErrorOf).
//
// It may import infer, openai, tenancy and the transport libraries; routing, the
// engine and the scheduler stay behind infer.Service.
package rest
