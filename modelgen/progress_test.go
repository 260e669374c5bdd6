package modelgen

import (
	"strings"
	"testing"
)

func TestProgressPrinterPlainLines(t *testing.T) {
	var b strings.Builder
	progress, finish := ProgressPrinter(&b, "gen", false)
	for done := int64(0); done <= 1000; done += 5 {
		progress(done, 1000)
	}
	finish()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "gen   0% ") || !strings.HasPrefix(lines[10], "gen 100% (1000 B / 1000 B)") {
		t.Errorf("plain progress printed %d lines: %q", len(lines), b.String())
	}
	if strings.Contains(b.String(), "\r") {
		t.Error("plain progress contains a carriage return")
	}
}

func TestProgressPrinterTerminalLine(t *testing.T) {
	var b strings.Builder
	progress, finish := ProgressPrinter(&b, "gen", true)
	for done := int64(0); done <= 200; done++ {
		progress(done, 200)
	}
	finish()
	finish() // idempotent
	out := b.String()
	if n := strings.Count(out, "\r"); n != 101 {
		t.Errorf("%d in-place updates, want 101 (one per percent)", n)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\rgen 100% (200 B / 200 B)\n") {
		t.Errorf("terminal progress ends %q", out[max(0, len(out)-40):])
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 18977568: "18.1 MiB", 93 << 30: "93.0 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{999: "999", 893568: "893.6K", 100682496: "100.7M", 46702792704: "46.7B"} {
		if got := FormatCount(n); got != want {
			t.Errorf("FormatCount(%d) = %q, want %q", n, got, want)
		}
	}
}
