package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisSharedDatabases is the number of logical databases of the shared Redis server, one per
// test that calls SharedRedis.
const redisSharedDatabases = 1024

// Redis is a Redis server started for tests, listening on 127.0.0.1 without persistence: after
// Kill (or Stop) and Start it comes back empty, as a crashed cache would.
type Redis struct {
	srv       *server
	bin       string
	databases int
}

// StartRedis starts a Redis server owned by the test; it is stopped when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := requireBinary(t, "redis-server", "/usr/bin/redis-server")
	r, err := newRedis(bin, 16)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(r.srv.destroy)
	if err := r.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return r
}

// newRedis prepares a Redis server without starting it.
func newRedis(bin string, databases int) (*Redis, error) {
	dir, err := newServerDir("redis")
	if err != nil {
		return nil, err
	}
	r := &Redis{bin: bin, databases: databases}
	r.srv = &server{
		name:    "redis",
		dir:     dir,
		stopSig: syscall.SIGTERM,
		launch:  r.launch,
		ready: func(ctx context.Context) error {
			return r.command(ctx, 0, "PING")
		},
	}
	return r, nil
}

// launch starts redis-server on port.
func (r *Redis) launch(port int, logPath string) (*process, error) {
	return startProcess("redis", logPath, nil, r.bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", r.srv.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--databases", strconv.Itoa(r.databases),
		"--logfile", "",
		"--loglevel", "warning",
	)
}

// Addr returns host:port of the server.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.srv.port) }

// URL returns the connection URL of logical database 0.
func (r *Redis) URL() string { return r.DatabaseURL(0) }

// DatabaseURL returns the connection URL of a logical database.
func (r *Redis) DatabaseURL(db int) string {
	return fmt.Sprintf("redis://%s/%d", r.Addr(), db)
}

// Start starts the server again after Stop or Kill, on the same port, and waits until it
// answers PING.
func (r *Redis) Start() error {
	if err := r.srv.start(); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	return nil
}

// Stop shuts the server down cleanly.
func (r *Redis) Stop() { r.srv.stop() }

// Kill sends SIGKILL to the server and waits until it is gone.
func (r *Redis) Kill() { r.srv.kill() }

// Running reports whether the server process is alive.
func (r *Redis) Running() bool { return r.srv.running() }

// LogTail returns the last lines of the server's log, for failure messages.
func (r *Redis) LogTail() string { return r.srv.logTail() }

// command runs one command with string arguments on logical database db and returns an error
// unless the reply is a status or an integer.
func (r *Redis) command(ctx context.Context, db int, args ...string) error {
	_, err := r.reply(ctx, db, args...)
	return err
}

// reply runs one command like command and returns its reply line: "+OK" for a status, ":3"
// for an integer. It speaks RESP directly so that the harness needs no client library.
func (r *Redis) reply(ctx context.Context, db int, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.Addr())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	} else {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	}
	cmds := [][]string{args}
	if db != 0 {
		cmds = [][]string{{"SELECT", strconv.Itoa(db)}, args}
	}
	var req strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&req, "*%d\r\n", len(c))
		for _, a := range c {
			fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return "", err
	}
	br := bufio.NewReader(conn)
	var line string
	for range cmds {
		line, err = br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "-") {
			return "", fmt.Errorf("redis: %s", line[1:])
		}
		if !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, ":") {
			return "", fmt.Errorf("redis: unexpected reply %q", line)
		}
	}
	return line, nil
}
