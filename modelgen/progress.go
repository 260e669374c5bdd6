package modelgen

import (
	"fmt"
	"io"
	"os"
)

// ProgressPrinter returns a progress callback for Generate that reports a percentage
// on w, prefixed with label. With tty set, one line is rewritten in place (carriage
// return) whenever the whole percentage changes; otherwise a plain line is printed at
// every 10%, which suits logs and pipes. Call finish once when the work is over (or
// failed) to end a partly written terminal line.
func ProgressPrinter(w io.Writer, label string, tty bool) (progress func(done, total int64), finish func()) {
	last := -1
	open := false
	progress = func(done, total int64) {
		if total <= 0 {
			return
		}
		pct := int(done * 100 / total)
		step := pct
		if !tty {
			step = pct / 10 * 10
		}
		if step == last {
			return
		}
		last = step
		if tty {
			fmt.Fprintf(w, "\r%s %3d%% (%s / %s)", label, pct, FormatBytes(done), FormatBytes(total))
			open = true
			return
		}
		fmt.Fprintf(w, "%s %3d%% (%s / %s)\n", label, step, FormatBytes(done), FormatBytes(total))
	}
	finish = func() {
		if open {
			fmt.Fprintln(w)
			open = false
		}
	}
	return progress, finish
}

// IsTerminal reports whether f is a character device (a terminal), for choosing the
// ProgressPrinter style.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// FormatBytes renders a byte count with a binary unit, e.g. "18.1 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
