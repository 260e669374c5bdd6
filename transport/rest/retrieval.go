package rest

import (
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/responses"
	"github.com/hxp-ai/hxp/retrieval"
)

// OpenAI's files and vector stores API over Options.Retrieval: this file only parses
// paths, query strings and bodies, and renders what package retrieval answers. Every
// object is the caller's own; another key's id is the unknown id's 404.

// Files and vector stores endpoints.
const (
	pathFiles        = "/v1/files"
	pathFileID       = "/v1/files/" // {id}, {id}/content
	pathVectorStores = "/v1/vector_stores"
	pathVectorStore  = "/v1/vector_stores/" // {id} and everything under it
)

// retrievalRoutes mounts the API on r.
func (s *Server) retrievalRoutes(r *router) {
	r.handle("POST", pathFiles, s.uploadFile)
	r.handle("GET", pathFiles, s.retrieval(listFiles))
	r.handle("GET", pathFileID, s.fileByID)
	r.handle("DELETE", pathFileID, s.fileByID)
	r.handle("POST", pathVectorStores, s.retrieval(createStore))
	r.handle("GET", pathVectorStores, s.retrieval(listStores))
	for _, m := range []string{"GET", "POST", "DELETE"} {
		r.handle(m, pathVectorStore, s.retrieval(vectorStoreRoute))
	}
}

// retrievalCall answers one request with the service, the caller's context and the
// path's segments after the collection.
type retrievalCall func(c context.Context, rs *retrieval.Service, ctx *fasthttp.RequestCtx, seg []string) (any, error)

// retrieval wraps a call: context, errors and the JSON answer.
func (s *Server) retrieval(call retrievalCall) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		c, cancel := s.context(ctx)
		defer cancel()
		path := string(ctx.Path())
		var seg []string
		if rest, ok := strings.CutPrefix(path, pathVectorStore); ok {
			seg = strings.Split(rest, "/")
		}
		out, err := call(c, s.opts.Retrieval, ctx, seg)
		if err != nil {
			writeError(ctx, err)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, out)
	}
}

// unknownURL is the 404 of a path no endpoint serves.
func unknownURL(ctx *fasthttp.RequestCtx) error {
	return &infer.Error{Kind: infer.NotFound, Code: "unknown_url", Message: "Invalid URL (" + string(ctx.Method()) + " " + string(ctx.Path()) + ")"}
}

// listParams reads a list request's query string.
func listParams(ctx *fasthttp.RequestCtx) (retrieval.ListParams, error) {
	q := ctx.QueryArgs()
	return retrieval.ParseList(string(q.Peek("limit")), string(q.Peek("order")), string(q.Peek("after")), string(q.Peek("before")),
		string(q.Peek("filter")))
}

// decode parses the JSON body into v.
func decode[T any](ctx *fasthttp.RequestCtx) (*T, error) {
	var v T
	if err := retrieval.Decode(ctx.PostBody(), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// uploadFile serves POST /v1/files: a multipart form with file and purpose.
func (s *Server) uploadFile(ctx *fasthttp.RequestCtx) {
	s.retrieval(func(c context.Context, rs *retrieval.Service, ctx *fasthttp.RequestCtx, _ []string) (any, error) {
		form, err := ctx.MultipartForm()
		if err != nil {
			return nil, infer.Invalid("file", "the body must be multipart/form-data with a file and a purpose: %v", err)
		}
		defer ctx.Request.RemoveMultipartFormFiles()
		purpose := ""
		if v := form.Value["purpose"]; len(v) > 0 {
			purpose = v[0]
		}
		fhs := form.File["file"]
		if len(fhs) != 1 {
			return nil, infer.Invalid("file", "the form must carry exactly one file part named file")
		}
		fh := fhs[0]
		if fh.Size > rs.MaxFileBytes() {
			return nil, infer.Invalid("file", "the file has %d bytes; at most %d are accepted (retrieval.max_file_bytes)", fh.Size, rs.MaxFileBytes())
		}
		content, err := readPart(fh)
		if err != nil {
			return nil, infer.Invalid("file", "read the file part: %v", err)
		}
		return rs.Upload(c, fh.Filename, purpose, fh.Header.Get("Content-Type"), content)
	})(ctx)
}

// readPart reads an uploaded part (held in memory or in a temporary file).
func readPart(fh *multipart.FileHeader) ([]byte, error) {
	f, err := fh.Open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func listFiles(c context.Context, rs *retrieval.Service, ctx *fasthttp.RequestCtx, _ []string) (any, error) {
	p, err := listParams(ctx)
	if err != nil {
		return nil, err
	}
	p.Purpose = string(ctx.QueryArgs().Peek("purpose"))
	return rs.Files(c, p)
}

// fileByID serves GET and DELETE /v1/files/{id} and GET /v1/files/{id}/content.
func (s *Server) fileByID(ctx *fasthttp.RequestCtx) {
	id := strings.TrimPrefix(string(ctx.Path()), pathFileID)
	id, content := strings.CutSuffix(id, "/content")
	if content && string(ctx.Method()) == fasthttp.MethodGet {
		c, cancel := s.context(ctx)
		defer cancel()
		f, b, err := s.opts.Retrieval.Content(c, id)
		if err != nil {
			writeError(ctx, err)
			return
		}
		ctx.SetContentType(f.ContentType + "; charset=utf-8")
		ctx.SetBody(b)
		return
	}
	s.retrieval(func(c context.Context, rs *retrieval.Service, ctx *fasthttp.RequestCtx, _ []string) (any, error) {
		switch {
		case content || strings.Contains(id, "/"):
			return nil, unknownURL(ctx)
		case string(ctx.Method()) == fasthttp.MethodDelete:
			return rs.DeleteFile(c, id)
		}
		return rs.File(c, id)
	})(ctx)
}

func createStore(c context.Context, rs *retrieval.Service, ctx *fasthttp.RequestCtx, _ []string) (any, error) {
	r, err := decode[retrieval.CreateStoreRequest](ctx)
	if err != nil {
		return nil, err
	}
	return rs.CreateStore(c, r)
}

func listStores(c context.Context, rs *retrieval.Service, ctx *fasthttp.RequestCtx, _ []string) (any, error) {
	p, err := listParams(ctx)
	if err != nil {
		return nil, err
	}
	return rs.Stores(c, p)
}

// vectorStoreRoute serves everything under /v1/vector_stores/{id}.
func vectorStoreRoute(c context.Context, rs *retrieval.Service, ctx *fasthttp.RequestCtx, seg []string) (any, error) {
	method := string(ctx.Method())
	id := seg[0]
	switch route := method + " " + strings.Join(pattern(seg[1:]), "/"); route {
	case "GET ":
		return rs.Store(c, id)
	case "POST ":
		r, err := decode[retrieval.UpdateStoreRequest](ctx)
		if err != nil {
			return nil, err
		}
		return rs.UpdateStore(c, id, r)
	case "DELETE ":
		return rs.DeleteStore(c, id)
	case "POST search":
		r, err := decode[retrieval.SearchRequest](ctx)
		if err != nil {
			return nil, err
		}
		return rs.Search(c, id, r)
	case "POST files":
		r, err := decode[retrieval.AttachRequest](ctx)
		if err != nil {
			return nil, err
		}
		return rs.Attach(c, id, r)
	case "GET files":
		p, err := listParams(ctx)
		if err != nil {
			return nil, err
		}
		return rs.StoreFiles(c, id, "", p)
	case "GET files/*":
		return rs.StoreFile(c, id, seg[2])
	case "DELETE files/*":
		return rs.DetachFile(c, id, seg[2])
	case "POST file_batches":
		r, err := decode[retrieval.BatchRequest](ctx)
		if err != nil {
			return nil, err
		}
		return rs.CreateBatch(c, id, r)
	case "GET file_batches/*":
		return rs.Batch(c, id, seg[2])
	case "POST file_batches/*/cancel":
		return rs.CancelBatch(c, id, seg[2])
	case "GET file_batches/*/files":
		p, err := listParams(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := rs.Batch(c, id, seg[2]); err != nil {
			return nil, err
		}
		return rs.StoreFiles(c, id, seg[2], p)
	}
	return nil, unknownURL(ctx)
}

// pattern replaces the ids in a path's segments under a store by "*": files/{id}
// and file_batches/{id}[/...]; an empty segment stays empty (and matches nothing).
func pattern(seg []string) []string {
	out := make([]string, len(seg))
	for i, s := range seg {
		out[i] = s
		if i == 1 && s != "" && (seg[0] == "files" || seg[0] == "file_batches") {
			out[i] = "*"
		}
	}
	return out
}

// fileSearched is what a Responses request's file_search tool found.
type fileSearched struct {
	query   string
	results []responses.FileSearchResult
}

// fileSearch runs a Responses request's file_search tool, if it has one: the
// caller's stores are searched for the last user message (the query's embedding is
// charged to the caller) and the chunks found are put into req's context.
func (s *Server) fileSearch(c context.Context, in *responses.Input, history []responses.Item, req *infer.ChatRequest) (*fileSearched, error) {
	fs, err := responses.FileSearchOf(in, history)
	if err != nil || fs == nil {
		return nil, err
	}
	if s.opts.Retrieval == nil {
		return nil, infer.Invalid("tools", "file_search is served on the gateway only, with retrieval on (retrieval.enabled)")
	}
	query, _ := json.Marshal(fs.Query)
	sr := &retrieval.SearchRequest{Query: query, MaxNumResults: &fs.MaxResults}
	if len(fs.Filters) > 0 && string(fs.Filters) != "null" {
		if err := retrieval.Decode(fs.Filters, &sr.Filters); err != nil {
			return nil, err
		}
	}
	found, err := s.opts.Retrieval.SearchStores(c, fs.StoreIDs, sr)
	if err != nil {
		return nil, err
	}
	out := &fileSearched{query: fs.Query, results: make([]responses.FileSearchResult, len(found))}
	for i, f := range found {
		var text strings.Builder
		for _, p := range f.Content {
			text.WriteString(p.Text)
		}
		out.results[i] = responses.FileSearchResult{FileID: f.FileID, Filename: f.Filename, Score: f.Score, Text: text.String(),
			Attributes: f.Attributes}
	}
	responses.Ground(req, out.results)
	return out, nil
}

// searched adds the file search's output item to the response and returns its
// stream events (none without a search).
func (r *responseRun) searched() []responses.Event {
	if r.search == nil {
		return nil
	}
	return r.b.FileSearched(r.search.query, r.search.results)
}
