package rest

import (
	"fmt"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
)

// Route is an extra endpoint mounted on a listener, such as the health package's
// /metrics, /health/ready and /health/details. A route replaces a built-in one with
// the same method and path.
type Route struct {
	Method  string
	Path    string
	Handler fasthttp.RequestHandler
}

// router dispatches by exact path, or by path prefix for paths ending in "/", and
// answers 404 for unknown paths and 405 (with Allow) for a known path's other methods.
type router struct {
	exact    map[string]map[string]fasthttp.RequestHandler
	prefixes []prefixRoute
}

type prefixRoute struct {
	prefix  string
	methods map[string]fasthttp.RequestHandler
}

func newRouter() *router { return &router{exact: map[string]map[string]fasthttp.RequestHandler{}} }

// handle registers h for method and path; a path ending in "/" matches every longer
// path with that prefix (exact paths win).
func (r *router) handle(method, path string, h fasthttp.RequestHandler) {
	if strings.HasSuffix(path, "/") && path != "/" {
		for i := range r.prefixes {
			if r.prefixes[i].prefix == path {
				r.prefixes[i].methods[method] = h
				return
			}
		}
		r.prefixes = append(r.prefixes, prefixRoute{prefix: path, methods: map[string]fasthttp.RequestHandler{method: h}})
		sort.Slice(r.prefixes, func(i, j int) bool { return len(r.prefixes[i].prefix) > len(r.prefixes[j].prefix) })
		return
	}
	if r.exact[path] == nil {
		r.exact[path] = map[string]fasthttp.RequestHandler{}
	}
	r.exact[path][method] = h
}

func (r *router) lookup(path string) map[string]fasthttp.RequestHandler {
	if m, ok := r.exact[path]; ok {
		return m
	}
	for _, p := range r.prefixes {
		if strings.HasPrefix(path, p.prefix) && len(path) > len(p.prefix) {
			return p.methods
		}
	}
	return nil
}

// serve is the router's request handler.
func (r *router) serve(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	methods := r.lookup(path)
	if methods == nil {
		writeError(ctx, &infer.Error{Kind: infer.NotFound, Code: "unknown_url",
			Message: fmt.Sprintf("Invalid URL (%s %s)", ctx.Method(), path)})
		return
	}
	if h, ok := methods[string(ctx.Method())]; ok {
		h(ctx)
		return
	}
	allow := make([]string, 0, len(methods))
	for m := range methods {
		allow = append(allow, m)
	}
	sort.Strings(allow)
	writeError(ctx, &statusError{status: fasthttp.StatusMethodNotAllowed, allow: strings.Join(allow, ", "),
		err: &infer.Error{Kind: infer.InvalidArgument, Code: "method_not_allowed",
			Message: fmt.Sprintf("%s %s is not allowed; use %s", ctx.Method(), path, strings.Join(allow, " or "))}})
}
