package grpc

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/tenancy"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
)

// The test harness: a real gRPC server on loopback and a real client (grpc-go over
// TCP), in front of infertest.Fake (mapping, errors, auth, cancellation: no model)
// or a real service on the generated tiny model (generation equality).

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

// testServer is a running server with a client connection to it.
type testServer struct {
	srv  *Server
	conn *gogrpc.ClientConn
	api  hxpv1.InferenceClient
}

// serve runs New(svc, opts) on a loopback port; server and client stop when the test
// ends.
func serve(t testing.TB, svc infer.Service, opts Options) *testServer {
	t.Helper()
	srv := New(svc, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	conn, err := gogrpc.NewClient(ln.Addr().String(), gogrpc.WithTransportCredentials(insecure.NewCredentials()),
		gogrpc.WithDefaultCallOptions(gogrpc.MaxCallRecvMsgSize(64<<20), gogrpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{srv: srv, conn: conn, api: hxpv1.NewInferenceClient(conn)}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// withKey is ctx sending key as the bearer token.
func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
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

// staticKey is a hashed config key with a scope and a requests-per-minute limit.
func staticKey(id, secret string, models []string, rpm int) config.StaticKey {
	h := tenancy.HashKey(secret)
	return config.StaticKey{ID: id, SHA256: hex.EncodeToString(h[:]), Models: models, RPM: rpm}
}

// wantCode fails unless err is a status with code.
func wantCode(t testing.TB, what string, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("%s: got %v, want code %s", what, err, code)
	}
	return st
}

// waitFor is testenv.WaitFor: a hang guard, not a timing assertion.
var waitFor = testenv.WaitFor

func ptr[T any](v T) *T { return &v }
