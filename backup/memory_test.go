package backup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestBackupMemoryDoesNotGrowWithRows backs up a ledger of 10k rows and one of 1M rows
// in child processes and compares their peak RSS: streaming means the million rows
// cost no more memory than the ten thousand. It takes about a minute on two cores, so
// it runs only with HXP_BACKUP_1M=1.
func TestBackupMemoryDoesNotGrowWithRows(t *testing.T) {
	if os.Getenv("HXP_BACKUP_1M") != "1" {
		t.Skip("set HXP_BACKUP_1M=1 to measure the peak RSS of a 1M-row backup")
	}
	ctx := testCtx(t)
	src := emptyDB(ctx, t)
	peak := func(rows int) int64 {
		out := filepath.Join(t.TempDir(), "hxp.tar.zst")
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBackupChild$")
		cmd.Env = append(os.Environ(), "HXP_BACKUP_CHILD_URL="+src, "HXP_BACKUP_CHILD_OUT="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child backup: %v\n%s", err, b)
		}
		m, err := Verify(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m.Tables() {
			if p.Table == "usage_records" && p.Rows != int64(rows) {
				t.Fatalf("usage_records rows = %d, want %d", p.Rows, rows)
			}
		}
		st, _ := os.Stat(out)
		kib := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		t.Logf("%d ledger rows: peak RSS %.1f MiB, archive %.1f MiB", rows, float64(kib)/1024, float64(st.Size())/(1<<20))
		return kib * 1024
	}
	bulk := func(from, to int) {
		execSQL(ctx, t, src, `INSERT INTO usage_records (request_id, key_id, model, prompt_tokens, completion_tokens,
			latency_ms, status_code, created_at)
			SELECT 'bulk-' || g, 'key-' || (g % 97), 'model-a', g % 1000, g % 333, 17, 200, now() - g * interval '1 second'
			FROM generate_series(`+itoa(from)+`, `+itoa(to)+`) g`)
	}
	bulk(1, 10_000)
	small := peak(10_000)
	bulk(10_001, 1_000_000)
	large := peak(1_000_000)
	t.Logf("peak RSS ratio 1M/10k rows: %.2f", float64(large)/float64(small))
	if large > small+32<<20 {
		t.Errorf("peak RSS grew from %d to %d bytes with the ledger: the backup is not streaming", small, large)
	}
}

// TestBackupChild is the child process of TestBackupMemoryDoesNotGrowWithRows.
func TestBackupChild(t *testing.T) {
	url, out := os.Getenv("HXP_BACKUP_CHILD_URL"), os.Getenv("HXP_BACKUP_CHILD_OUT")
	if url == "" {
		t.Skip("child process of TestBackupMemoryDoesNotGrowWithRows")
	}
	if _, err := Create(testCtx(t), out, Options{PostgresURL: url}); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
