package tenancy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counters count the tenancy's decisions; labels are fixed words, never keys,
// callers or prompts.
type counters struct {
	limits [limitResults]atomic.Uint64
	cache  [2]atomic.Uint64 // hit, miss
}

// Rate-limit outcomes, the result label of hxp_ratelimit_decisions_total.
const (
	limitAllowed = iota
	limitRefused
	limitBudget
	limitUnavailable
	limitResults
)

var limitResultNames = [limitResults]string{"allowed", "limited", "over_budget", "unavailable"}

func (c *counters) limit(result int) { c.limits[result].Add(1) }

func (c *counters) cacheResult(hit bool) {
	if hit {
		c.cache[0].Add(1)
	} else {
		c.cache[1].Add(1)
	}
}

// Collector exports the tenancy's state to Prometheus:
//
//   - hxp_ratelimit_decisions_total{result}: allowed, limited (RateLimited
//     rate_limit_exceeded), over_budget (QuotaExceeded insufficient_quota), unavailable
//     (Redis down and failing closed)
//   - hxp_ratelimit_lease_decisions_total{source}: decisions of the shared limiter
//     answered from this gateway's lease (lease) or after a Redis call (redis); only
//     while leasing (redis.lease_horizon)
//   - hxp_ratelimit_lease_calls_total{call,result}: background calls of the lease,
//     call refill or refund, result ok or error
//   - hxp_response_cache_total{result}: hit, miss
//   - hxp_ledger_records_total{outcome}: written, spooled, replayed, dropped
//   - hxp_ledger_spool_pending: 1 while the spool holds records not yet replayed
//
// The upstreams' metrics are the router's.
type Collector struct {
	t *Tenancy

	limitsDesc, leaseDesc, leaseCallsDesc, cacheDesc, ledgerDesc, spoolDesc *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// Collector returns the collector of t's metrics.
func (t *Tenancy) Collector() *Collector {
	return &Collector{t: t,
		limitsDesc: prometheus.NewDesc("hxp_ratelimit_decisions_total", "Rate-limit and budget decisions by result.", []string{"result"}, nil),
		leaseDesc: prometheus.NewDesc("hxp_ratelimit_lease_decisions_total",
			"Shared rate-limit decisions answered from this gateway's lease (lease) or after a Redis call (redis).", []string{"source"}, nil),
		leaseCallsDesc: prometheus.NewDesc("hxp_ratelimit_lease_calls_total",
			"Background Redis calls of the rate-limit lease by call (refill, refund) and result (ok, error).", []string{"call", "result"}, nil),
		cacheDesc:  prometheus.NewDesc("hxp_response_cache_total", "Cacheable requests by result.", []string{"result"}, nil),
		ledgerDesc: prometheus.NewDesc("hxp_ledger_records_total", "Usage records by what became of them.", []string{"outcome"}, nil),
		spoolDesc:  prometheus.NewDesc("hxp_ledger_spool_pending", "1 while the ledger's spool file holds records not yet in PostgreSQL.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.limitsDesc, c.leaseDesc, c.leaseCallsDesc, c.cacheDesc, c.ledgerDesc, c.spoolDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	k := &c.t.counters
	for i, name := range limitResultNames {
		ch <- prometheus.MustNewConstMetric(c.limitsDesc, prometheus.CounterValue, float64(k.limits[i].Load()), name)
	}
	if l := c.t.leased; l != nil {
		st := l.Stats()
		ch <- prometheus.MustNewConstMetric(c.leaseDesc, prometheus.CounterValue, float64(st.Local), "lease")
		ch <- prometheus.MustNewConstMetric(c.leaseDesc, prometheus.CounterValue, float64(st.Backend), "redis")
		for _, o := range []struct {
			call, result string
			v            uint64
		}{{"refill", "ok", st.Refills}, {"refill", "error", st.RefillErrors}, {"refund", "ok", st.Refunds}, {"refund", "error", st.RefundErrors}} {
			ch <- prometheus.MustNewConstMetric(c.leaseCallsDesc, prometheus.CounterValue, float64(o.v), o.call, o.result)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.cacheDesc, prometheus.CounterValue, float64(k.cache[0].Load()), "hit")
	ch <- prometheus.MustNewConstMetric(c.cacheDesc, prometheus.CounterValue, float64(k.cache[1].Load()), "miss")
	if l := c.t.Ledger; l != nil {
		st := l.Stats()
		for _, o := range []struct {
			name string
			v    uint64
		}{{"written", st.Written}, {"spooled", st.Spooled}, {"replayed", st.Replayed}, {"dropped", st.Dropped}} {
			ch <- prometheus.MustNewConstMetric(c.ledgerDesc, prometheus.CounterValue, float64(o.v), o.name)
		}
		pending := 0.0
		if st.SpoolPending {
			pending = 1
		}
		ch <- prometheus.MustNewConstMetric(c.spoolDesc, prometheus.GaugeValue, pending)
	}
}
