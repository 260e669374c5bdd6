package graphql

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/tenancy"
	"github.com/hxp-ai/hxp/transport/rest"
)

// The test harness: the GraphQL server mounted on a real REST gateway (fasthttp on
// loopback, the REST chain in front, as app mounts it), a real HTTP client for POST
// and a real WebSocket client (graphql-transport-ws) for subscriptions, in front of
// infertest.Fake (mapping, errors, auth, limits, cancellation: no model) or a real
// service on the generated tiny model (REST and GraphQL give the same output).

func TestMain(m *testing.M) {
	engine.SetLogger(testLog())
	testenv.Main(m)
}

// testLog is quiet unless HXP_TEST_LOG=1.
func testLog() zerolog.Logger {
	if os.Getenv("HXP_TEST_LOG") == "1" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

// serve mounts New(svc, opts) on a REST gateway over svc (with opts.Auth as its key
// check, /graphql left to GraphQL as app does) and returns the gateway's base URL.
func serve(t testing.TB, svc infer.Service, opts Options) string {
	t.Helper()
	opts.Log = testLog()
	ro := rest.Options{Log: testLog(), Routes: New(svc, opts).Routes(), PublicPaths: append(rest.DefaultPublicPaths[:len(rest.DefaultPublicPaths):len(rest.DefaultPublicPaths)], Path)}
	if opts.Auth != nil {
		ro.Auth = opts.Auth
	}
	l := rest.NewListener("gateway", rest.New(svc, ro).Handler(),
		rest.HTTPConfig{ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxBodyBytes: 1 << 20}, testLog())
	if err := l.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	l.Serve(nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	return "http://" + l.Addr().String()
}

// gqlError is one error of a response.
type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// response is a GraphQL response.
type response struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// code is the first error's extensions.code, or "".
func (r *response) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// post sends a query with variables (key: the bearer token, "" for none) and returns
// the HTTP status and the decoded response.
func post(t testing.TB, base, key, query string, vars map[string]any) (int, *response) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequest(http.MethodPost, base+Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out response
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("response is not GraphQL JSON (%d): %v\n%s", resp.StatusCode, err, b)
	}
	return resp.StatusCode, &out
}

// data decodes a successful response's data into v.
func data(t testing.TB, r *response, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("data %s: %v", r.Data, err)
	}
}

// wsClient is a graphql-transport-ws client on a real WebSocket.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
}

// dial opens a WebSocket to base's /graphql with the graphql-transport-ws subprotocol.
func dial(t testing.TB, base string) *wsClient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{Subprotocol}, HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+Path, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	if conn.Subprotocol() != Subprotocol {
		t.Fatalf("subprotocol %q, want %q", conn.Subprotocol(), Subprotocol)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) send(m wsMessage) {
	c.t.Helper()
	if err := c.conn.WriteJSON(m); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next message; err is the read error (a close frame included).
func (c *wsClient) read() (wsMessage, error) {
	var m wsMessage
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	err := c.conn.ReadJSON(&m)
	return m, err
}

// init sends connection_init with key ("" for no payload) and returns the answer.
func (c *wsClient) init(key string) (wsMessage, error) {
	c.t.Helper()
	m := wsMessage{Type: msgConnectionInit}
	if key != "" {
		m.Payload, _ = json.Marshal(map[string]string{"authorization": "Bearer " + key})
	}
	c.send(m)
	return c.read()
}

// mustInit initializes the connection and fails unless it is acknowledged.
func (c *wsClient) mustInit(key string) {
	c.t.Helper()
	if m, err := c.init(key); err != nil || m.Type != msgConnectionAck {
		c.t.Fatalf("connection_init: %+v %v, want connection_ack", m, err)
	}
}

// subscribe starts operation id.
func (c *wsClient) subscribe(id, query string, vars map[string]any) {
	c.t.Helper()
	p, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	c.send(wsMessage{Type: msgSubscribe, ID: id, Payload: p})
}

// closeCode is the close code of a read error (0 when it is not a close).
func closeCode(err error) int {
	if ce, ok := err.(*websocket.CloseError); ok {
		return ce.Code
	}
	return 0
}

// keyTenancy is a tenancy of static hashed keys (no database), auth required.
func keyTenancy(t testing.TB, keys ...config.StaticKey) *tenancy.Tenancy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ten, err := tenancy.Open(ctx, tenancy.Config{Auth: config.KeyAuth{Required: true, Keys: keys}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ten.Close(ctx)
	})
	return ten
}

// staticKey is a hashed config key limited to models.
func staticKey(id, secret string, models ...string) config.StaticKey {
	h := tenancy.HashKey(secret)
	return config.StaticKey{ID: id, SHA256: hex.EncodeToString(h[:]), Models: models}
}

// waitFor is testenv.WaitFor: a hang guard, not a timing assertion.
var waitFor = testenv.WaitFor
