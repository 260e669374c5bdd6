package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// pgBinDir is where Debian's postgresql-15 package installs the server binaries.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// pgUser is the superuser of every test cluster; authentication is "trust".
const pgUser = "postgres"

// Postgres is a PostgreSQL server started for tests. It listens on 127.0.0.1 and on a unix
// socket in its own directory, trusts every local connection, and trades durability for speed
// (fsync=off). Commits stay synchronous, so a committed transaction survives Kill followed by
// Start: its WAL is in the OS page cache, which a killed process does not lose.
type Postgres struct {
	srv      *server
	dataDir  string
	sockDir  string
	bin      string
	cred     *syscall.Credential
	dbSerial int
	mu       sync.Mutex
}

// StartPostgres starts a PostgreSQL server owned by the test: it is stopped and its data
// removed when the test ends. Use it for tests that stop or kill the server; otherwise
// SharedPostgres is faster.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := requireBinary(t, "postgres", filepath.Join(pgBinDir, "postgres"))
	initdb := requireBinary(t, "initdb", filepath.Join(pgBinDir, "initdb"))
	pg, err := newPostgres(bin, initdb)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pg.srv.destroy)
	if err := pg.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return pg
}

// newPostgres prepares a data directory (a copy of a cluster initialised once per test
// binary) without starting the server.
func newPostgres(bin, initdb string) (*Postgres, error) {
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	tmpl, err := pgTemplate(initdb, cred)
	if err != nil {
		return nil, err
	}
	dir, err := newServerDir("postgres")
	if err != nil {
		return nil, err
	}
	pg := &Postgres{
		dataDir: filepath.Join(dir, "data"),
		sockDir: filepath.Join(dir, "sock"),
		bin:     bin,
		cred:    cred,
	}
	pg.srv = &server{
		name:    "postgres",
		dir:     dir,
		stopSig: syscall.SIGINT, // "fast" shutdown: roll back open transactions, then exit
		launch:  pg.launch,
		ready:   pg.ready,
	}
	// cp -a keeps the owner and the 0700 mode that PostgreSQL insists on.
	if out, err := exec.Command("cp", "-a", tmpl, pg.dataDir).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("copy postgres template cluster: %v: %s", err, out)
	}
	if err := mkdirOwned(pg.sockDir, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return pg, nil
}

// launch starts the postmaster on port.
func (pg *Postgres) launch(port int, logPath string) (*process, error) {
	return startProcess("postgres", logPath, pg.cred, pg.bin,
		"-D", pg.dataDir,
		"-p", strconv.Itoa(port),
		"-k", pg.sockDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
		"-c", "max_wal_senders=0",
		"-c", "wal_level=minimal",
	)
}

// ready connects and runs a query: accepting TCP connections is not enough while the server
// is still recovering.
func (pg *Postgres) ready(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// URL returns a connection URL for the "postgres" database as the superuser.
func (pg *Postgres) URL() string {
	return pg.DatabaseURL("postgres")
}

// DatabaseURL returns a connection URL for the named database as the superuser.
func (pg *Postgres) DatabaseURL(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, pg.srv.port, name)
}

// Port returns the TCP port; it stays the same across Stop/Kill and Start.
func (pg *Postgres) Port() int { return pg.srv.port }

// SocketDir returns the directory holding the server's unix socket.
func (pg *Postgres) SocketDir() string { return pg.sockDir }

// Start starts the server again after Stop or Kill, on the same port and data directory, and
// waits until it accepts queries (after crash recovery, if it was killed).
func (pg *Postgres) Start() error {
	if err := pg.srv.start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	return nil
}

// Stop shuts the server down cleanly ("fast" mode: open transactions are rolled back).
func (pg *Postgres) Stop() { pg.srv.stop() }

// Kill sends SIGKILL to the postmaster and all its backends, as a crash or an OOM kill would,
// and waits until they are gone. Start then runs crash recovery.
func (pg *Postgres) Kill() { pg.srv.kill() }

// Running reports whether the server process is alive.
func (pg *Postgres) Running() bool { return pg.srv.running() }

// LogTail returns the last lines of the server's log, for failure messages.
func (pg *Postgres) LogTail() string { return pg.srv.logTail() }

// CreateDatabase creates a new, empty database with a unique name and returns its name.
func (pg *Postgres) CreateDatabase(ctx context.Context) (string, error) {
	pg.mu.Lock()
	pg.dbSerial++
	name := fmt.Sprintf("test_%d", pg.dbSerial)
	pg.mu.Unlock()
	if err := pg.exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, nil
}

// DropDatabase drops a database, disconnecting its sessions first.
func (pg *Postgres) DropDatabase(ctx context.Context, name string) error {
	if err := pg.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// exec runs one statement on the "postgres" database.
func (pg *Postgres) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// pgCredential returns the user PostgreSQL must run as. PostgreSQL refuses to run as root, so
// when the tests run as root the server runs as the postgres system user that Debian's package
// creates; otherwise it runs as the current user.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgUser)
	if err != nil {
		return nil, fmt.Errorf("tests run as root and PostgreSQL refuses to, but the %q system user does not exist (%v): run scripts/test-deps.sh", pgUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid of %s: %w", pgUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid of %s: %w", pgUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// mkdirOwned creates a private directory owned by cred's user (or the current user).
func mkdirOwned(dir string, cred *syscall.Credential) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	return nil
}

var (
	pgTemplateOnce sync.Once
	pgTemplateDir  string
	pgTemplateErr  error
)

// pgTemplate runs initdb once per test binary; each server starts from a copy, which takes a
// fraction of initdb's time.
func pgTemplate(initdb string, cred *syscall.Credential) (string, error) {
	pgTemplateOnce.Do(func() {
		dir, err := newServerDir("pgtemplate")
		if err != nil {
			pgTemplateErr = err
			return
		}
		data := filepath.Join(dir, "data")
		if err := mkdirOwned(data, cred); err != nil {
			pgTemplateErr = err
			return
		}
		cmd := exec.Command(initdb, "-D", data, "-U", pgUser, "--auth=trust", "--encoding=UTF8",
			"--locale=C", "--no-sync", "--no-instructions")
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			pgTemplateErr = fmt.Errorf("initdb: %v: %s", err, out)
			return
		}
		pgTemplateDir = data
		registerProcessCleanup(func() { os.RemoveAll(dir) })
	})
	return pgTemplateDir, pgTemplateErr
}
