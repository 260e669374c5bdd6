package limits

import (
	"math"
	"time"
)

// The bucket arithmetic, in microseconds. A dimension with limit L over period P has an
// emission interval T = P/L: each unit taken adds T to the bucket's debt, and the debt falls
// by one microsecond per microsecond. The bucket is full at debt 0 and empty at debt P; a
// cost c is admitted when debt + c*T <= P. The redis connector's Lua script implements the
// same arithmetic; keep them in step.

// epsilonMicros absorbs floating-point rounding in debt sums (a nanosecond, far below any
// emission interval).
const epsilonMicros = 1e-3

// State is a key's stored bucket state. It is exported for implementations of Limiter outside
// this package that keep state elsewhere; most code never needs it.
type State struct {
	// RequestDebt and TokenDebt are the buckets' debts in microseconds at At.
	RequestDebt, TokenDebt float64
	// At is the time of the last update, in Unix microseconds.
	At int64
}

// decay returns the debts at now.
func (s State) decay(now int64) (req, tok float64) {
	elapsed := float64(max(now-s.At, 0))
	return math.Max(s.RequestDebt-elapsed, 0), math.Max(s.TokenDebt-elapsed, 0)
}

// Idle returns how long after At both debts are paid off, after which the state equals no
// state and may be deleted.
func (s State) Idle() time.Duration {
	return time.Duration(math.Ceil(math.Max(s.RequestDebt, s.TokenDebt))) * time.Microsecond
}

// dimension is one bucket's check.
type dimension struct {
	limit int64
	debt  float64 // before the decision
	cost  int64
}

// interval returns T in microseconds for period p.
func (d dimension) interval(p float64) float64 { return p / float64(d.limit) }

// need returns the debt after taking the cost.
func (d dimension) need(p float64) float64 { return d.debt + float64(d.cost)*d.interval(p) }

// fits reports whether the cost can be taken now, and whether it could ever be.
func (d dimension) fits(p float64) (ok, tooLarge bool) {
	if d.limit == 0 {
		return true, false
	}
	if d.cost > d.limit {
		return false, true
	}
	return d.need(p) <= p+epsilonMicros, false
}

// bucket describes the dimension with the given final debt.
func (d dimension) bucket(p, debt float64) Bucket {
	if d.limit == 0 {
		return Bucket{}
	}
	remaining := int64(math.Floor((p - debt + epsilonMicros) / d.interval(p)))
	return Bucket{
		Limit:     d.limit,
		Remaining: min(max(remaining, 0), d.limit),
		Reset:     time.Duration(math.Ceil(debt)) * time.Microsecond,
	}
}

// Decide applies one Allow to a state at time now (Unix microseconds) and returns the new
// state and the decision. It is a pure function; callers store the state.
func Decide(s State, now int64, lim Limits, cost Cost) (State, Decision) {
	p := float64(lim.period().Microseconds())
	reqDebt, tokDebt := s.decay(now)
	req := dimension{limit: lim.Requests, debt: reqDebt, cost: cost.Requests}
	tok := dimension{limit: lim.Tokens, debt: tokDebt, cost: cost.Tokens}

	reqOK, reqTooLarge := req.fits(p)
	tokOK, tokTooLarge := tok.fits(p)
	d := Decision{Allowed: reqOK && tokOK, TooLarge: reqTooLarge || tokTooLarge}
	if d.Allowed {
		if req.limit > 0 {
			reqDebt = req.need(p)
		}
		if tok.limit > 0 {
			tokDebt = tok.need(p)
		}
	} else if !d.TooLarge {
		var wait float64
		if !reqOK {
			wait = math.Max(wait, req.need(p)-p)
		}
		if !tokOK {
			wait = math.Max(wait, tok.need(p)-p)
		}
		d.RetryAfter = time.Duration(math.Ceil(wait)) * time.Microsecond
	}
	if req.limit == 0 {
		reqDebt = 0
	}
	if tok.limit == 0 {
		tokDebt = 0
	}
	d.Requests = req.bucket(p, reqDebt)
	d.Tokens = tok.bucket(p, tokDebt)
	return State{RequestDebt: reqDebt, TokenDebt: tokDebt, At: now}, d
}

// ChargeState applies one Charge to a state at time now and returns the new state.
func ChargeState(s State, now int64, lim Limits, tokens int64) State {
	reqDebt, tokDebt := s.decay(now)
	if lim.Tokens > 0 {
		p := float64(lim.period().Microseconds())
		tokDebt = math.Max(tokDebt+float64(tokens)*p/float64(lim.Tokens), 0)
	}
	return State{RequestDebt: reqDebt, TokenDebt: tokDebt, At: now}
}
