package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testCtx returns a context that ends with the test or after two minutes.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// query runs one query returning one row on url.
func query(ctx context.Context, t *testing.T, url, sql string, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// entry is one file of an archive, read whole (test archives are small).
type entry struct {
	name string
	data []byte
}

// readEntries decompresses and reads every entry of an archive.
func readEntries(t *testing.T, path string) []entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h.Name, b})
	}
}

// writeEntries writes entries as an archive, as a damaged or forged one would be.
func writeEntries(t *testing.T, path string, es []entry) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range es {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// editArchive copies src to dst with edit applied to the entry called name. With
// reseal, the manifest is made to agree with the edited data (sizes, sums and its own
// checksum), as a forged but consistent archive would.
func editArchive(t *testing.T, src, dst, name string, reseal bool, edit func([]byte) []byte) {
	t.Helper()
	es := readEntries(t, src)
	found := false
	for i := range es {
		if es[i].name == name {
			es[i].data = edit(bytes.Clone(es[i].data))
			found = true
		}
	}
	if !found {
		t.Fatalf("archive has no entry %s", name)
	}
	if reseal {
		var m Manifest
		if err := json.Unmarshal(es[0].data, &m); err != nil {
			t.Fatal(err)
		}
		for i, p := range m.Parts {
			for _, e := range es {
				if e.name == p.Name {
					sum := sha256.Sum256(e.data)
					m.Parts[i].Bytes, m.Parts[i].SHA256 = int64(len(e.data)), hex.EncodeToString(sum[:])
					m.Parts[i].Rows = int64(bytes.Count(e.data, []byte{'\n'}))
				}
			}
		}
		es[0].data, _ = json.Marshal(m)
		sum := sha256.Sum256(es[0].data)
		es[1].data = []byte(hex.EncodeToString(sum[:]) + "  manifest.json\n")
	}
	writeEntries(t, dst, es)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
