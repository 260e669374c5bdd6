package bench

import (
	"sort"
	"time"
)

// Latencies collects durations and reports percentiles.
type Latencies []time.Duration

// Add records one duration.
func (l *Latencies) Add(d time.Duration) { *l = append(*l, d) }

// Percentile returns the p-th percentile (0..100), or 0 when empty.
func (l Latencies) Percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append(Latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

// Max returns the largest duration.
func (l Latencies) Max() time.Duration { return l.Percentile(100) }

// Run summarises one measured generation run.
type Run struct {
	Tokens   int
	Elapsed  time.Duration
	TTFT     Latencies
	ITL      Latencies
	Requests int
	// Prefill is the part of Elapsed before every stream had its first token; its
	// Requests first tokens are not decode throughput.
	Prefill time.Duration
}

// TokensPerSecond is generated tokens over wall time.
func (r Run) TokensPerSecond() float64 { return float64(r.Tokens) / r.Elapsed.Seconds() }

// DecodeTokensPerSecond is the tokens generated after the prefill over the time after it.
func (r Run) DecodeTokensPerSecond() float64 {
	return float64(r.Tokens-r.Requests) / (r.Elapsed - r.Prefill).Seconds()
}

// Merge adds another run's samples.
func (r *Run) Merge(o Run) {
	r.Tokens += o.Tokens
	r.Elapsed += o.Elapsed
	r.TTFT = append(r.TTFT, o.TTFT...)
	r.ITL = append(r.ITL, o.ITL...)
	r.Requests += o.Requests
	r.Prefill += o.Prefill
}

// ms converts for b.ReportMetric.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
