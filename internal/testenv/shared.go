package testenv

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Shared servers live as long as the test binary. They are stopped by Main when the package
// uses it in TestMain; otherwise they die with the test binary (they are started with a
// parent-death signal) and their directories are removed by the next test binary that starts a
// server.

var (
	cleanupMu   sync.Mutex
	cleanupFunc []func()
)

// registerProcessCleanup adds f to what Main runs after all tests.
func registerProcessCleanup(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanupFunc = append(cleanupFunc, f)
}

// Main runs the tests and then stops the shared servers and removes their data. Call it from
// TestMain in packages that use SharedPostgres or SharedRedis:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	cleanupMu.Lock()
	fs := cleanupFunc
	cleanupFunc = nil
	cleanupMu.Unlock()
	// Last registered first, like t.Cleanup.
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	os.Exit(code)
}

// PostgresDB is a fresh database on the shared PostgreSQL server, owned by one test.
type PostgresDB struct {
	// Server is the shared server. Do not stop or kill it: other tests use it.
	Server *Postgres
	// Name is the database's name.
	Name string
}

// URL returns the connection URL of the database.
func (d *PostgresDB) URL() string { return d.Server.DatabaseURL(d.Name) }

var (
	sharedPGOnce sync.Once
	sharedPG     *Postgres
	sharedPGErr  error
)

// SharedPostgres returns a new, empty database on a PostgreSQL server shared by all tests of
// the test binary. The database is dropped when the test ends.
func SharedPostgres(t testing.TB) *PostgresDB {
	t.Helper()
	bin := requireBinary(t, "postgres", filepath.Join(pgBinDir, "postgres"))
	initdb := requireBinary(t, "initdb", filepath.Join(pgBinDir, "initdb"))
	sharedPGOnce.Do(func() {
		pg, err := newPostgres(bin, initdb)
		if err != nil {
			sharedPGErr = err
			return
		}
		registerProcessCleanup(pg.srv.destroy)
		if err := pg.Start(); err != nil {
			sharedPGErr = err
			return
		}
		sharedPG = pg
	})
	if sharedPGErr != nil {
		t.Fatalf("testenv: shared postgres: %v", sharedPGErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := sharedPG.CreateDatabase(ctx)
	if err != nil {
		t.Fatalf("testenv: %v; postgres log tail:\n%s", err, sharedPG.LogTail())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sharedPG.DropDatabase(ctx, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return &PostgresDB{Server: sharedPG, Name: name}
}

// RedisDB is a fresh logical database (SELECT n) on the shared Redis server, owned by one
// test.
type RedisDB struct {
	// Server is the shared server. Do not stop or kill it: other tests use it.
	Server *Redis
	// DB is the logical database number.
	DB int
}

// URL returns the connection URL of the logical database.
func (d *RedisDB) URL() string { return d.Server.DatabaseURL(d.DB) }

var (
	sharedRedisOnce sync.Once
	sharedRedis     *Redis
	sharedRedisErr  error
	sharedRedisMu   sync.Mutex
	sharedRedisNext = 1 // database 0 is left alone
)

// SharedRedis returns a logical database of its own on a Redis server shared by all tests of
// the test binary. The database is flushed when the test ends.
func SharedRedis(t testing.TB) *RedisDB {
	t.Helper()
	bin := requireBinary(t, "redis-server", "/usr/bin/redis-server")
	sharedRedisOnce.Do(func() {
		r, err := newRedis(bin, redisSharedDatabases)
		if err != nil {
			sharedRedisErr = err
			return
		}
		registerProcessCleanup(r.srv.destroy)
		if err := r.Start(); err != nil {
			sharedRedisErr = err
			return
		}
		sharedRedis = r
	})
	if sharedRedisErr != nil {
		t.Fatalf("testenv: shared redis: %v", sharedRedisErr)
	}
	sharedRedisMu.Lock()
	db := sharedRedisNext
	sharedRedisNext++
	sharedRedisMu.Unlock()
	if db >= redisSharedDatabases {
		t.Fatalf("testenv: shared redis: all %d logical databases are taken; start a server of your own with StartRedis", redisSharedDatabases)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sharedRedis.command(ctx, db, "FLUSHDB"); err != nil {
			t.Errorf("testenv: flush redis db %d: %v", db, err)
		}
	})
	return &RedisDB{Server: sharedRedis, DB: db}
}
