package sched

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Latency buckets (seconds) spanning fast CPU steps to multi-second targets.
var latencyBuckets = []float64{.005, .01, .025, .05, .075, .1, .15, .25, .35, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 40}

// Scheduler metrics, labelled by model. Register them once with RegisterMetrics.
var (
	mQueueDepth = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_queue_depth",
		Help: "Requests waiting for a slot."}, []string{"model"})
	mQueueCapacity = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_queue_capacity",
		Help: "Most requests that may wait for a slot."}, []string{"model"})
	mRunning = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_running_sequences",
		Help: "Sequences holding a slot (prefilling or decoding)."}, []string{"model"})
	mSlots = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_slots",
		Help: "Parallel sequence slots."}, []string{"model"})
	mPromptTokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_prompt_tokens_total",
		Help: "Prompt tokens of admitted requests (reused ones included)."}, []string{"model"})
	mReusedTokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_prompt_tokens_reused_total",
		Help: "Prompt tokens served from a slot's KV cache instead of evaluated."}, []string{"model"})
	mGenTokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_generated_tokens_total",
		Help: "Tokens generated."}, []string{"model"})
	mTTFT = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_time_to_first_token_seconds",
		Help: "Time from submission to the first generated token.", Buckets: latencyBuckets}, []string{"model"})
	mITL = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_inter_token_latency_seconds",
		Help: "Time between consecutive generated tokens of one stream.", Buckets: latencyBuckets}, []string{"model"})
	mE2E = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_request_duration_seconds",
		Help: "Time from submission to the end of generation.", Buckets: latencyBuckets}, []string{"model"})
	mQueueTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_queue_time_seconds",
		Help: "Time a request waited for a slot.", Buckets: latencyBuckets}, []string{"model"})
	mStepTokens = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_step_batch_tokens",
		Help: "Tokens per decode step.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}, []string{"model"})
	mStepSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_step_duration_seconds",
		Help: "Duration of one decode step.", Buckets: latencyBuckets}, []string{"model"})
	mKVUsage = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_kv_cache_usage_ratio",
		Help: "Share of KV cache cells held by running requests."}, []string{"model"})
	mKVCached = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_kv_cache_cached_ratio",
		Help: "Share of KV cache cells kept by idle slots for prefix reuse (reclaimable)."}, []string{"model"})
	mRejections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_rejections_total",
		Help: "Requests refused at admission, by reason (overloaded, tenant_overloaded, context_overflow, invalid, closed)."}, []string{"model", "reason"})
	mFinished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_generations_total",
		Help: "Finished generations by finish reason (stop, length, cancelled, error)."}, []string{"model", "finish"})
	mSlotMoves = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_slot_moves_total",
		Help: "Running sequences moved to another slot (one KV buffer copy each) to keep running slots adjacent."}, []string{"model"})
	mPreemptions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_preemptions_total",
		Help: "Running sequences that gave their slot back to a waiting request of an under-served tenant or a higher class (resumed later, no output lost)."}, []string{"model"})
	mBacklogged = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_tenants_backlogged",
		Help: "Tenants with requests waiting for a slot."}, []string{"model"})
	mSpread = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_tenant_service_spread",
		Help: "Spread (max - min) of the weighted service counters of the backlogged tenants, in token cost units."}, []string{"model"})
	mTargetLatency = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_model_target_latency_seconds",
		Help: "The model's configured time-to-first-token target."}, []string{"model"})
	mTargetITL = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hxp_model_target_itl_seconds",
		Help: "The model's inter-token latency budget per step."}, []string{"model"})
)

// Collectors returns the scheduler's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{mQueueDepth, mQueueCapacity, mRunning, mSlots, mPromptTokens, mReusedTokens,
		mGenTokens, mTTFT, mITL, mE2E, mQueueTime, mStepTokens, mStepSeconds, mKVUsage, mKVCached, mRejections, mFinished,
		mSlotMoves, mTargetLatency, mTargetITL, mBacklogged, mSpread, mPreemptions}
}

// RegisterMetrics registers the scheduler's metrics with r (once per registry).
func RegisterMetrics(r prometheus.Registerer) error {
	for _, c := range Collectors() {
		if err := r.Register(c); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				return err
			}
		}
	}
	return nil
}

// modelMetrics holds one model's bound series, so the decode loop never looks up labels.
type modelMetrics struct {
	queueDepth, running, kvUsage, kvCached prometheus.Gauge
	backlogged, spread                     prometheus.Gauge
	promptTokens, reusedTokens, genToks    prometheus.Counter
	slotMoves, preemptions                 prometheus.Counter
	ttft, itl, e2e, queueTime              prometheus.Observer
	stepTokens, stepSeconds                prometheus.Observer
	name                                   string
}

func newModelMetrics(name string) *modelMetrics {
	return &modelMetrics{
		name:         name,
		queueDepth:   mQueueDepth.WithLabelValues(name),
		running:      mRunning.WithLabelValues(name),
		kvUsage:      mKVUsage.WithLabelValues(name),
		kvCached:     mKVCached.WithLabelValues(name),
		backlogged:   mBacklogged.WithLabelValues(name),
		spread:       mSpread.WithLabelValues(name),
		promptTokens: mPromptTokens.WithLabelValues(name),
		reusedTokens: mReusedTokens.WithLabelValues(name),
		genToks:      mGenTokens.WithLabelValues(name),
		slotMoves:    mSlotMoves.WithLabelValues(name),
		preemptions:  mPreemptions.WithLabelValues(name),
		ttft:         mTTFT.WithLabelValues(name),
		itl:          mITL.WithLabelValues(name),
		e2e:          mE2E.WithLabelValues(name),
		queueTime:    mQueueTime.WithLabelValues(name),
		stepTokens:   mStepTokens.WithLabelValues(name),
		stepSeconds:  mStepSeconds.WithLabelValues(name),
	}
}

func (m *modelMetrics) reject(reason string)  { mRejections.WithLabelValues(m.name, reason).Inc() }
func (m *modelMetrics) finish(f FinishReason) { mFinished.WithLabelValues(m.name, string(f)).Inc() }
