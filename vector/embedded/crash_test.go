package embedded_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
)

// crashEnv, when set in the environment, makes TestCrashSafety the child: it upserts
// batches into the index in that directory until it is killed.
const crashEnv = "HXP_VECTOR_CRASH_CHILD_DIR"

const (
	crashBatch = 40 // points per upsert
	crashDim   = 64
)

// crashPoints is batch b: file "b<b>", crashBatch chunks.
func crashPoints(b int) []vector.Point {
	pts := make([]vector.Point, crashBatch)
	for i := range pts {
		v := make([]float32, crashDim)
		for j := range v {
			v[j] = float32((b*31+i*7+j)%13) + 1
		}
		file := fmt.Sprintf("b%d", b)
		pts[i] = vector.Point{ID: vector.ChunkID("crash", file, i), StoreID: "crash", FileID: file, Chunk: i,
			Text: strings.Repeat(fmt.Sprintf("batch %d chunk %d ", b, i), 20), Attributes: map[string]any{"batch": float64(b)}, Vector: v}
	}
	return pts
}

func crashChild(dir string) {
	x, err := embedded.Open(dir, embedded.Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	n, _ := x.Count(context.Background(), "")
	for b := n / crashBatch; ; b++ {
		if err := x.Upsert(context.Background(), crashPoints(b)); err != nil {
			fmt.Println("upsert:", err)
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", b) // after the commit returned: durable
	}
}

// TestCrashSafety kills (SIGKILL) a process that is upserting in a loop, three times, and
// checks after each kill that the index opens, that it holds exactly the whole batches
// the child reported committed plus at most the one in flight (never part of one), and
// that every point is complete.
func TestCrashSafety(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	for round := range 3 {
		committed := runAndKill(t, dir, 5+round*7)
		x, err := embedded.Open(dir, embedded.Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		n, err := x.Count(context.Background(), "crash")
		if err != nil {
			t.Fatal(err)
		}
		if n%crashBatch != 0 {
			t.Fatalf("round %d: %d points, not a whole number of %d-point upserts", round, n, crashBatch)
		}
		batches := n / crashBatch
		if batches != committed+1 && batches != committed+2 {
			t.Fatalf("round %d: %d batches stored, child reported %d committed (batches 0..%d; one more may have been in flight)",
				round, batches, committed+1, committed)
		}
		perFile := map[string]int{}
		err = x.Scroll(context.Background(), "crash", func(p vector.Point) error {
			b, err := strconv.Atoi(strings.TrimPrefix(p.FileID, "b"))
			if err != nil || b >= batches {
				return fmt.Errorf("point of unexpected file %q", p.FileID)
			}
			want := crashPoints(b)[p.Chunk]
			if p.ID != want.ID || p.Text != want.Text || p.Attributes["batch"] != float64(b) || len(p.Vector) != crashDim {
				return fmt.Errorf("point %s of file %s is not complete: %+v", p.ID, p.FileID, p)
			}
			perFile[p.FileID]++
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for f, c := range perFile {
			if c != crashBatch {
				t.Fatalf("round %d: file %s has %d of its %d points", round, f, c, crashBatch)
			}
		}
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// runAndKill starts the child on dir, kills it once it has reported at least minBatches
// more commits, and returns the last batch it reported committed.
func runAndKill(t *testing.T, dir string, minBatches int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	last, seen := -1, 0
	for sc.Scan() {
		var b int
		if _, err := fmt.Sscanf(sc.Text(), "committed %d", &b); err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("child: %s", sc.Text())
		}
		last = b
		if seen++; seen == minBatches {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	// Lines written before the kill landed may still be in the pipe.
	for sc.Scan() {
		var b int
		if _, err := fmt.Sscanf(sc.Text(), "committed %d", &b); err == nil {
			last = b
		}
	}
	_ = cmd.Wait()
	if seen < minBatches {
		t.Fatalf("child exited after %d commits", seen)
	}
	return last
}
