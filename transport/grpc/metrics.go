package grpc

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the gRPC transport's Prometheus metrics:
//
//   - hxp_grpc_requests_total{method,code}: calls by full method name (the registered
//     methods only: hxp.v1.Inference/*, Health and reflection) and gRPC status code,
//     the sibling of REST's hxp_requests_total. Calls refused before their handler
//     (a message over max_message_bytes) are refused by gRPC itself and not counted.
//
// A Metrics is a prometheus.Collector; register it once.
type Metrics struct {
	requests *prometheus.CounterVec
}

// NewMetrics returns unregistered gRPC metrics.
func NewMetrics() *Metrics {
	return &Metrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_grpc_requests_total",
		Help: "gRPC calls by method and status code."}, []string{"method", "code"})}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.requests.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.requests.Collect(ch) }
