package server

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestSlowClientsAndOversizedInput(t *testing.T) {
	svc, _ := sharedModel(t)
	keys := NewStaticKeys(nil, []string{"secret-slow-client"})
	url := serve(t, "gateway", func() *Gateway {
		g, err := NewGateway(Options{Log: testLog(), Middleware: []Middleware{&KeyAuth{Store: keys}, Scope{}}}, NewLocal(svc, Options{}))
		if err != nil {
			t.Fatal(err)
		}
		return g
	}, HTTPConfig{ReadTimeout: 300 * time.Millisecond, WriteTimeout: time.Minute, IdleTimeout: 300 * time.Millisecond, MaxBodyBytes: 4096})
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
	if r := post(t, url+"/tokenize", big, key...); r.status != 413 {
		t.Errorf("oversized body: %d %s", r.status, r.body)
	}
	for _, raw := range []string{`{"model":"tiny",`, `[]`, `"tiny"`, ``, `{"model":["tiny"]}`} {
		r := rawRequest(t, "POST", url+"/v1/chat/completions", []byte(raw), [][2]string{{"Authorization", key[1]}})
		if r.status != 400 || r.apiErr(t).Type != "invalid_request_error" {
			t.Errorf("malformed body %q: %d %s", raw, r.status, r.body)
		}
	}
	huge := map[string]any{"model": "tiny", "messages": []map[string]any{{"role": "user", "content": strings.Repeat("é", 1500)}}, "max_tokens": 1}
	if r := post(t, url+"/v1/chat/completions", huge, key...); r.status != 413 && r.status != 400 {
		t.Errorf("oversized field: %d %s", r.status, r.body)
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

func TestAdminAPI(t *testing.T) {
	svc, _ := sharedModel(t)
	pg := testenv.SharedPostgres(t)
	g := startTenancy(t, TenancyConfig{
		Auth:     config.KeyAuth{Required: true, AdminKey: "admin-secret-123"},
		Postgres: config.Postgres{URL: pg.URL()},
	}, NewLocal(svc, Options{}))
	admin := bearer("admin-secret-123")
	if r := do(t, "GET", g.url+"/admin/keys", nil); r.status != 401 {
		t.Fatalf("admin API without a key: %d", r.status)
	}
	if r := do(t, "GET", g.url+"/admin/keys", nil, bearer("admin-secret-12")...); r.status != 401 {
		t.Fatalf("admin API with a wrong key: %d", r.status)
	}
	var created CreatedKey
	r := post(t, g.url+"/admin/keys", map[string]any{"name": "team-x", "allowed_models": []string{"tiny"}, "rpm": 100, "monthly_token_budget": 100000}, admin...)
	r.json(t, &created)
	if r.status != 201 || !strings.HasPrefix(created.Secret, "hxp-") || created.ID == "" || created.RPM != 100 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := post(t, g.url+"/admin/keys", map[string]any{"name": "", "rpm": -1}, admin...); r.status != 400 || r.apiErr(t).Param == nil {
		t.Fatalf("invalid spec: %d %s", r.status, r.body)
	}
	// A tenant key is not an admin key.
	if r := do(t, "GET", g.url+"/admin/keys", nil, bearer(created.Secret)...); r.status != 401 {
		t.Fatalf("tenant key on the admin API: %d", r.status)
	}
	if r := post(t, g.url+"/tokenize", tokenizeBody("tiny"), bearer(created.Secret)...); r.status != 200 {
		t.Fatalf("new key: %d %s", r.status, r.body)
	}
	list := do(t, "GET", g.url+"/admin/keys", nil, admin...)
	if list.status != 200 || !strings.Contains(string(list.body), created.ID) || strings.Contains(string(list.body), created.Secret[len(postgres.KeyPrefix)+postgres.KeyIDLength:]) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	if err := g.ten.Ledger.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	var usage struct {
		Data  []postgres.UsageSummary
		Total map[string]int64
	}
	u := do(t, "GET", g.url+"/admin/usage?key_id="+created.ID, nil, admin...)
	u.json(t, &usage)
	if u.status != 200 || len(usage.Data) != 1 || usage.Data[0].Requests != 1 || usage.Total["requests"] != 1 {
		t.Fatalf("usage: %d %s", u.status, u.body)
	}
	if r := do(t, "GET", g.url+"/admin/usage?since=yesterday", nil, admin...); r.status != 400 {
		t.Fatalf("bad since: %d", r.status)
	}
	// Revoking takes effect at once on this gateway (its key cache is told).
	if r := do(t, "DELETE", g.url+"/admin/keys/"+created.ID, nil, admin...); r.status != 200 || !strings.Contains(string(r.body), `"disabled":true`) {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := post(t, g.url+"/tokenize", tokenizeBody("tiny"), bearer(created.Secret)...); r.status != 401 {
		t.Fatalf("revoked key: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", g.url+"/admin/keys/nope", nil, admin...); r.status != 404 {
		t.Fatalf("revoke unknown: %d", r.status)
	}
	if strings.Contains(g.logs.String(), "admin-secret-123") || strings.Contains(g.logs.String(), created.Secret) {
		t.Fatal("a secret reached the logs")
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
	svc, _ := sharedModel(t)
	certFile, keyFile, roots := selfSigned(t)
	tc, err := LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	keys := NewStaticKeys(nil, []string{"secret-tls-cors"})
	g, err := NewGateway(Options{Log: testLog(), Middleware: []Middleware{CORS{Origins: []string{"https://app.example.com"}}, &KeyAuth{Store: keys}}},
		NewLocal(svc, Options{}))
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener("gateway", g.Handler(), HTTPConfig{ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}, testLog())
	if err := l.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l.ServeTLS(nil, tc)
	t.Cleanup(func() { l.srv.Shutdown() })
	base := "https://" + l.Addr().String()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	send := func(method, path, origin string, hdr ...string) *http.Response {
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
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	key := bearer("secret-tls-cors")
	resp := send("POST", "/tokenize", "https://app.example.com", key...)
	if resp.StatusCode != 200 || resp.TLS == nil || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Fatalf("TLS + CORS request: %d %v", resp.StatusCode, resp.Header)
	}
	// Preflight: answered before auth (browsers send no key with it).
	resp = send("OPTIONS", "/v1/chat/completions", "https://app.example.com", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type")
	if resp.StatusCode != 204 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		resp.Header.Get("Access-Control-Max-Age") == "" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp = send("OPTIONS", "/v1/chat/completions", "https://evil.example.com", "Access-Control-Request-Method", "POST"); resp.StatusCode != 403 {
		t.Fatalf("preflight from another origin: %d", resp.StatusCode)
	}
	if resp = send("POST", "/tokenize", "https://evil.example.com", key...); resp.Header.Get("Access-Control-Allow-Origin") != "" {
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
