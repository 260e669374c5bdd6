package rest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/infer/infertest"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/tenancy"
)

func TestSlowClientsAndOversizedInput(t *testing.T) {
	ten := keyTenancy(t, tenancy.Config{}, "secret-slow-client")
	fake := &infertest.Fake{Model: "tiny"}
	url := serve(t, "gateway", New(ten.Admit(fake), Options{Auth: ten}),
		HTTPConfig{ReadTimeout: 300 * time.Millisecond, WriteTimeout: time.Minute, IdleTimeout: 300 * time.Millisecond, MaxBodyBytes: 4096})
	addr := strings.TrimPrefix(url, "http://")
	key := bearer("secret-slow-client")

	// A client that sends half a request head and then nothing is disconnected by the
	// read timeout (the deadline below only guards against a hang), and so is one that
	// sends its head but trickles its body, and an idle keep-alive connection.
	for name, partial := range map[string]string{
		"slow head": "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty",
		"slow body": "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mod",
		"idle":      "",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(partial))
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = io.ReadAll(c)
		c.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open", name)
		}
	}
	// Oversized and malformed input get OpenAI errors, before any model work.
	big := map[string]any{"model": "tiny", "prompt": strings.Repeat("x", 8192)}
	post(t, url+"/tokenize", big, key...).wantErr(t, 413, "invalid_request_error", "body_too_large")
	for _, raw := range []string{`{"model":"tiny",`, `[]`, `"tiny"`, ``, `{"model":["tiny"]}`} {
		r := rawRequest(t, "POST", url+chatPath, []byte(raw), [][2]string{{"Authorization", key[1]}})
		if r.status != 400 || r.apiErr(t).Type != "invalid_request_error" {
			t.Errorf("malformed body %q: %d %s", raw, r.status, r.body)
		}
	}
	if n := fake.Calls("chat") + fake.Calls("tokenize"); n != 0 {
		t.Errorf("%d refused requests reached the model", n)
	}
	// A request head larger than the read buffer is refused, not buffered without end.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go c.Write([]byte("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 4") && line != "" {
		t.Errorf("huge header: %q", line)
	}
}

// randomSecret is an API key no text holds by chance.
func randomSecret(t testing.TB, prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// fasthttpLines are the log lines of fasthttp's own messages (connection errors).
func fasthttpLines(t *testing.T, logs *testenv.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range testenv.JSONLogLines(t, logs.String()) {
		if l["component"] == "fasthttp" {
			out = append(out, l)
		}
	}
	return out
}

// fasthttp's connection-error messages quote the request-header buffer it could not
// parse, which holds the client's Authorization header: requests carrying a key that
// are cut off or malformed must leave no trace of it in the log (or in the answer),
// and a flood of them must not flood the log.
func TestConnectionErrorsNeverLogKeys(t *testing.T) {
	secret := randomSecret(t, "sk-SECRET")
	log, logs := captureLog()
	ten := keyTenancy(t, tenancy.Config{Log: log}, secret)
	l := listen(t, "gateway", New(&infertest.Fake{}, Options{Log: log, Auth: ten}),
		HTTPConfig{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, MaxBodyBytes: 4096}, log)
	var closed atomic.Int64 // connections fasthttp is done with (and has logged about)
	l.srv.ConnState = func(_ net.Conn, st fasthttp.ConnState) {
		if st == fasthttp.StateClosed {
			closed.Add(1)
		}
	}
	l.Serve(nil)
	addr := l.Addr().String()
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
	auth := "Authorization: Bearer " + secret + "\r\n"
	start := time.Now()
	conns := int64(0)
	// exchange sends raw on a new connection and returns what the server answered
	// once it has closed the connection; with hangUp the client closes first.
	exchange := func(raw string, hangUp bool) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns++
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second)) // a hang guard
		if hangUp {
			if _, err := c.Write([]byte(raw)); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitFor(t, "the server to finish the connection", func() bool { return closed.Load() == conns })
			return ""
		}
		go c.Write([]byte(raw)) // the server may answer before it has read everything
		answer, _ := io.ReadAll(c)
		waitFor(t, "the server to finish the connection", func() bool { return closed.Load() == conns })
		return string(answer)
	}
	for _, tc := range []struct {
		name   string
		raw    string
		hangUp bool
	}{
		{"cut off after the key", head + auth, true},
		{"cut off inside the key", head + "Authorization: Bearer " + secret[:len(secret)-5], true},
		{"cut off in the body", head + auth + "Content-Length: 100\r\n\r\n{\"model\":", true},
		{"bad header line", head + auth + "this line has no colon\r\n\r\n", false},
		{"bad request line", "POST /v1/chat/completions?key=" + secret + " HTTP/1.1 extra\r\n" + auth + "\r\n", false},
		{"no request line", auth + "\r\n", false},
		{"oversized headers", head + auth + "X-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n", false},
		{"bad content length", head + auth + "Content-Length: ten\r\n\r\n", false},
		{"bad chunked body", head + auth + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + secret + "\r\n", false},
	} {
		answer := exchange(tc.raw, tc.hangUp)
		if leaks := testenv.SecretLeaks(answer, secret); leaks != nil {
			t.Errorf("%s: the answer echoes the key: %v\n%s", tc.name, leaks, answer)
		}
		if !tc.hangUp && !strings.HasPrefix(answer, "HTTP/1.1 4") {
			t.Errorf("%s: answered %q, want a 4xx", tc.name, firstLine(answer))
		}
	}
	if len(fasthttpLines(t, logs)) == 0 {
		t.Fatalf("fasthttp logged none of the broken connections: the test does not exercise its logger\n%s", logs.String())
	}

	// A flood of broken connections: at most logBurst lines per logWindow.
	for i := 0; i < 200; i++ {
		exchange(head+auth, true)
	}
	windows := int(time.Since(start)/logWindow) + 1
	lines := fasthttpLines(t, logs)
	if len(lines) > logBurst*windows {
		t.Errorf("%d fasthttp lines for %d broken connections in %d window(s) of %v; at most %d per window", len(lines), conns, windows, logWindow, logBurst)
	}
	for _, l := range lines {
		if l["level"] != "warn" || l["event"] == "" {
			t.Errorf("fasthttp line %v", l)
		}
	}
	if leaks := testenv.SecretLeaks(logs.String(), secret); leaks != nil {
		t.Fatalf("the log holds the key: %v\n%s", leaks, logs.String())
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// The fasthttp logger writes only the fixed text of a message, at most logBurst lines
// per logWindow, and the first line of a later window says how many it suppressed.
func TestSafeLoggerBoundsItsLines(t *testing.T) {
	secret := randomSecret(t, "sk-")
	log, logs := captureLog()
	now := time.Unix(1_700_000_000, 0)
	sl := newSafeLogger(log, func() time.Time { return now })
	for i := 0; i < 200; i++ {
		sl.Printf("error when serving connection %q<->%q: %v", "127.0.0.1:8000", "127.0.0.1:5555",
			errors.New("error when reading request headers: cannot find whitespace. Buffer contents: \"Authorization: Bearer "+secret+"\""))
		now = now.Add(time.Millisecond)
	}
	lines := testenv.JSONLogLines(t, logs.String())
	if len(lines) != logBurst {
		t.Fatalf("%d lines for 200 messages in one window, want %d", len(lines), logBurst)
	}
	now = now.Add(logWindow)
	sl.Printf("error when serving connection %q<->%q: %v", "a", "b", errors.New(secret))
	lines = testenv.JSONLogLines(t, logs.String())
	last := lines[len(lines)-1]
	if len(lines) != logBurst+1 || last["suppressed"] != float64(200-logBurst) || last["event"] != "error when serving connection" ||
		last["level"] != "warn" || last["component"] != "fasthttp" {
		t.Errorf("%d lines; the next window's first line %v, want suppressed %d", len(lines), last, 200-logBurst)
	}
	if leaks := testenv.SecretLeaks(logs.String(), secret); leaks != nil {
		t.Errorf("the log holds the key: %v\n%s", leaks, logs.String())
	}
}

func TestAdminAPI(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	log, logs := captureLog()
	adminKey := randomSecret(t, "adm-")
	ten := keyTenancy(t, tenancy.Config{Log: log, Auth: config.KeyAuth{AdminKey: adminKey}, Postgres: config.Postgres{URL: pg.URL()}})
	url := serve(t, "gateway", New(ten.Admit(&infertest.Fake{Model: "tiny"}), Options{Log: log, Auth: ten, Routes: AdminRoutes(ten.Admin(), log)}), HTTPConfig{})
	admin := bearer(adminKey)
	do(t, "GET", url+"/admin/keys", nil).wantErr(t, 401, "authentication_error", "invalid_api_key")
	do(t, "GET", url+"/admin/keys", nil, bearer(adminKey[:len(adminKey)-1])...).wantErr(t, 401, "authentication_error", "invalid_api_key")
	var created tenancy.CreatedKey
	r := post(t, url+"/admin/keys", map[string]any{"name": "team-x", "allowed_models": []string{"tiny"}, "rpm": 100, "monthly_token_budget": 100000}, admin...)
	r.json(t, &created)
	if r.status != 201 || !strings.HasPrefix(created.Secret, "hxp-") || created.ID == "" || created.RPM != 100 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := post(t, url+"/admin/keys", map[string]any{"name": "", "rpm": -1}, admin...); r.status != 400 || r.apiErr(t).Param == nil {
		t.Fatalf("invalid spec: %d %s", r.status, r.body)
	}
	// A tenant key is not an admin key.
	if r := do(t, "GET", url+"/admin/keys", nil, bearer(created.Secret)...); r.status != 401 {
		t.Fatalf("tenant key on the admin API: %d", r.status)
	}
	if r := post(t, url+"/tokenize", tokenizeBody("tiny"), bearer(created.Secret)...); r.status != 200 {
		t.Fatalf("new key: %d %s", r.status, r.body)
	}
	list := do(t, "GET", url+"/admin/keys", nil, admin...)
	if list.status != 200 || !strings.Contains(string(list.body), created.ID) || strings.Contains(string(list.body), created.Secret[len(postgres.KeyPrefix)+postgres.KeyIDLength:]) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	if err := ten.Ledger.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	var usage struct {
		Data  []postgres.UsageSummary
		Total map[string]int64
	}
	u := do(t, "GET", url+"/admin/usage?key_id="+created.ID, nil, admin...)
	u.json(t, &usage)
	if u.status != 200 || len(usage.Data) != 1 || usage.Data[0].Requests != 1 || usage.Total["requests"] != 1 {
		t.Fatalf("usage: %d %s", u.status, u.body)
	}
	if r := do(t, "GET", url+"/admin/usage?since=yesterday", nil, admin...); r.status != 400 || r.apiErr(t).Param == nil || *r.apiErr(t).Param != "since" {
		t.Fatalf("bad since: %d %s", r.status, r.body)
	}
	// Revoking takes effect at once on this gateway (its key cache is told).
	if r := do(t, "DELETE", url+"/admin/keys/"+created.ID, nil, admin...); r.status != 200 || !strings.Contains(string(r.body), `"disabled":true`) {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := post(t, url+"/tokenize", tokenizeBody("tiny"), bearer(created.Secret)...); r.status != 401 {
		t.Fatalf("revoked key: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", url+"/admin/keys/nope", nil, admin...); r.status != 404 {
		t.Fatalf("revoke unknown: %d", r.status)
	}
	// A key's public id (its first characters) is logged by design; what follows it is
	// the secret.
	private := created.Secret[len(postgres.KeyPrefix)+postgres.KeyIDLength:]
	for _, s := range []string{adminKey, private} {
		if leaks := testenv.SecretLeaks(logs.String(), s); leaks != nil {
			t.Fatalf("a secret reached the logs: %v", leaks)
		}
	}
	if !strings.Contains(logs.String(), created.ID) {
		t.Errorf("the refused (revoked) key is not logged by its public id %s:\n%s", created.ID, logs.String())
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their
// paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hxp-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	cert, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cert, keyPath, pool
}

func TestTLSAndCORS(t *testing.T) {
	certFile, keyFile, roots := selfSigned(t)
	tc, err := LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ten := keyTenancy(t, tenancy.Config{}, "secret-tls-cors")
	s := New(&infertest.Fake{Model: "tiny"}, Options{Auth: ten, CORS: CORS{Origins: []string{"https://app.example.com"}}})
	l := listen(t, "gateway", s, HTTPConfig{}, testLog())
	l.ServeTLS(nil, tc)
	base := "https://" + l.Addr().String()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	send := func(method, path, origin string, hdr ...string) (*http.Response, response) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(fmtBody(tokenizeBody("tiny"))))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, response{status: resp.StatusCode, header: resp.Header, body: b}
	}
	key := bearer("secret-tls-cors")
	resp, _ := send("POST", "/tokenize", "https://app.example.com", key...)
	if resp.StatusCode != 200 || resp.TLS == nil || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Fatalf("TLS + CORS request: %d %v", resp.StatusCode, resp.Header)
	}
	// Preflight: answered before auth (browsers send no key with it).
	resp, _ = send("OPTIONS", chatPath, "https://app.example.com", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type")
	if resp.StatusCode != 204 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		resp.Header.Get("Access-Control-Max-Age") == "" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	_, r := send("OPTIONS", chatPath, "https://evil.example.com", "Access-Control-Request-Method", "POST")
	r.wantErr(t, 403, "invalid_request_error", "origin_not_allowed")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("refused preflight carries CORS headers: %v", r.header)
	}
	if resp, _ = send("POST", "/tokenize", "https://evil.example.com", key...); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS headers for another origin: %v", resp.Header)
	}
	// Plain HTTP on the TLS port does not reach the handlers.
	if r, err := http.Post("http://"+l.Addr().String()+"/tokenize", "application/json", strings.NewReader("{}")); err == nil {
		r.Body.Close()
		if r.StatusCode < 400 {
			t.Fatalf("plain HTTP on the TLS listener: %d", r.StatusCode)
		}
	}
}
