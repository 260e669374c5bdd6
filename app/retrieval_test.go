package app

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/vector/qdrant/qdranttest"
)

// The files and vector stores API through the official Go SDK, on the real tiny
// model (its embeddings) and the embedded catalog and index: upload, create a store,
// attach (one file, then a batch), poll until completed, search, filter, page,
// delete. Each document is one chunk, so a query equal to a document's text embeds to
// (nearly) the same vector as its chunk: that document must rank first whatever the
// model's semantics.
var retrievalDocs = []struct{ name, text string }{
	{"lighthouse.md", "# Keeper's log\nAmbrose Quillfeather polishes the brass lenses of the north lighthouse every dawn."},
	{"orchard.txt", "The orchard cooperative harvested nine hundred crates of quince before the first frost."},
	{"glacier.html", "<html><head><style>p{color:red}</style></head><body><p>Seismic drums recorded the glacier calving at midnight.</p><script>var x = 1;</script></body></html>"},
}

func sdkClient(gw string, key string) sdk.Client {
	opts := []option.RequestOption{option.WithBaseURL(gw + "/v1/"), option.WithMaxRetries(0)}
	if key != "" {
		opts = append(opts, option.WithAPIKey(key))
	} else {
		opts = append(opts, option.WithAPIKey("unused"))
	}
	return sdk.NewClient(opts...)
}

// upload sends one file through the SDK.
func upload(t *testing.T, c sdk.Client, name, text string) *sdk.FileObject {
	t.Helper()
	f, err := c.Files.New(testCtx(t), sdk.FileNewParams{File: sdk.File(strings.NewReader(text), name, "text/plain"), Purpose: sdk.FilePurposeAssistants})
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return f
}

// waitIngested polls a store's file until it leaves in_progress.
func waitIngested(t *testing.T, c sdk.Client, store, file string) *sdk.VectorStoreFile {
	t.Helper()
	var got *sdk.VectorStoreFile
	waitFor(t, "the ingestion of "+file, func() bool {
		var err error
		got, err = c.VectorStores.Files.Get(testCtx(t), store, file)
		if err != nil {
			t.Fatalf("get %s: %v", file, err)
		}
		return got.Status != sdk.VectorStoreFileStatusInProgress
	})
	return got
}

// apiError is the SDK's error of err, with its status and param.
func apiError(t *testing.T, err error) *sdk.Error {
	t.Helper()
	var e *sdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("want an API error, got %v", err)
	}
	return e
}

func TestRetrievalWithTheOpenAISDK(t *testing.T) {
	s := start(t, setup{edit: func(c *config.Config) { c.Retrieval.MaxFileBytes = 4096 }})
	c := sdkClient(s.gw, "")
	ctx := testCtx(t)

	var files []*sdk.FileObject
	for _, d := range retrievalDocs {
		files = append(files, upload(t, c, d.name, d.text))
	}
	if f := files[0]; !strings.HasPrefix(f.ID, "file-") || f.Bytes != int64(len(retrievalDocs[0].text)) || f.Filename != "lighthouse.md" ||
		f.Purpose != sdk.FileObjectPurposeAssistants {
		t.Errorf("uploaded file = %+v", f)
	}
	resp, err := c.Files.Content(ctx, files[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != retrievalDocs[1].text {
		t.Errorf("content = %q, want the uploaded bytes", body)
	}

	store, err := c.VectorStores.New(ctx, sdk.VectorStoreNewParams{Name: sdk.String("field notes"),
		Metadata: shared.Metadata{"team": "docs"}}, option.WithJSONSet("embedding_model", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(store.ID, "vs_") || store.Name != "field notes" || store.Metadata["team"] != "docs" {
		t.Errorf("store = %+v", store)
	}
	langs := []string{"en", "en", "fr"}
	attach := func(i int) {
		_, err := c.VectorStores.Files.New(ctx, store.ID, sdk.VectorStoreFileNewParams{FileID: files[i].ID,
			Attributes: map[string]sdk.VectorStoreFileNewParamsAttributeUnion{
				"lang": {OfString: sdk.String(langs[i])}, "year": {OfFloat: sdk.Float(float64(2020 + i))}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	attach(0)
	attach(1)
	batch, err := c.VectorStores.FileBatches.New(ctx, store.ID, sdk.VectorStoreFileBatchNewParams{FileIDs: []string{files[2].ID},
		Attributes: map[string]sdk.VectorStoreFileBatchNewParamsAttributeUnion{"lang": {OfString: sdk.String("fr")}, "year": {OfFloat: sdk.Float(2022)}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(batch.ID, "vsfb_") || batch.FileCounts.Total != 1 {
		t.Errorf("batch = %+v", batch)
	}
	for _, f := range files {
		if got := waitIngested(t, c, store.ID, f.ID); got.Status != sdk.VectorStoreFileStatusCompleted || got.UsageBytes == 0 {
			t.Fatalf("ingested %s: %s %+v", f.Filename, got.Status, got.LastError)
		}
	}
	if b, err := c.VectorStores.FileBatches.Get(ctx, store.ID, batch.ID); err != nil || b.Status != sdk.VectorStoreFileBatchStatusCompleted ||
		b.FileCounts.Completed != 1 {
		t.Errorf("batch after ingestion = %+v, %v", b, err)
	}
	if v := counter(t, s.Registry(), "hxp_vector_chunks_embedded_total", nil); v != 3 {
		t.Errorf("hxp_vector_chunks_embedded_total = %v, want 3", v)
	}
	if v := counter(t, s.Registry(), "hxp_vector_index_points", map[string]string{"backend": "embedded"}); v != 3 {
		t.Errorf("hxp_vector_index_points{backend=embedded} = %v, want 3", v)
	}
	if v := counter(t, s.Registry(), "hxp_vector_files", map[string]string{"status": "completed"}); v != 3 {
		t.Errorf("hxp_vector_files{status=completed} = %v, want 3", v)
	}
	got, err := c.VectorStores.Get(ctx, store.ID)
	if err != nil || got.FileCounts.Completed != 3 || got.FileCounts.Total != 3 || got.Status != sdk.VectorStoreStatusCompleted || got.UsageBytes == 0 {
		t.Fatalf("store after ingestion = %+v, %v", got, err)
	}

	search := func(query string, n int64, filter *sdk.VectorStoreSearchParamsFiltersUnion) []sdk.VectorStoreSearchResponse {
		t.Helper()
		p := sdk.VectorStoreSearchParams{Query: sdk.VectorStoreSearchParamsQueryUnion{OfString: sdk.String(query)}, MaxNumResults: sdk.Int(n),
			RankingOptions: sdk.VectorStoreSearchParamsRankingOptions{ScoreThreshold: sdk.Float(0)}}
		if filter != nil {
			p.Filters = *filter
		}
		page, err := c.VectorStores.Search(ctx, store.ID, p)
		if err != nil {
			t.Fatal(err)
		}
		return page.Data
	}
	for i, d := range retrievalDocs[:2] {
		hits := search(d.text, 3, nil)
		if len(hits) == 0 || hits[0].FileID != files[i].ID || hits[0].Filename != d.name || hits[0].Score < 0.99 {
			t.Fatalf("search for %s's text: %+v", d.name, hits)
		}
		if len(hits) > 1 && hits[1].Score >= hits[0].Score {
			t.Errorf("results not best first: %v then %v", hits[0].Score, hits[1].Score)
		}
		if len(hits[0].Content) != 1 || !strings.Contains(hits[0].Content[0].Text, strings.Fields(d.text)[2]) {
			t.Errorf("the hit's content is not its chunk: %+v", hits[0].Content)
		}
		if hits[0].Attributes["lang"].OfString != langs[i] {
			t.Errorf("attributes = %+v", hits[0].Attributes)
		}
	}
	// HTML is indexed as its text: markup, styles and scripts are gone.
	html := search("Seismic drums recorded the glacier calving at midnight.", 1, nil)
	if len(html) != 1 || html[0].FileID != files[2].ID || strings.TrimSpace(html[0].Content[0].Text) != "Seismic drums recorded the glacier calving at midnight." {
		t.Errorf("HTML chunk = %+v", html)
	}
	// A filter keeps the matching files only: the best match of a query is left out
	// when its attributes do not match.
	eq := func(key, value string) *sdk.VectorStoreSearchParamsFiltersUnion {
		return &sdk.VectorStoreSearchParamsFiltersUnion{OfComparisonFilter: &shared.ComparisonFilterParam{Key: key, Type: shared.ComparisonFilterTypeEq,
			Value: shared.ComparisonFilterValueUnionParam{OfString: sdk.String(value)}}}
	}
	if hits := search(retrievalDocs[2].text, 5, eq("lang", "fr")); len(hits) != 1 || hits[0].FileID != files[2].ID {
		t.Errorf("filter lang=fr: %+v", hits)
	}
	for _, h := range search(retrievalDocs[2].text, 5, eq("lang", "en")) {
		if h.FileID == files[2].ID || h.Attributes["lang"].OfString != "en" {
			t.Errorf("filter lang=en let through %+v", h)
		}
	}
	recent := &sdk.VectorStoreSearchParamsFiltersUnion{OfCompoundFilter: &shared.CompoundFilterParam{Type: shared.CompoundFilterTypeAnd,
		Filters: []shared.CompoundFilterFilterUnionParam{
			{OfComparison: &shared.ComparisonFilterParam{Key: "year", Type: shared.ComparisonFilterTypeGte, Value: shared.ComparisonFilterValueUnionParam{OfFloat: sdk.Float(2021)}}},
			{OfComparison: &shared.ComparisonFilterParam{Key: "lang", Type: shared.ComparisonFilterTypeEq, Value: shared.ComparisonFilterValueUnionParam{OfString: sdk.String("en")}}},
		}}}
	if hits := search(retrievalDocs[1].text, 5, recent); len(hits) != 1 || hits[0].FileID != files[1].ID {
		t.Errorf("filter year>=2021 and lang=en, query of that file: %+v", hits)
	}
	for _, h := range search(retrievalDocs[0].text, 5, recent) {
		if h.FileID != files[1].ID {
			t.Errorf("filter year>=2021 and lang=en let through %+v", h)
		}
	}

	// Lists page with limit and after, newest first by default.
	page, err := c.Files.List(ctx, sdk.FileListParams{Limit: sdk.Int(2)})
	if err != nil || len(page.Data) != 2 || !page.HasMore || page.Data[0].ID != files[2].ID {
		t.Fatalf("files page 1 = %+v, %v", page, err)
	}
	next, err := c.Files.List(ctx, sdk.FileListParams{Limit: sdk.Int(2), After: sdk.String(page.Data[1].ID)})
	if err != nil || len(next.Data) != 1 || next.HasMore || next.Data[0].ID != files[0].ID {
		t.Fatalf("files page 2 = %+v, %v", next, err)
	}
	sf, err := c.VectorStores.Files.List(ctx, store.ID, sdk.VectorStoreFileListParams{Order: sdk.VectorStoreFileListParamsOrderAsc,
		Filter: sdk.VectorStoreFileListParamsFilterCompleted})
	if err != nil || len(sf.Data) != 3 || sf.Data[0].ID != files[0].ID {
		t.Errorf("store files = %+v, %v", sf, err)
	}
	stores, err := c.VectorStores.List(ctx, sdk.VectorStoreListParams{})
	if err != nil || len(stores.Data) != 1 || stores.Data[0].FileCounts.Completed != 3 {
		t.Errorf("stores = %+v, %v", stores, err)
	}

	// Detaching a file takes its chunks out of the searches; deleting a file takes it
	// out of its stores; deleting the store removes it.
	if del, err := c.VectorStores.Files.Delete(ctx, store.ID, files[0].ID); err != nil || !del.Deleted {
		t.Fatalf("detach: %+v, %v", del, err)
	}
	for _, h := range search(retrievalDocs[0].text, 5, nil) {
		if h.FileID == files[0].ID {
			t.Errorf("a detached file is still found: %+v", h)
		}
	}
	if del, err := c.Files.Delete(ctx, files[1].ID); err != nil || !del.Deleted {
		t.Fatalf("delete file: %+v, %v", del, err)
	}
	if hits := search(retrievalDocs[1].text, 5, nil); len(hits) != 1 || hits[0].FileID != files[2].ID {
		t.Errorf("after deleting a file, the store finds %+v", hits)
	}
	if _, err := c.VectorStores.Files.Get(ctx, store.ID, files[1].ID); apiError(t, err).StatusCode != 404 {
		t.Errorf("a deleted file is still in its store: %v", err)
	}
	if del, err := c.VectorStores.Delete(ctx, store.ID); err != nil || !del.Deleted {
		t.Fatalf("delete store: %+v, %v", del, err)
	}
	// Ingestion logged its progress by ids and counts, never the files' text.
	logs := s.logs.String()
	if !strings.Contains(logs, `"ingestion completed"`) || !strings.Contains(logs, files[0].ID) {
		t.Errorf("no ingestion progress in the logs")
	}
	for _, w := range []string{"Quillfeather", "quince", "calving"} {
		if strings.Contains(logs, w) {
			t.Errorf("the logs hold file text (%q)", w)
		}
	}
	if _, err := c.VectorStores.Get(ctx, store.ID); apiError(t, err).StatusCode != 404 {
		t.Errorf("a deleted store answers: %v", err)
	}
}

// multipartUpload is a raw POST /v1/files with a file part of name and content.
func multipartUpload(t *testing.T, gw, name, purpose string, content []byte, hdr ...string) response {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if purpose != "" {
		_ = w.WriteField("purpose", purpose)
	}
	part, _ := w.CreateFormFile("file", name)
	_, _ = part.Write(content)
	_ = w.Close()
	req, err := http.NewRequest("POST", gw+"/v1/files", &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return send(t, http.DefaultClient, req)
}

// Bad inputs are 400 invalid_request_error naming the field, before any work.
func TestRetrievalRefusesBadInput(t *testing.T) {
	s := start(t, setup{edit: func(c *config.Config) { c.Retrieval.MaxFileBytes = 1024 }})
	for _, c := range []struct {
		name, file, purpose string
		content             []byte
		param               string
	}{
		{"unknown type", "report.pdf", "assistants", []byte("%PDF-1.7"), "file"},
		{"too big", "big.txt", "assistants", bytes.Repeat([]byte("a"), 1025), "file"},
		{"not UTF-8", "bin.txt", "assistants", []byte{0xff, 0xfe, 0x00}, "file"},
		{"bad JSON", "data.json", "assistants", []byte("{nope"), "file"},
		{"purpose", "ok.txt", "fine-tune", []byte("text"), "purpose"},
	} {
		r := multipartUpload(t, s.gw, c.file, c.purpose, c.content)
		if e := wantParam(t, r, c.param); c.name == "unknown type" && !strings.Contains(e.Message, ".pdf") {
			t.Errorf("the unknown type is not named: %s", e.Message)
		}
	}
	st := post(t, s.gw+"/v1/vector_stores", map[string]any{"name": "x"})
	if st.status != 200 {
		t.Fatalf("create store: %d %s", st.status, st.body)
	}
	var store struct{ ID string }
	st.json(t, &store)
	base := s.gw + "/v1/vector_stores/" + store.ID
	for _, c := range []struct {
		name, path string
		body       any
		param      string
	}{
		{"chunk too small", "", map[string]any{"chunking_strategy": map[string]any{"type": "static", "static": map[string]any{"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}},
			"chunking_strategy.static.max_chunk_size_tokens"},
		{"overlap over half", "/files", map[string]any{"file_id": "file-x", "chunking_strategy": map[string]any{"type": "static",
			"static": map[string]any{"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}}}, "chunking_strategy.static.chunk_overlap_tokens"},
		{"chunking type", "/files", map[string]any{"file_id": "file-x", "chunking_strategy": map[string]any{"type": "semantic"}}, "chunking_strategy.type"},
		{"attribute type", "/files", map[string]any{"file_id": "file-x", "attributes": map[string]any{"tags": []string{"a"}}}, "attributes.tags"},
		{"filter type", "/search", map[string]any{"query": "q", "filters": map[string]any{"type": "regex", "key": "k", "value": "v"}}, "filters.type"},
		{"nested filter value", "/search", map[string]any{"query": "q", "filters": map[string]any{"type": "or", "filters": []any{
			map[string]any{"type": "gt", "key": "year", "value": "2020"}}}}, "filters.filters[0].value"},
		{"rewrite_query", "/search", map[string]any{"query": "q", "rewrite_query": true}, "rewrite_query"},
		{"max_num_results", "/search", map[string]any{"query": "q", "max_num_results": 51}, "max_num_results"},
		{"query list", "/search", map[string]any{"query": []string{"a", "b"}}, "query"},
		{"score threshold", "/search", map[string]any{"query": "q", "ranking_options": map[string]any{"score_threshold": 2}}, "ranking_options.score_threshold"},
		{"embedding model", "", map[string]any{"embedding_model": "nope"}, "embedding_model"},
		{"expires_after", "", map[string]any{"expires_after": map[string]any{"anchor": "created_at", "days": 1}}, "expires_after.anchor"},
	} {
		url := base + c.path
		if c.path == "" {
			url = s.gw + "/v1/vector_stores"
		}
		wantParam(t, post(t, url, c.body), c.param)
	}
	wantParam(t, do(t, "GET", s.gw+"/v1/files?limit=500", nil), "limit")
	wantParam(t, do(t, "GET", base+"/files?filter=done", nil), "filter")
	// The index and the embedded catalog are health checks of their own.
	waitFor(t, "the retrieval health checks", func() bool {
		r := do(t, "GET", s.gw+"/health/details", nil)
		return strings.Contains(string(r.body), `"vector_index"`) && strings.Contains(string(r.body), `"retrieval_catalog"`)
	})
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// wantParam fails unless r is a 400 invalid_request_error naming param.
func wantParam(t *testing.T, r response, param string) openai.ErrorObject {
	t.Helper()
	e := r.apiErr(t)
	if r.status != 400 || e.Type != "invalid_request_error" || e.Param == nil || *e.Param != param {
		t.Errorf("got %d %s, want 400 invalid_request_error naming %s", r.status, r.body, param)
	}
	return e
}

// Every object is its key's: another key gets the unknown id's 404 on every route,
// and lists only its own. The catalog is PostgreSQL here (postgres.url set), and the
// embeddings of ingestion and search are charged to the key in the ledger.
func TestRetrievalIsolationAcrossKeys(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	s := start(t, setup{edit: func(c *config.Config) {
		c.Postgres.URL = pg.URL()
		c.Auth.Keys = []config.StaticKey{staticKey("team-a", "retr-secret-aaaa", nil, 0, 0), staticKey("team-b", "retr-secret-bbbb", nil, 0, 0)}
	}})
	a, b := sdkClient(s.gw, "retr-secret-aaaa"), sdkClient(s.gw, "retr-secret-bbbb")
	ctx := testCtx(t)
	f := upload(t, a, retrievalDocs[0].name, retrievalDocs[0].text)
	store, err := a.VectorStores.New(ctx, sdk.VectorStoreNewParams{Name: sdk.String("a's")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.VectorStores.Files.New(ctx, store.ID, sdk.VectorStoreFileNewParams{FileID: f.ID}); err != nil {
		t.Fatal(err)
	}
	batch, err := a.VectorStores.FileBatches.New(ctx, store.ID, sdk.VectorStoreFileBatchNewParams{FileIDs: []string{f.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitIngested(t, a, store.ID, f.ID); got.Status != sdk.VectorStoreFileStatusCompleted {
		t.Fatalf("ingestion: %+v", got)
	}
	if _, err := a.VectorStores.Search(ctx, store.ID, sdk.VectorStoreSearchParams{Query: sdk.VectorStoreSearchParamsQueryUnion{OfString: sdk.String("brass")}}); err != nil {
		t.Fatal(err)
	}

	// B's own file, to attach to A's store.
	fb := upload(t, b, "b.txt", "b's notes")
	vs, fid, bid := "/v1/vector_stores/"+store.ID, f.ID, batch.ID
	routes := []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/files/" + fid, nil},
		{"GET", "/v1/files/" + fid + "/content", nil},
		{"DELETE", "/v1/files/" + fid, nil},
		{"GET", vs, nil},
		{"POST", vs, map[string]any{"name": "stolen"}},
		{"POST", vs + "/search", map[string]any{"query": "brass"}},
		{"POST", vs + "/files", map[string]any{"file_id": fb.ID}},
		{"GET", vs + "/files", nil},
		{"GET", vs + "/files/" + fid, nil},
		{"DELETE", vs + "/files/" + fid, nil},
		{"POST", vs + "/file_batches", map[string]any{"file_ids": []string{fb.ID}}},
		{"GET", vs + "/file_batches/" + bid, nil},
		{"POST", vs + "/file_batches/" + bid + "/cancel", nil},
		{"GET", vs + "/file_batches/" + bid + "/files", nil},
		{"DELETE", vs, nil},
		// A's file attached to B's own store is A's file: unknown to B.
	}
	bStore, err := b.VectorStores.New(ctx, sdk.VectorStoreNewParams{})
	if err != nil {
		t.Fatal(err)
	}
	routes = append(routes, struct {
		method, path string
		body         any
	}{"POST", "/v1/vector_stores/" + bStore.ID + "/files", map[string]any{"file_id": fid}})
	for _, r := range routes {
		got := do(t, r.method, s.gw+r.path, r.body, bearer("retr-secret-bbbb")...)
		unknown := do(t, r.method, s.gw+strings.NewReplacer(store.ID, "vs_000000000000000000000000000", fid, "file-00000000000000000000000000000", bid, "vsfb_0000").Replace(r.path), r.body, bearer("retr-secret-bbbb")...)
		if got.status != 404 || unknown.status != 404 {
			t.Errorf("%s %s by another key: %d %s (unknown id: %d)", r.method, r.path, got.status, got.body, unknown.status)
			continue
		}
		e, u := got.apiErr(t), unknown.apiErr(t)
		if e.Type != u.Type || deref(e.Code) != deref(u.Code) || deref(e.Param) != deref(u.Param) || e.Param == nil {
			t.Errorf("%s %s: another key's id answers %+v, an unknown id %+v", r.method, r.path, e, u)
		}
	}
	if l, err := b.Files.List(ctx, sdk.FileListParams{}); err != nil || len(l.Data) != 1 || l.Data[0].ID != fb.ID {
		t.Errorf("B lists files %+v, %v", l, err)
	}
	if l, err := b.VectorStores.List(ctx, sdk.VectorStoreListParams{}); err != nil || len(l.Data) != 1 || l.Data[0].ID != bStore.ID {
		t.Errorf("B lists stores %+v, %v", l, err)
	}
	// A's objects are intact after B's attempts.
	if got, err := a.VectorStores.Get(ctx, store.ID); err != nil || got.Name != "a's" || got.FileCounts.Completed != 1 {
		t.Errorf("A's store after B's attempts: %+v, %v", got, err)
	}
	// The embeddings (store creation's probe, ingestions, the search) are A's usage.
	var recs []postgres.UsageRecord
	waitFor(t, "A's embeddings in the ledger", func() bool {
		recs, err = s.ten.DB.UsageRecords(ctx, postgres.UsageFilter{KeyID: "team-a"}, 100)
		return err == nil && len(recs) >= 3
	})
	tokens := 0
	for _, r := range recs {
		if r.Model == "tiny" && r.StatusCode == 200 {
			tokens += r.PromptTokens
		}
	}
	if tokens == 0 {
		t.Errorf("A's ledger rows carry no embedding tokens: %+v", recs)
	}
}

// The Responses API's file_search tool searches the caller's stores for the user's
// question and answers with the chunks in the model's context: the response's first
// output item is the file_search_call with what it found, then the model's message;
// streamed, the search's events come first. Another key's store is the unknown id's
// 404.
func TestResponsesFileSearch(t *testing.T) {
	s := start(t, setup{edit: func(c *config.Config) {
		c.Auth.Keys = []config.StaticKey{staticKey("team-a", "fs-secret-aaaa", nil, 0, 0), staticKey("team-b", "fs-secret-bbbb", nil, 0, 0)}
	}})
	c := sdkClient(s.gw, "fs-secret-aaaa")
	ctx := testCtx(t)
	store, err := c.VectorStores.New(ctx, sdk.VectorStoreNewParams{Name: sdk.String("notes")})
	if err != nil {
		t.Fatal(err)
	}
	var files []*sdk.FileObject
	for _, d := range retrievalDocs[:2] {
		f := upload(t, c, d.name, d.text)
		files = append(files, f)
		if _, err := c.VectorStores.Files.New(ctx, store.ID, sdk.VectorStoreFileNewParams{FileID: f.ID}); err != nil {
			t.Fatal(err)
		}
		if got := waitIngested(t, c, store.ID, f.ID); got.Status != sdk.VectorStoreFileStatusCompleted {
			t.Fatalf("ingestion: %+v", got)
		}
	}
	body := func(stream bool, storeID string) map[string]any {
		return map[string]any{"model": "tiny", "input": retrievalDocs[1].text, "max_output_tokens": 4, "temperature": 0, "stream": stream,
			"tools": []map[string]any{{"type": "file_search", "vector_store_ids": []string{storeID}, "max_num_results": 1}}}
	}
	r := post(t, s.gw+"/v1/responses", body(false, store.ID), bearer("fs-secret-aaaa")...)
	if r.status != 200 {
		t.Fatalf("file_search response: %d %s", r.status, r.body)
	}
	var resp struct {
		Output []struct {
			Type    string
			Status  string
			Queries []string
			Results []struct {
				FileID   string `json:"file_id"`
				Filename string
				Score    float64
				Text     string
			}
		}
		Usage struct {
			InputTokens int `json:"input_tokens"`
		}
	}
	r.json(t, &resp)
	if len(resp.Output) < 2 || resp.Output[0].Type != "file_search_call" || resp.Output[0].Status != "completed" ||
		len(resp.Output[0].Queries) != 1 || resp.Output[0].Queries[0] != retrievalDocs[1].text || resp.Output[1].Type != "message" {
		t.Fatalf("output = %s", r.body)
	}
	if res := resp.Output[0].Results; len(res) != 1 || res[0].FileID != files[1].ID || res[0].Filename != "orchard.txt" ||
		!strings.Contains(res[0].Text, "quince") {
		t.Fatalf("results = %+v", res)
	}
	// The chunk is in the model's context: the prompt is longer than without the tool.
	plain := post(t, s.gw+"/v1/responses", map[string]any{"model": "tiny", "input": retrievalDocs[1].text, "max_output_tokens": 4,
		"temperature": 0}, bearer("fs-secret-aaaa")...)
	var p struct {
		Usage struct {
			InputTokens int `json:"input_tokens"`
		}
	}
	plain.json(t, &p)
	if resp.Usage.InputTokens <= p.Usage.InputTokens+10 {
		t.Errorf("input tokens with file_search %d, without %d: the chunks did not reach the model", resp.Usage.InputTokens, p.Usage.InputTokens)
	}
	// Streamed: the search's events open the stream after response.in_progress.
	st := post(t, s.gw+"/v1/responses", body(true, store.ID), bearer("fs-secret-aaaa")...)
	var events []string
	for _, line := range strings.Split(string(st.body), "\n") {
		if ev, ok := strings.CutPrefix(line, "event: "); ok {
			events = append(events, ev)
		}
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.file_search_call.in_progress",
		"response.file_search_call.searching", "response.file_search_call.completed", "response.output_item.done"}
	if len(events) < len(want)+1 || strings.Join(events[:len(want)], ",") != strings.Join(want, ",") ||
		(events[len(events)-1] != "response.completed" && events[len(events)-1] != "response.incomplete") {
		t.Errorf("stream events = %v", events)
	}
	// Another key names A's store: the unknown store's 404.
	other := post(t, s.gw+"/v1/responses", body(false, store.ID), bearer("fs-secret-bbbb")...)
	unknown := post(t, s.gw+"/v1/responses", body(false, "vs_unknown"), bearer("fs-secret-bbbb")...)
	if other.status != 404 || unknown.status != 404 || deref(other.apiErr(t).Param) != deref(unknown.apiErr(t).Param) {
		t.Errorf("another key's store: %d %s; unknown: %d %s", other.status, other.body, unknown.status, unknown.body)
	}
	wantParam(t, post(t, s.gw+"/v1/responses", map[string]any{"model": "tiny", "input": "q",
		"tools": []map[string]any{{"type": "file_search", "vector_store_ids": []string{}}}}, bearer("fs-secret-aaaa")...), "tools[0].vector_store_ids")
}

// retrieval.backend qdrant: the same API over the Qdrant backend, here against the
// in-process stand-in of vector/qdrant/qdranttest (written on the go-client's
// generated gRPC server interfaces, not a real Qdrant), with an API key read from
// retrieval.qdrant.api_key_file.
func TestRetrievalOnQdrant(t *testing.T) {
	q := qdranttest.Start(t, qdranttest.Options{APIKey: "qdrant-secret"})
	keyFile := filepath.Join(t.TempDir(), "qdrant.key")
	if err := os.WriteFile(keyFile, []byte("qdrant-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, setup{edit: func(c *config.Config) {
		c.Retrieval.Backend, c.Retrieval.Qdrant = "qdrant", config.Qdrant{URL: q.Addr, APIKeyFile: keyFile}
	}})
	c := sdkClient(s.gw, "")
	ctx := testCtx(t)
	store, err := c.VectorStores.New(ctx, sdk.VectorStoreNewParams{Name: sdk.String("on qdrant")})
	if err != nil {
		t.Fatal(err)
	}
	var files []*sdk.FileObject
	for _, d := range retrievalDocs {
		f := upload(t, c, d.name, d.text)
		files = append(files, f)
		if _, err := c.VectorStores.Files.New(ctx, store.ID, sdk.VectorStoreFileNewParams{FileID: f.ID}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if got := waitIngested(t, c, store.ID, f.ID); got.Status != sdk.VectorStoreFileStatusCompleted {
			t.Fatalf("ingestion on qdrant: %+v", got)
		}
	}
	page, err := c.VectorStores.Search(ctx, store.ID, sdk.VectorStoreSearchParams{
		Query: sdk.VectorStoreSearchParamsQueryUnion{OfString: sdk.String(retrievalDocs[1].text)}, MaxNumResults: sdk.Int(2)})
	if err != nil || len(page.Data) == 0 || page.Data[0].FileID != files[1].ID {
		t.Fatalf("search on qdrant: %+v, %v", page, err)
	}
	if _, err := c.VectorStores.Files.Delete(ctx, store.ID, files[1].ID); err != nil {
		t.Fatal(err)
	}
	page, err = c.VectorStores.Search(ctx, store.ID, sdk.VectorStoreSearchParams{
		Query: sdk.VectorStoreSearchParamsQueryUnion{OfString: sdk.String(retrievalDocs[1].text)}, MaxNumResults: sdk.Int(5)})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range page.Data {
		if h.FileID == files[1].ID {
			t.Errorf("a detached file is still found on qdrant: %+v", h)
		}
	}
}
