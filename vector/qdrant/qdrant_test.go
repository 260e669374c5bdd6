package qdrant_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/qdrant"
	"github.com/hxp-ai/hxp/vector/qdrant/qdranttest"
	"github.com/hxp-ai/hxp/vector/vectortest"
)

func open(t *testing.T, opts qdrant.Options) *qdrant.Index {
	t.Helper()
	x, err := qdrant.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

// TestConformanceStandIn runs the suite on the real backend code against the in-process
// Qdrant STAND-IN (qdranttest), not a Qdrant server: it proves the backend's requests and
// their translation of filters under Qdrant's documented semantics, as the stand-in
// implements them. TestConformanceQdrant runs the same suite against a real server.
func TestConformanceStandIn(t *testing.T) {
	srv := qdranttest.Start(t, qdranttest.Options{})
	// Small batches, so that the suite's 1000-point upsert takes several requests.
	x := open(t, qdrant.Options{URL: srv.Addr, BatchSize: 64})
	vectortest.Run(t, func(*testing.T) vector.Index { return x })
}

// TestConformanceQdrant runs the suite against the Qdrant at HXP_TEST_QDRANT_URL (its gRPC
// port, e.g. localhost:6334), with the API key in HXP_TEST_QDRANT_API_KEY_FILE if set.
func TestConformanceQdrant(t *testing.T) {
	url := os.Getenv("HXP_TEST_QDRANT_URL")
	if url == "" {
		t.Skip("HXP_TEST_QDRANT_URL is not set: no real Qdrant to test against (the stand-in suite ran)")
	}
	x := open(t, qdrant.Options{URL: url, APIKeyFile: os.Getenv("HXP_TEST_QDRANT_API_KEY_FILE")})
	if err := x.Check(context.Background()); err != nil {
		t.Fatalf("Qdrant at %s: %v", url, err)
	}
	vectortest.Run(t, func(*testing.T) vector.Index { return x })
}

func TestCollectionPerDimensionWithPayloadIndexes(t *testing.T) {
	srv := qdranttest.Start(t, qdranttest.Options{})
	x := open(t, qdrant.Options{URL: srv.Addr})
	ctx := context.Background()
	for i, dim := range []int{4, 4, 6} {
		store := "vs_" + string(rune('a'+i))
		v := make([]float32, dim)
		v[0] = 1
		p := vector.Point{ID: vector.ChunkID(store, "f", 0), StoreID: store, FileID: "f", Vector: v}
		if err := x.Upsert(ctx, []vector.Point{p}); err != nil {
			t.Fatalf("Upsert dim %d: %v", dim, err)
		}
	}
	if got, want := srv.Collections(), []string{"hxp_chunks_4", "hxp_chunks_6"}; !slices.Equal(got, want) {
		t.Fatalf("collections %v, want one per dimension %v", got, want)
	}
	for _, c := range srv.Collections() {
		if got := srv.FieldIndexes(c); !slices.Equal(got, []string{"file_id", "store_id"}) {
			t.Fatalf("%s payload indexes %v, want file_id and store_id", c, got)
		}
	}
	if n, err := x.Count(ctx, ""); err != nil || n != 3 {
		t.Fatalf("Count of every store = %d, %v; want 3 across both collections", n, err)
	}
}

func TestAPIKeyFromFile(t *testing.T) {
	const key = "s3cret-qdrant-key"
	srv := qdranttest.Start(t, qdranttest.Options{APIKey: key})
	ctx := context.Background()

	dir := t.TempDir()
	good := filepath.Join(dir, "key")
	if err := os.WriteFile(good, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := open(t, qdrant.Options{URL: srv.Addr, APIKeyFile: good}).Check(ctx); err != nil {
		t.Fatalf("Check with the key: %v", err)
	}

	err := open(t, qdrant.Options{URL: srv.Addr}).Check(ctx)
	if err == nil {
		t.Fatal("Check without the key succeeded against a server that requires one")
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = open(t, qdrant.Options{URL: srv.Addr, APIKeyFile: bad}).Check(ctx)
	if err == nil {
		t.Fatal("Check with a wrong key succeeded")
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error shows the key: %v", err)
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := qdrant.Open(qdrant.Options{URL: srv.Addr, APIKeyFile: empty}); err == nil || !strings.Contains(err.Error(), "qdrant.api_key_file") {
		t.Fatalf("empty key file: %v, want an error naming qdrant.api_key_file", err)
	}
	if _, err := qdrant.Open(qdrant.Options{URL: srv.Addr, APIKeyFile: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "qdrant.api_key_file") {
		t.Fatalf("missing key file: %v, want an error naming qdrant.api_key_file", err)
	}
}

func TestURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"localhost:6334", true},
		{"qdrant", true}, // the default port
		{"http://qdrant:6334", true},
		{"https://qdrant.example.com", true},
		{"grpc://[::1]:6334", true},
		{"", false},
		{"ftp://qdrant:6334", false},
		{"http://qdrant:6334/collections", false},
		{"qdrant:port", false},
		{"qdrant:70000", false},
	} {
		x, err := qdrant.Open(qdrant.Options{URL: tc.url})
		if tc.ok != (err == nil) {
			t.Errorf("URL %q: error %v, want ok=%v", tc.url, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "qdrant.url") {
			t.Errorf("URL %q: %v does not name qdrant.url", tc.url, err)
		}
		if x != nil {
			_ = x.Close()
		}
	}
}

func TestCheckFailsWhenServerIsDown(t *testing.T) {
	x := open(t, qdrant.Options{URL: "127.0.0.1:1"})
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	if err := x.Check(ctx); err == nil {
		t.Fatal("Check succeeded with no server")
	}
}
