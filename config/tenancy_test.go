package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTenancySections(t *testing.T) {
	dir := t.TempDir()
	adminFile := filepath.Join(dir, "admin.key")
	os.WriteFile(adminFile, []byte("# the admin key\nadmin-from-file\n"), 0o600)
	y := `
auth:
  required: true
  cache_ttl: 10s
  admin_key_file: ` + adminFile + `
  keys:
    - {id: team-a, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, models: [a], rpm: 60, tpm: 1000}
postgres: {url: "postgres://hxp@db/hxp"}
redis: {url: "redis://cache:6379/0", fail_mode: closed}
cache: {enabled: true}
upstreams:
  - {model: b, url: "http://10.0.0.2:8000"}
routing:
  fallbacks: {a: [b]}
  breaker: {failures: 3}
server:
  tls: {cert_file: /etc/hxp/cert.pem, key_file: /etc/hxp/key.pem}
  cors: {origins: ["https://app.example.com"]}
models:
  - {name: a, path: x}
`
	env := []string{"HXP_POSTGRES_URL=postgres://hxp:pw@db2/hxp", "HXP_REDIS_URL=redis://cache2:6379/1", "HXP_AUTH_NODE_KEY=node-key-123",
		"HXP_ROUTING_BREAKER_OPEN_FOR=30s"}
	c, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2, Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.URL != "postgres://hxp:pw@db2/hxp" || c.Redis.URL != "redis://cache2:6379/1" || c.Auth.NodeKey != "node-key-123" {
		t.Errorf("environment not applied: %+v %+v %q", c.Postgres, c.Redis, c.Auth.NodeKey)
	}
	if !c.Auth.Required || c.Auth.CacheTTL.D() != 10*time.Second || len(c.Auth.Keys) != 1 || c.Auth.Keys[0].RPM != 60 {
		t.Errorf("auth: %+v", c.Auth)
	}
	if c.Redis.FailMode != "closed" || c.Redis.Timeout.D() != DefaultRedisTimeout || c.Cache.TTL.D() != DefaultCacheTTL ||
		c.Postgres.SpoolPath != DefaultSpoolPath || c.Routing.Retries != DefaultRetries || c.Routing.Breaker.Failures != 3 ||
		c.Routing.Breaker.OpenFor.D() != 30*time.Second || c.Routing.Fallbacks["a"][0] != "b" || !c.Server.TLS.Enabled() {
		t.Errorf("sections: %+v %+v %+v %+v", c.Redis, c.Cache, c.Postgres, c.Routing)
	}
	if c.Auth.AdminKey != "" {
		t.Error("a key file was read with SkipFiles")
	}
	// Files are read when not skipped; the environment wins over a file.
	c, err = Finish(&Config{Auth: Auth{KeyAuth: KeyAuth{AdminKeyFile: adminFile}}, Models: []Model{{Name: "a", Path: writeGGUF(t, dir, "a.gguf")}}},
		Options{HostCores: 2})
	if err != nil || c.Auth.AdminKey != "admin-from-file" {
		t.Fatalf("admin key file: %v %q", err, c.Auth.AdminKey)
	}
}

func TestTenancyValidation(t *testing.T) {
	y := `
auth:
  required: true
  keys:
    - {id: Bad Id, sha256: abc}
postgres: {url: "mysql://x"}
redis: {url: "http://x", fail_mode: maybe, lease_horizon: 5s}
upstreams:
  - {model: b, url: "ftp://x"}
  - {model: c, url: "http://user:pw@x:1"}
routing:
  retries: 99
  fallbacks: {a: [a, zz], nope: [a]}
server:
  tls: {cert_file: x}
  cors: {origins: ["app.example.com"]}
models:
  - {name: a, path: x}
`
	_, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2})
	ps := problemsOf(t, err)
	for _, w := range []struct{ path, substr string }{
		{"auth.keys[0].id", `"Bad Id"`},
		{"auth.keys[0].sha256", "not 64 hex digits"},
		{"postgres.url", "not a postgres:// URL"},
		{"redis.url", "not a redis://"},
		{"redis.fail_mode", `"maybe"`},
		{"redis.lease_horizon", "5s is out of range (0 to turn leasing off, or 1ms..1s)"},
		{"upstreams[0].url", `"ftp://x"`},
		{"upstreams[1].url", "without credentials"},
		{"routing.retries", "99"},
		{"routing.fallbacks.a", "falls back to itself"},
		{"routing.fallbacks.a", `"zz"`},
		{"routing.fallbacks.nope", "no model"},
		{"server.tls", "both"},
		{"server.cors.origins[0]", "not an origin"},
	} {
		if !hasProblem(ps, w.path, w.substr) {
			t.Errorf("missing problem %s: ...%s...", w.path, w.substr)
		}
	}
	// A password in a URL is never echoed.
	if strings.Contains(err.Error(), "pw@") {
		t.Errorf("a URL's password is in the error: %v", err)
	}
	_, err = Parse([]byte("auth: {required: true}\nmodels:\n  - {name: a, path: x}\n"), Options{SkipFiles: true, HostCores: 2})
	if !hasProblem(problemsOf(t, err), "auth.required", "no key can ever be valid") {
		t.Errorf("required without keys: %v", err)
	}
}

func TestRedisLeaseHorizon(t *testing.T) {
	parse := func(redis string, env ...string) (time.Duration, error) {
		c, err := Parse([]byte("redis: "+redis+"\nmodels:\n  - {name: a, path: x}\n"), Options{SkipFiles: true, HostCores: 2, Environ: env})
		if err != nil {
			return 0, err
		}
		return c.Redis.Lease(), nil
	}
	for _, c := range []struct {
		redis string
		env   []string
		want  time.Duration
	}{
		{`{url: "redis://r:6379/0"}`, nil, DefaultLeaseHorizon},
		{`{url: "redis://r:6379/0", lease_horizon: 0s}`, nil, 0},
		{`{url: "redis://r:6379/0", lease_horizon: 250ms}`, nil, 250 * time.Millisecond},
		{`{url: "redis://r:6379/0", lease_horizon: 250ms}`, []string{"HXP_REDIS_LEASE_HORIZON=0s"}, 0},
		{`{url: "redis://r:6379/0"}`, []string{"HXP_REDIS_LEASE_HORIZON=50ms"}, 50 * time.Millisecond},
	} {
		got, err := parse(c.redis, c.env...)
		if err != nil || got != c.want {
			t.Errorf("redis %s, env %v: lease horizon %s, %v; want %s", c.redis, c.env, got, err, c.want)
		}
	}
	for _, bad := range []time.Duration{-time.Millisecond, 500 * time.Microsecond, 2 * time.Second} {
		_, err := parse(`{url: "redis://r:6379/0"}`, "HXP_REDIS_LEASE_HORIZON="+bad.String())
		if !hasProblem(problemsOf(t, err), "redis.lease_horizon", bad.String()+" is out of range") {
			t.Errorf("lease horizon %s: %v", bad, err)
		}
	}
	// The zero value (a TenancyConfig built in code) leases with the default horizon.
	if h := (Redis{}).Lease(); h != DefaultLeaseHorizon {
		t.Errorf("zero Redis: lease horizon %s", h)
	}
}
