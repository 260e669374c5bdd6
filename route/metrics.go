package route

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hxp-ai/hxp/internal/breaker"
)

// Collector exports a pool's state to Prometheus, one series per member:
//
//   - hxp_upstream_healthy{model,upstream}: 1 when it passed its last health check
//   - hxp_upstream_breaker_state{model,upstream}: 0 closed, 1 half-open, 2 open
//   - hxp_upstream_inflight{model,upstream}: requests in progress
//
// upstream is "local" or a configured node URL, so the labels stay bounded.
type Collector struct {
	pool                                   *Pool
	healthyDesc, breakerDesc, inflightDesc *prometheus.Desc
}

// NewCollector returns the collector of p.
func NewCollector(p *Pool) *Collector {
	up := []string{"model", "upstream"}
	return &Collector{pool: p,
		healthyDesc:  prometheus.NewDesc("hxp_upstream_healthy", "1 when the upstream passed its last active health check.", up, nil),
		breakerDesc:  prometheus.NewDesc("hxp_upstream_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", up, nil),
		inflightDesc: prometheus.NewDesc("hxp_upstream_inflight", "Requests in progress on the upstream.", up, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthyDesc
	ch <- c.breakerDesc
	ch <- c.inflightDesc
}

// breakerValues are the gauge values of the breaker states.
var breakerValues = map[string]float64{breaker.Closed.String(): 0, breaker.HalfOpen.String(): 1, breaker.Open.String(): 2}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.pool.Stats() {
		healthy := 0.0
		if s.Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthyDesc, prometheus.GaugeValue, healthy, s.Model, s.Upstream)
		ch <- prometheus.MustNewConstMetric(c.breakerDesc, prometheus.GaugeValue, breakerValues[s.Breaker], s.Model, s.Upstream)
		ch <- prometheus.MustNewConstMetric(c.inflightDesc, prometheus.GaugeValue, float64(s.Inflight), s.Model, s.Upstream)
	}
}
