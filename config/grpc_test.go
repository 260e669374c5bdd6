package config

import (
	"strings"
	"testing"
	"time"
)

const grpcModels = "models:\n  - {name: a, path: x}\n"

func TestGRPCDefaultsAndOff(t *testing.T) {
	c, err := Parse([]byte(grpcModels), Options{SkipFiles: true, HostCores: 2})
	if err != nil {
		t.Fatal(err)
	}
	g := c.GRPC
	if g.Addr() != ":8001" || !g.Enabled() || g.MaxMessageBytes != 8<<20 || g.MaxConcurrentStreams != 256 ||
		g.KeepaliveTime.D() != time.Minute || g.KeepaliveTimeout.D() != 20*time.Second {
		t.Fatalf("defaults: %+v (listen %q)", g, g.Addr())
	}
	off, err := Parse([]byte("grpc:\n  listen: \"\"\n"+grpcModels), Options{SkipFiles: true, HostCores: 2})
	if err != nil {
		t.Fatal(err)
	}
	if off.GRPC.Enabled() || off.GRPC.Addr() != "" {
		t.Fatalf("listen \"\" should turn gRPC off, got %q", off.GRPC.Addr())
	}
}

func TestGRPCEnv(t *testing.T) {
	for env, want := range map[string]string{"HXP_GRPC_LISTEN=": "", "HXP_GRPC_LISTEN=127.0.0.1:9001": "127.0.0.1:9001"} {
		c, err := Parse([]byte(grpcModels), Options{SkipFiles: true, HostCores: 2, Environ: []string{env, "HXP_GRPC_MAX_MESSAGE_BYTES=4096"}})
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if c.GRPC.Addr() != want || c.GRPC.MaxMessageBytes != 4096 {
			t.Errorf("%s: listen %q max_message_bytes %d; want %q, 4096", env, c.GRPC.Addr(), c.GRPC.MaxMessageBytes, want)
		}
	}
}

func TestGRPCValidation(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"grpc: {listen: \"nope\"}\n", "grpc.listen: \"nope\": not host:port"},
		{"listen: \":9000\"\ngrpc: {listen: \":9000\"}\n", "grpc.listen: port 9000 is already used by listen"},
		{"grpc: {listen: \":9100\"}\nmodels:\n  - {name: b, path: y, port: 9100}\n", "models[0].port: 9100 is already used by grpc.listen"},
		{"grpc: {max_message_bytes: 10}\n", "grpc.max_message_bytes: 10 is out of range (1024..1073741824)"},
		{"grpc: {max_concurrent_streams: -1}\n", "grpc.max_concurrent_streams: -1 is out of range"},
		{"grpc: {keepalive_time: 100ms}\n", "grpc.keepalive_time: 100ms is out of range (1s..24h0m0s)"},
		{"grpc: {keepalive_timeout: 2h}\n", "grpc.keepalive_timeout: 2h0m0s is out of range"},
	} {
		y := c.yaml + grpcModels
		if strings.Contains(c.yaml, "models:") {
			y = c.yaml
		}
		_, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.yaml, err, c.want)
		}
	}
}
