package limits

import (
	"fmt"
	"math"
	"time"
)

// The bucket arithmetic, in microseconds. A dimension with limit L over period P has an
// emission interval T = P/L: each unit taken adds T to the bucket's debt, and the debt falls
// by one microsecond per microsecond. The bucket is full at debt 0 and empty at debt P; a
// cost c is admitted when debt + c*T <= P. The redis connector's Lua script implements the
// same arithmetic; keep them in step.
//
// A lease (DecideLease) is an admission that also takes up to n more units of the key's
// average request ahead of demand, bounded by a share of what the bucket has left, so that a
// gateway can admit from units it already holds (see Leased); RefundState gives back units
// held and not used.

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
func (d dimension) need(p float64) float64 { return d.take(p, d.debt, d.cost) }

// take returns debt after taking units more; an unlimited dimension keeps no debt.
func (d dimension) take(p, debt float64, units int64) float64 {
	if d.limit == 0 {
		return 0
	}
	return debt + float64(units)*d.interval(p)
}

// fitting returns how many units of size unit fit in share of what remains at debt: no
// bound (math.MaxInt64) when the dimension is unlimited or the unit does not use it.
func (d dimension) fitting(p, debt float64, unit int64, share float64) int64 {
	if d.limit == 0 || unit <= 0 {
		return math.MaxInt64
	}
	spare := int64(math.Floor(float64(d.bucket(p, debt).Remaining) * share))
	return spare / unit
}

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

// Extra is what a lease asks for beyond a request's own cost: up to Count more units of
// Unit, as many as fit in Share of what each limited dimension has left once the cost is
// taken. The zero value asks for nothing.
type Extra struct {
	// Unit is one leased unit, typically a key's average request (1 request and its mean
	// tokens).
	Unit Cost
	// Count is the most units to take.
	Count int64
	// Share caps the units taken at this fraction (0..1) of each limited dimension's
	// remaining capacity, so that leases shrink to nothing as a bucket empties.
	Share float64
}

// Validate rejects negative units or counts and a share outside 0..1.
func (e Extra) Validate() error {
	if err := e.Unit.Validate(); err != nil {
		return err
	}
	if e.Count < 0 || !(e.Share >= 0 && e.Share <= 1) {
		return fmt.Errorf("%w: lease must ask for 0 or more units within a share of 0..1 (count %d, share %g)", ErrInvalid, e.Count, e.Share)
	}
	return nil
}

// Decide applies one Allow to a state at time now (Unix microseconds) and returns the new
// state and the decision. It is a pure function; callers store the state.
func Decide(s State, now int64, lim Limits, cost Cost) (State, Decision) {
	s, d, _ := DecideLease(s, now, lim, cost, Extra{})
	return s, d
}

// DecideLease is Decide that, when it admits cost, also takes up to extra.Count more units
// of extra.Unit: as many as fit in extra.Share of what each limited dimension has left after
// the cost (a dimension that is unlimited, or that the unit does not use, sets no bound).
// It returns the new state, the decision, whose buckets count the leased units as taken,
// and the number of units leased. A refused cost leases nothing. It is a pure function.
func DecideLease(s State, now int64, lim Limits, cost Cost, extra Extra) (State, Decision, int64) {
	p := float64(lim.period().Microseconds())
	reqDebt, tokDebt := s.decay(now)
	req := dimension{limit: lim.Requests, debt: reqDebt, cost: cost.Requests}
	tok := dimension{limit: lim.Tokens, debt: tokDebt, cost: cost.Tokens}

	reqOK, reqTooLarge := req.fits(p)
	tokOK, tokTooLarge := tok.fits(p)
	d := Decision{Allowed: reqOK && tokOK, TooLarge: reqTooLarge || tokTooLarge}
	var leased int64
	if d.Allowed {
		if req.limit > 0 {
			reqDebt = req.need(p)
		}
		if tok.limit > 0 {
			tokDebt = tok.need(p)
		}
		leased = min(extra.Count, req.fitting(p, reqDebt, extra.Unit.Requests, extra.Share),
			tok.fitting(p, tokDebt, extra.Unit.Tokens, extra.Share))
		if leased > 0 {
			reqDebt = req.take(p, reqDebt, leased*extra.Unit.Requests)
			tokDebt = tok.take(p, tokDebt, leased*extra.Unit.Tokens)
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
	return State{RequestDebt: reqDebt, TokenDebt: tokDebt, At: now}, d, leased
}

// ChargeState applies one Charge to a state at time now and returns the new state.
func ChargeState(s State, now int64, lim Limits, tokens int64) State {
	return adjust(s, now, lim, 0, tokens)
}

// RefundState gives back units that were taken and not used (a lease's rest): each limited
// bucket's debt falls by their worth, but never below full. It returns the new state.
func RefundState(s State, now int64, lim Limits, units Cost) State {
	return adjust(s, now, lim, -units.Requests, -units.Tokens)
}

// adjust adds req and tok units (negative to give back) to the limited buckets' debts
// without checking them; a debt never falls below zero (full).
func adjust(s State, now int64, lim Limits, req, tok int64) State {
	p := float64(lim.period().Microseconds())
	reqDebt, tokDebt := s.decay(now)
	if lim.Requests > 0 {
		reqDebt = math.Max(reqDebt+float64(req)*p/float64(lim.Requests), 0)
	}
	if lim.Tokens > 0 {
		tokDebt = math.Max(tokDebt+float64(tok)*p/float64(lim.Tokens), 0)
	}
	return State{RequestDebt: reqDebt, TokenDebt: tokDebt, At: now}
}
