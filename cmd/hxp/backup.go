package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/hxp-ai/hxp/backup"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/modelgen"
)

func init() {
	register(command{name: "backup", summary: "write an archive of the keys, the usage ledger, the vector stores and the config (secrets left out)", run: runBackup})
	register(command{name: "backup verify", summary: "check a backup archive's checksums without restoring it", run: runBackupVerify})
	register(command{name: "restore", summary: "restore a backup archive into an empty database and vector index", run: runRestore})
}

func runBackup(args []string) error {
	fs := newFlags("backup", "--out FILE [--config FILE] [--postgres-url URL] [--no-vectors]")
	out := fs.String("out", "", "the archive to write (tar, zstd-compressed; required)")
	noVectors := fs.Bool("no-vectors", false, "leave the vector index and the embedded catalog out (the embedded ones are locked while the server runs)")
	db := addDBFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out FILE is required", errUsage)
	}
	opts := backup.Options{}
	if *db.config != "" {
		cfg, err := config.Load(*db.config, config.Options{Environ: os.Environ(), SkipFiles: true})
		if err != nil {
			return err
		}
		opts.Config = cfg
	}
	url, err := dbURL(db)
	if err != nil {
		return err
	}
	opts.PostgresURL = url
	if opts.Config != nil && !*noVectors {
		// The catalog is in PostgreSQL when there is one, as the server decides.
		if opts.Retrieval, err = backup.OpenRetrieval(opts.Config.Retrieval, url != ""); err != nil {
			return err
		}
		defer opts.Retrieval.Close()
	}
	if url == "" && opts.Config == nil {
		return fmt.Errorf("%w: nothing to back up: pass --config or --postgres-url (or set HXP_POSTGRES_URL)", errUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var finish func()
	opts.Progress, finish = rowProgress(os.Stderr, modelgen.IsTerminal(os.Stderr))
	m, err := backup.Create(ctx, *out, opts)
	finish()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", *out)
	printManifest(os.Stdout, m)
	return nil
}

func runBackupVerify(args []string) error {
	fs := newFlags("backup verify", "FILE")
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one archive", errUsage)
	}
	m, err := backup.Verify(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Printf("%s: sound\n", fs.Arg(0))
	printManifest(os.Stdout, m)
	return nil
}

func runRestore(args []string) error {
	fs := newFlags("restore", "FILE [--force] [--postgres-url URL | --config FILE]")
	force := fs.Bool("force", false, "replace the rows of a target database, the points of a vector index and the catalog file that are not empty")
	db := addDBFlags(fs)
	// The archive may come before or after the flags.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, -1); err != nil {
		return err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 || file == "" {
		return fmt.Errorf("%w: give one archive", errUsage)
	}
	url, err := dbURL(db)
	if err != nil {
		return err
	}
	ropts := backup.RestoreOptions{PostgresURL: url, Force: *force}
	if *db.config != "" {
		cfg, err := config.Load(*db.config, config.Options{Environ: os.Environ(), SkipFiles: true})
		if err != nil {
			return err
		}
		if ropts.Retrieval, err = backup.OpenRetrieval(cfg.Retrieval, url != ""); err != nil {
			return err
		}
		defer ropts.Retrieval.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var finish func()
	ropts.Progress, finish = rowProgress(os.Stderr, modelgen.IsTerminal(os.Stderr))
	m, err := backup.Restore(ctx, file, ropts)
	finish()
	if err != nil {
		return err
	}
	if len(m.Tables()) == 0 && !m.HasRetrieval() {
		fmt.Printf("%s holds no tables: nothing to restore (its config.yaml is a record, restored by hand)\n", file)
	} else {
		fmt.Printf("restored %s\n", file)
	}
	printManifest(os.Stdout, m)
	return nil
}

// printManifest lists an archive's parts.
func printManifest(w io.Writer, m *backup.Manifest) {
	fmt.Fprintf(w, "taken %s, schema version %d\n", m.CreatedAt.Format("2006-01-02 15:04:05Z07:00"), m.SchemaVersion)
	for _, p := range m.Parts {
		fmt.Fprintf(w, "  %-28s %10d rows %10s  sha256 %s\n", p.Name, p.Rows, modelgen.FormatBytes(p.Bytes), p.SHA256[:16])
	}
	if len(m.Redacted) > 0 {
		fmt.Fprintf(w, "  config fields left out: %s\n", strings.Join(m.Redacted, ", "))
	}
}

// rowProgress follows each part's rows on a terminal, one line rewritten in place per
// whole percent; off a terminal it prints nothing. Call finish once at the end.
func rowProgress(w io.Writer, tty bool) (progress backup.Progress, finish func()) {
	if !tty {
		return nil, func() {}
	}
	last, lastPart := -1, ""
	open := false
	progress = func(part string, done, total int64) {
		pct := 100
		if total > 0 {
			pct = int(done * 100 / total)
		}
		if part == lastPart && pct == last {
			return
		}
		if part != lastPart && open {
			fmt.Fprintln(w)
		}
		last, lastPart, open = pct, part, true
		fmt.Fprintf(w, "\r%-28s %3d%% (%d / %d rows)", part, pct, done, total)
	}
	finish = func() {
		if open {
			fmt.Fprintln(w)
		}
	}
	return progress, finish
}
