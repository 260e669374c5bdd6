// Package cuda holds the CUDA build glue (build.sh, CMakeLists.txt) and the GPU
// verification kit (gpu-kit.sh, kit/); this test keeps the kit from rotting on the
// CPU-only machines that CI and most sessions run on.
package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kitSteps are run.sh's steps in report order.
var kitSteps = []string{"machine", "build", "version", "gpu-tests", "bandwidth", "models", "plan-check", "serve-bench", "bare-decode"}

// maxKitBytes is what the device tool carries (64 MiB) less a margin.
const maxKitBytes = 60 << 20

// TestGPUKitDryRun builds the kit with `make gpu-kit` and runs `run.sh --dry-run`: every
// step must finish, either ok or skipped for want of CUDA, and the report must hold
// the figures of the steps that ran (models, plan against measured memory, hxp bench
// through hxp serve, the bare loop). It also checks that the kit stays under the
// device tool's 64 MiB and holds no Go package.
func TestGPUKitDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hxp and runs the kit's dry run (about 2 minutes on 2 cores)")
	}
	for _, tool := range []string{"make", "bash", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to build and run the GPU kit: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	kit := filepath.Join(tmp, "kit")
	run(t, root, nil, "make", "-s", "gpu-kit", "GPU_KIT="+kit)

	var size int64
	err = filepath.WalkDir(kit, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".go") {
			t.Errorf("the kit holds a Go file, which go test ./... would try to build: %s", path)
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			size += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if size > maxKitBytes || size < 1<<20 {
		t.Errorf("kit size %d bytes, want 1 MiB..%d", size, maxKitBytes)
	}
	for _, f := range []string{"bin/hxp.gz", "bin/gpu.test.gz", "run.sh", "cuda/build.sh", "cuda/CMakeLists.txt", "cuda/bandwidth.cu",
		"ggml/src/CMakeLists.txt", "ggml/src/ggml-cuda/CMakeLists.txt", "ggml/include/ggml.h", "ggml/VERSION", "gpu-tests.txt"} {
		if _, err := os.Stat(filepath.Join(kit, f)); err != nil {
			t.Errorf("kit: %v", err)
		}
	}

	out := filepath.Join(tmp, "out")
	env := []string{"HXP_KIT_WORK=" + filepath.Join(tmp, "work")}
	run(t, root, env, filepath.Join(kit, "run.sh"), out, "--dry-run")
	b, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	if _, err := os.Stat(filepath.Join(out, "run.log")); err != nil {
		t.Errorf("run.log: %v", err)
	}
	for _, step := range kitSteps {
		row := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(step) + ` \| (ok|skipped: no CUDA[^|]*) \| \d+ \|$`)
		if !row.MatchString(report) {
			t.Errorf("step %s is neither ok nor skipped for want of CUDA in the report:\n%s", step, report)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\| phi3 \| tiny `),                                  // models table
		regexp.MustCompile(`(?m)^\| all \| .*\|$`),                                   // plan-check totals
		regexp.MustCompile(`all [2-4] models were loaded together`),                  // plan-check
		regexp.MustCompile(`(?m)^\| 4 \| 8 \| [0-9.]+ \| [0-9.]+ms \| [0-9.]+ms \|`), // hxp bench, 4 streams
		regexp.MustCompile(`(?m)^\| 4 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ ms \|`),       // bare loop, 4 streams
		regexp.MustCompile(`(?m)^\| memory used \(MiB\) \| \d+ \|`),                  // telemetry
	} {
		if !want.MatchString(report) {
			t.Errorf("report lacks %s:\n%s", want, report)
		}
	}
}

// run runs a command in dir and fails the test with its output when it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
}
