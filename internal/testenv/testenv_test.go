package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func pgQueryInt(ctx context.Context, t *testing.T, url, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func pgExec(ctx context.Context, t *testing.T, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestPostgresKillAndRestartKeepsData(t *testing.T) {
	ctx := testCtx(t)
	pg := StartPostgres(t)
	if !strings.HasPrefix(pg.URL(), "postgres://postgres@127.0.0.1:") {
		t.Fatalf("URL %q is not a loopback URL", pg.URL())
	}
	pgExec(ctx, t, pg.URL(), "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)")
	// The server must not run as root: as root the tests run it as the postgres system user,
	// otherwise as the current user. Checked on the postmaster's OS process, not on database
	// sessions (the database role postgres says nothing about the OS user).
	if self, err := procUID(os.Getpid()); err != nil || self != os.Geteuid() {
		t.Fatalf("procUID of the test itself = %d, %v; want %d", self, err, os.Geteuid())
	}
	uid, err := procUID(pg.srv.proc.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	want := os.Geteuid()
	if want == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		if want, err = strconv.Atoi(u.Uid); err != nil {
			t.Fatal(err)
		}
	}
	if uid == 0 || uid != want {
		t.Fatalf("postmaster runs as uid %d, want %d (never root)", uid, want)
	}

	port := pg.Port()
	pg.Kill()
	if pg.Running() {
		t.Fatal("Running() after Kill")
	}
	conn, err := pgx.Connect(ctx, pg.URL())
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a killed server")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if pg.Port() != port {
		t.Fatalf("port changed across restart: %d -> %d", port, pg.Port())
	}
	if got := pgQueryInt(ctx, t, pg.URL(), "SELECT sum(v) FROM t"); got != 3 {
		t.Fatalf("after crash recovery sum = %d, want 3", got)
	}

	pg.Stop()
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if got := pgQueryInt(ctx, t, pg.URL(), "SELECT count(*) FROM t"); got != 2 {
		t.Fatalf("after clean restart count = %d, want 2", got)
	}
	if err := pg.Start(); err == nil {
		t.Fatal("Start on a running server succeeded")
	}
}

func TestSharedPostgresGivesEachTestItsOwnDatabase(t *testing.T) {
	ctx := testCtx(t)
	var names []string
	for i := 0; i < 2; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			db := SharedPostgres(t)
			names = append(names, db.Name)
			// The same table name in each database: they must not see each other.
			pgExec(ctx, t, db.URL(), "CREATE TABLE t (v int)")
		})
	}
	if names[0] == names[1] {
		t.Fatalf("both tests got database %s", names[0])
	}
	srv := sharedPG
	for _, name := range names {
		if got := pgQueryInt(ctx, t, srv.URL(), fmt.Sprintf("SELECT count(*) FROM pg_database WHERE datname = '%s'", name)); got != 0 {
			t.Fatalf("database %s not dropped after its test", name)
		}
	}
}

func TestRedisKillAndRestart(t *testing.T) {
	ctx := testCtx(t)
	r := StartRedis(t)
	if err := r.command(ctx, 0, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	if err := r.command(ctx, 0, "PING"); err == nil {
		t.Fatal("PING succeeded on a killed server")
	}
	addr := r.Addr()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if r.Addr() != addr {
		t.Fatalf("address changed across restart: %s -> %s", addr, r.Addr())
	}
	if err := r.command(ctx, 0, "PING"); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if r.Running() {
		t.Fatal("Running() after Stop")
	}
}

func TestSharedRedisDatabasesAreDistinct(t *testing.T) {
	a, b := SharedRedis(t), SharedRedis(t)
	if a.DB == b.DB || a.URL() == b.URL() {
		t.Fatalf("two calls got the same database %d", a.DB)
	}
	ctx := testCtx(t)
	if err := a.Server.command(ctx, b.DB, "SET", "x", "1"); err != nil {
		t.Fatal(err)
	}
	// The key counts 1 in the database it was set in and 0 in the other.
	for _, c := range []struct {
		db   int
		want string
	}{{b.DB, ":1"}, {a.DB, ":0"}} {
		got, err := a.Server.reply(ctx, c.db, "EXISTS", "x")
		if err != nil || got != c.want {
			t.Fatalf("EXISTS x in database %d = %q, %v; want %q (x was set in database %d)", c.db, got, err, c.want, b.DB)
		}
	}
}

func TestPrometheusScrapesTarget(t *testing.T) {
	ctx := testCtx(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE hxp_testenv_answer gauge\nhxp_testenv_answer 42\n")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	target := l.Addr().String()
	prom := StartPrometheus(t, []string{target}, 200*time.Millisecond)
	if err := prom.WaitForScrape(ctx, target); err != nil {
		t.Fatalf("%v\nprometheus log:\n%s", err, prom.LogTail())
	}
	v, err := prom.QueryValue(ctx, "hxp_testenv_answer")
	if err != nil {
		t.Fatal(err)
	}
	if v != 42 {
		t.Fatalf("hxp_testenv_answer = %v, want 42", v)
	}
	samples, err := prom.Query(ctx, `up{job="hxp"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 1 || samples[0].Labels["instance"] != target {
		t.Fatalf("up samples = %+v", samples)
	}
	if _, err := prom.Query(ctx, "sum(("); err == nil {
		t.Fatal("a malformed query did not fail")
	}
}

func TestCheckRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yml")
	rules := "groups:\n  - name: hxp\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 1m\n"
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	CheckRules(t, path)
}

func TestReadyErrorQuotesLog(t *testing.T) {
	dir, err := newServerDir("broken")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &server{
		name: "broken",
		dir:  dir,
		launch: func(port int, logPath string) (*process, error) {
			return startProcess("broken", logPath, nil, "/bin/sh", "-c", "echo 'FATAL: cannot start'; exit 3")
		},
		ready: func(ctx context.Context) error { return errNotReady },
	}
	err = s.start()
	if err == nil || !strings.Contains(err.Error(), "FATAL: cannot start") || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("err = %v", err)
	}
}
