package config

import (
	"time"
)

// GRPC configures the gRPC front end (service hxp.v1.Inference, with health and
// reflection) on its own port. TLS comes from server.tls, like every listener's.
type GRPC struct {
	// Listen is the gRPC address (host:port). Unset means DefaultGRPCListen; an empty
	// string ("" in YAML, or HXP_GRPC_LISTEN=) turns gRPC off.
	Listen *string `yaml:"listen"`
	// MaxMessageBytes bounds one received or sent message (RESOURCE_EXHAUSTED above).
	// Default 8 MiB, like server.max_body_bytes.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxConcurrentStreams bounds the calls in flight on one connection. Default 256.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// KeepaliveTime is how long a connection may be silent before the server pings
	// it. Default 1m.
	KeepaliveTime Duration `yaml:"keepalive_time"`
	// KeepaliveTimeout is how long the server waits for a ping's answer before it
	// closes the connection. Default 20s.
	KeepaliveTimeout Duration `yaml:"keepalive_timeout"`
}

// gRPC defaults.
const (
	DefaultGRPCListen               = ":8001"
	DefaultGRPCMaxMessageBytes      = 8 << 20
	DefaultGRPCMaxConcurrentStreams = 256
	DefaultGRPCKeepaliveTime        = time.Minute
	DefaultGRPCKeepaliveTimeout     = 20 * time.Second
)

// Addr is the gRPC address, or "" when gRPC is off.
func (g GRPC) Addr() string {
	if g.Listen == nil {
		return DefaultGRPCListen
	}
	return *g.Listen
}

// Enabled reports whether gRPC is served.
func (g GRPC) Enabled() bool { return g.Addr() != "" }

func (g *GRPC) applyDefaults() {
	if g.Listen == nil {
		l := DefaultGRPCListen
		g.Listen = &l
	}
	if g.MaxMessageBytes == 0 {
		g.MaxMessageBytes = DefaultGRPCMaxMessageBytes
	}
	if g.MaxConcurrentStreams == 0 {
		g.MaxConcurrentStreams = DefaultGRPCMaxConcurrentStreams
	}
	if g.KeepaliveTime == 0 {
		g.KeepaliveTime = Duration(DefaultGRPCKeepaliveTime)
	}
	if g.KeepaliveTimeout == 0 {
		g.KeepaliveTimeout = Duration(DefaultGRPCKeepaliveTimeout)
	}
}

// validateGRPC checks the grpc section; ports holds the ports taken so far (the
// gateway's) and gets the gRPC port.
func validateGRPC(add func(path, format string, args ...any), g GRPC, ports map[int]string) {
	if g.Enabled() {
		if _, port, err := splitListen(g.Addr()); err != nil {
			add("grpc.listen", "%q: %v (want host:port, e.g. \":8001\", or \"\" to turn gRPC off)", g.Addr(), err)
		} else if port > 0 {
			if other, dup := ports[port]; dup {
				add("grpc.listen", "port %d is already used by %s (give gRPC its own port, e.g. \":8001\")", port, other)
			}
			ports[port] = "grpc.listen"
		}
	}
	if g.MaxMessageBytes < 1024 || g.MaxMessageBytes > 1<<30 {
		add("grpc.max_message_bytes", "%d is out of range (1024..1073741824)", g.MaxMessageBytes)
	}
	if g.MaxConcurrentStreams < 1 || g.MaxConcurrentStreams > 1<<20 {
		add("grpc.max_concurrent_streams", "%d is out of range (1..1048576)", g.MaxConcurrentStreams)
	}
	for _, d := range []struct {
		path     string
		v        Duration
		min, max time.Duration
	}{{"grpc.keepalive_time", g.KeepaliveTime, time.Second, 24 * time.Hour},
		{"grpc.keepalive_timeout", g.KeepaliveTimeout, time.Second, time.Hour}} {
		if d.v.D() < d.min || d.v.D() > d.max {
			add(d.path, "%s is out of range (%s..%s)", d.v.D(), d.min, d.max)
		}
	}
}
