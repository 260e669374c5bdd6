package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestKeysAndAuthEndToEnd runs the binary: `hxp keys create` against a real
// PostgreSQL, `hxp serve --auth` with PostgreSQL and Redis from the environment, then
// keys, scope, limits, the admin API, `hxp keys revoke` and `hxp bench` against it.
func TestKeysAndAuthEndToEnd(t *testing.T) {
	bin := hxpBinary(t)
	dir := t.TempDir()
	model := tinyModel(t, bin, dir)
	pg := testenv.SharedPostgres(t)
	rd := testenv.SharedRedis(t)
	env := append(os.Environ(), "HXP_POSTGRES_URL="+pg.URL())
	hxp := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), fmt.Errorf("hxp %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out), nil
	}
	lastLine := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		return strings.TrimSpace(lines[len(lines)-1])
	}

	out, err := hxp("keys", "create", "--name", "team-a", "--models", "tiny", "--rpm", "100", "--tpm", "100000", "--budget", "1000000")
	if err != nil {
		t.Fatal(err)
	}
	key := lastLine(out)
	if !strings.HasPrefix(key, "hxp-") || len(key) != 52 {
		t.Fatalf("keys create: the last line is not the key: %q", out)
	}
	other, err := hxp("keys", "create", "--name", "other-model", "--models", "phi3")
	if err != nil {
		t.Fatal(err)
	}
	otherKey := lastLine(other)
	id := key[4:12]
	if list, err := hxp("keys", "list"); err != nil || !strings.Contains(list, id) || !strings.Contains(list, "active") || strings.Contains(list, key[12:]) {
		t.Fatalf("keys list: %v\n%s", err, list)
	}
	// The database can also come from a config file.
	cfgFile := filepath.Join(dir, "hxp.yaml")
	os.WriteFile(cfgFile, []byte("postgres:\n  url: "+pg.URL()+"\n"), 0o600)
	byConfig := exec.Command(bin, "keys", "list", "--config", cfgFile)
	if out, err := byConfig.Output(); err != nil || !strings.Contains(string(out), id) {
		t.Fatalf("keys list --config: %v\n%s", err, out)
	}
	static, err := hxp("keys", "create", "--static", "--name", "Ops Team", "--rpm", "5")
	if err != nil || !strings.Contains(static, "{id: ops-team, sha256: ") || !strings.HasPrefix(lastLine(static), "hxp-") {
		t.Fatalf("keys create --static: %v\n%s", err, static)
	}
	// --auth without any key source is refused before serving.
	if _, err := exec.Command(bin, "serve", "--auth", "--model", "tiny="+model).CombinedOutput(); err == nil {
		t.Fatal("serve --auth without keys started")
	}

	srv := startServe(t, bin, model, []string{"HXP_POSTGRES_URL=" + pg.URL(), "HXP_REDIS_URL=" + rd.URL(),
		"HXP_AUTH_ADMIN_KEY=admin-key-for-e2e", "HXP_AUTH_CACHE_TTL=200ms",
		"HXP_POSTGRES_SPOOL_PATH=" + filepath.Join(dir, "usage.spool")}, "--auth", "--log-level", "debug")
	gw, ml := srv.gw, srv.ml
	call := func(base, path, key, body string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		if body == "" {
			req, _ = http.NewRequest("GET", base+path, nil)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	chat := `{"model":"tiny","messages":[{"role":"user","content":"secret prompt e2e"}],"max_tokens":4,"temperature":0}`
	for _, base := range []string{gw, ml} {
		if resp, b := call(base, "/v1/chat/completions", "", chat); resp.StatusCode != 401 {
			t.Fatalf("%s without a key: %d %s", base, resp.StatusCode, b)
		}
		resp, b := call(base, "/v1/chat/completions", key, chat)
		if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit-Requests") != "100" {
			t.Fatalf("%s with the key: %d %v %s", base, resp.StatusCode, resp.Header, b)
		}
		if resp, _ := call(base, "/v1/chat/completions", otherKey, chat); resp.StatusCode != 404 {
			t.Fatalf("%s with a key for another model: %d", base, resp.StatusCode)
		}
	}
	// hxp bench through the gateway with the key.
	bench := exec.Command(bin, "bench", "--url", gw, "--model", "tiny", "--requests", "4", "--concurrency", "2", "--max-tokens", "3")
	bench.Env = append(env, "HXP_API_KEY="+key)
	if out, err := bench.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok 4") || !strings.Contains(string(out), "ttft") {
		t.Fatalf("hxp bench: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "bench", "--url", "http://10.1.2.3:8000", "--model", "tiny").CombinedOutput(); err == nil {
		t.Fatalf("hxp bench against a non-loopback address: %s", out)
	}
	// The admin API sees the usage (the ledger flushes within a second).
	var usage struct{ Total map[string]int64 }
	for i := 0; ; i++ {
		_, b := call(gw, "/admin/usage?key_id="+id, "admin-key-for-e2e", "")
		json.Unmarshal([]byte(b), &usage)
		if usage.Total["requests"] >= 6 {
			break
		}
		if i > 200 {
			t.Fatalf("usage never reached 6 requests: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Revoked with the CLI: refused once the gateway's key cache expires.
	if out, err := hxp("keys", "revoke", id); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("keys revoke: %v %s", err, out)
	}
	for i := 0; ; i++ {
		if resp, _ := call(gw, "/v1/models", key, ""); resp.StatusCode == 401 {
			break
		}
		if i > 200 {
			t.Fatal("revoked key still accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.stop(t)
	for _, secret := range []string{key, otherKey, "admin-key-for-e2e", "secret prompt e2e"} {
		if strings.Contains(srv.logs.String(), secret) {
			t.Errorf("the server log contains %q", secret)
		}
	}
}
