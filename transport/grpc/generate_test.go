package grpc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

// protocVersion is the header line naming protoc's version, which differs between
// machines without changing the code.
var protocVersion = regexp.MustCompile(`(?m)^//\s+protoc\s+.*$`)

// TestGeneratedCodeIsFresh regenerates the Go code of proto/ into a temporary
// directory with scripts/gen-proto.sh (protoc and the plugins pinned in go.mod) and
// fails when the committed hxpv1 files differ: run `make proto` and commit.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("protoc not found in CI: scripts/test-deps.sh installs protobuf-compiler")
		}
		t.Skip("protoc not found (apt-get install protobuf-compiler, or bash scripts/test-deps.sh)")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "gen-proto.sh"), out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen-proto.sh: %v\n%s", err, b)
	}
	for _, name := range []string{"inference.pb.go", "inference_grpc.pb.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, "transport", "grpc", "hxpv1", name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(root, "transport", "grpc", "hxpv1", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(protocVersion.ReplaceAll(fresh, nil), protocVersion.ReplaceAll(committed, nil)) {
			t.Errorf("transport/grpc/hxpv1/%s is stale: proto/hxp/v1/inference.proto changed; run `make proto` and commit", name)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(root, "transport", "grpc", "hxpv1"))
	if len(entries) != 2 {
		t.Errorf("transport/grpc/hxpv1 has %d files, want the 2 generated ones", len(entries))
	}
}
