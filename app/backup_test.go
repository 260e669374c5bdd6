package app

import (
	"math"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	sdk "github.com/openai/openai-go/v3"

	"github.com/hxp-ai/hxp/backup"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/vector/qdrant/qdranttest"
)

// searchHit is what a client compares of one search result.
type searchHit struct {
	FileID   string         `json:"file_id"`
	Filename string         `json:"filename"`
	Score    float64        `json:"score"`
	Attrs    map[string]any `json:"attributes"`
	Content  []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
}

// storeView is what a key sees of its files and one vector store through the API:
// the files list and the store's files list (bodies as sent), and a search for each
// document's text.
type storeView struct {
	files, storeFiles string
	searches          [][]searchHit
}

func viewStore(t *testing.T, gw, key, store string) storeView {
	t.Helper()
	v := storeView{
		files:      string(do(t, "GET", gw+"/v1/files", nil, bearer(key)...).body),
		storeFiles: string(do(t, "GET", gw+"/v1/vector_stores/"+store+"/files", nil, bearer(key)...).body),
	}
	for _, d := range retrievalDocs {
		r := do(t, "POST", gw+"/v1/vector_stores/"+store+"/search", map[string]any{"query": d.text, "max_num_results": 3}, bearer(key)...)
		var page struct{ Data []searchHit }
		r.json(t, &page)
		if r.status != 200 || len(page.Data) == 0 {
			t.Fatalf("search: %d %s", r.status, r.body)
		}
		v.searches = append(v.searches, page.Data)
	}
	return v
}

func sameView(t *testing.T, want, got storeView) {
	t.Helper()
	if want.files != got.files {
		t.Errorf("files list differs:\nsource   %s\nrestored %s", want.files, got.files)
	}
	if want.storeFiles != got.storeFiles {
		t.Errorf("store files list differs:\nsource   %s\nrestored %s", want.storeFiles, got.storeFiles)
	}
	for i := range want.searches {
		w, g := want.searches[i], got.searches[i]
		if len(w) != len(g) {
			t.Fatalf("search %d: %d hits restored, want %d", i, len(g), len(w))
		}
		for j := range w {
			if math.Abs(w[j].Score-g[j].Score) > 1e-6 {
				t.Errorf("search %d hit %d: score %v restored, want %v", i, j, g[j].Score, w[j].Score)
			}
			g[j].Score = w[j].Score
			if !reflect.DeepEqual(w[j], g[j]) {
				t.Errorf("search %d hit %d: restored %+v, want %+v", i, j, g[j], w[j])
			}
		}
	}
}

// seedStore uploads the documents, attaches them to a new store and waits for them.
func seedStore(t *testing.T, gw, key string) string {
	t.Helper()
	c := sdkClient(gw, key)
	store, err := c.VectorStores.New(testCtx(t), sdk.VectorStoreNewParams{Name: sdk.String("backed up")})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range retrievalDocs {
		f := upload(t, c, d.name, d.text)
		if _, err := c.VectorStores.Files.New(testCtx(t), store.ID, sdk.VectorStoreFileNewParams{FileID: f.ID,
			Attributes: map[string]sdk.VectorStoreFileNewParamsAttributeUnion{"doc": {OfString: sdk.String(d.name)}}}); err != nil {
			t.Fatal(err)
		}
		if got := waitIngested(t, c, store.ID, f.ID); got.Status != sdk.VectorStoreFileStatusCompleted {
			t.Fatalf("ingestion: %+v", got)
		}
	}
	return store.ID
}

// A key's files and vector store, backed up (from PostgreSQL and Qdrant while the server
// serves, or from the embedded catalog and index of a stopped one), restored into empty
// systems and served again, look the same through the API: the same files lists, the
// same search results (ids, content, attributes; scores within 1e-6).
func TestBackupRestoresVectorStores(t *testing.T) {
	const secret = "backup-secret-aaaa"
	cases := []struct {
		name     string
		postgres bool
		qdrant   bool
	}{{"postgres-qdrant", true, true}, {"embedded", false, false}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// target is one side's systems: a database, a data directory, a Qdrant.
			target := func() func(*config.Config) {
				url, dir := "", t.TempDir()
				if c.postgres {
					url = testenv.SharedPostgres(t).URL()
				}
				var q *qdranttest.Server
				if c.qdrant {
					q = qdranttest.Start(t, qdranttest.Options{})
				}
				return func(cfg *config.Config) {
					cfg.Postgres.URL, cfg.Retrieval.DataDir = url, dir
					cfg.Auth.Keys = []config.StaticKey{staticKey("team-a", secret, nil, 0, 0)}
					if q != nil {
						cfg.Retrieval.Backend, cfg.Retrieval.Qdrant = "qdrant", config.Qdrant{URL: q.Addr}
					}
				}
			}
			src, dst := target(), target()
			s := start(t, setup{edit: src})
			store := seedStore(t, s.gw, secret)
			before := viewStore(t, s.gw, secret, store)
			if !c.qdrant {
				// The embedded files are the server's: stop it first.
				if err := s.Shutdown(5 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
			archive := filepath.Join(t.TempDir(), "b.tar.zst")
			var cfg config.Config
			src(&cfg)
			r, err := backup.OpenRetrieval(cfg.Retrieval, c.postgres)
			if err != nil {
				t.Fatal(err)
			}
			m, err := backup.Create(testCtx(t), archive, backup.Options{PostgresURL: cfg.Postgres.URL, Retrieval: r})
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			if p := m.Parts[len(m.Parts)-1]; p.Kind != backup.KindPoints || p.Rows != int64(len(retrievalDocs)) {
				t.Fatalf("points part %+v, want %d points", p, len(retrievalDocs))
			}

			var dcfg config.Config
			dst(&dcfg)
			r, err = backup.OpenRetrieval(dcfg.Retrieval, c.postgres)
			if err != nil {
				t.Fatal(err)
			}
			_, err = backup.Restore(testCtx(t), archive, backup.RestoreOptions{PostgresURL: dcfg.Postgres.URL, Retrieval: r})
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			restored := start(t, setup{edit: dst})
			sameView(t, before, viewStore(t, restored.gw, secret, store))
		})
	}
}
