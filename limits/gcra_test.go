package limits_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/limits"
)

func TestDecideLease(t *testing.T) {
	const now = 1_700_000_000_000_000
	lim := limits.Limits{Requests: 100, Tokens: 1000, Period: time.Hour}
	one := limits.Cost{Requests: 1, Tokens: 10}
	for _, c := range []struct {
		name             string
		lim              limits.Limits
		before           limits.Cost // taken before the lease
		cost             limits.Cost
		extra            limits.Extra
		allowed          bool
		leased           int64
		reqLeft, tokLeft int64
	}{
		{"no extra is Decide", lim, limits.Cost{}, one, limits.Extra{}, true, 0, 99, 990},
		{"count bounds", lim, limits.Cost{}, one, limits.Extra{Unit: one, Count: 5, Share: 1}, true, 5, 94, 940},
		{"share of requests bounds", lim, limits.Cost{}, one, limits.Extra{Unit: one, Count: 50, Share: 0.125}, true, 12, 87, 870},
		{"share of tokens bounds", lim, limits.Cost{}, one, limits.Extra{Unit: limits.Cost{Requests: 1, Tokens: 100}, Count: 50, Share: 0.5}, true, 4, 95, 590},
		{"nothing near the limit", lim, limits.Cost{Requests: 92}, one, limits.Extra{Unit: one, Count: 50, Share: 0.125}, true, 0, 7, 990},
		{"share 1 takes the rest", lim, limits.Cost{Requests: 90}, one, limits.Extra{Unit: one, Count: 50, Share: 1}, true, 9, 0, 900},
		{"a refused cost leases nothing", lim, limits.Cost{Tokens: 995}, one, limits.Extra{Unit: one, Count: 5, Share: 1}, false, 0, 100, 5},
		{"a zero cost leases", lim, limits.Cost{}, limits.Cost{}, limits.Extra{Unit: one, Count: 3, Share: 1}, true, 3, 97, 970},
		{"an unlimited dimension sets no bound", limits.Limits{Tokens: 1000, Period: time.Hour}, limits.Cost{}, one,
			limits.Extra{Unit: one, Count: 500, Share: 1}, true, 99, 0, 0},
		{"a dimension the unit does not use sets no bound", lim, limits.Cost{Tokens: 1000}, limits.Cost{Requests: 1},
			limits.Extra{Unit: limits.Cost{Requests: 1}, Count: 3, Share: 1}, true, 3, 96, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _ := limits.Decide(limits.State{}, now, c.lim, c.before)
			s, d, n := limits.DecideLease(s, now, c.lim, c.cost, c.extra)
			if d.Allowed != c.allowed || n != c.leased || d.Requests.Remaining != c.reqLeft || d.Tokens.Remaining != c.tokLeft {
				t.Fatalf("allowed %v leased %d remaining %d/%d; want %v %d %d/%d (%+v)", d.Allowed, n, d.Requests.Remaining, d.Tokens.Remaining,
					c.allowed, c.leased, c.reqLeft, c.tokLeft, d)
			}
			// The state holds what the decision reports.
			if _, peek := limits.Decide(s, now, c.lim, limits.Cost{}); peek.Requests != d.Requests || peek.Tokens != d.Tokens {
				t.Fatalf("state %+v disagrees with decision %+v", peek, d)
			}
		})
	}
}

func TestRefundState(t *testing.T) {
	const now = 1_700_000_000_000_000
	lim := limits.Limits{Requests: 7, Tokens: 333, Period: time.Hour}
	s, _, n := limits.DecideLease(limits.State{}, now, lim, limits.Cost{Requests: 1, Tokens: 20}, limits.Extra{Unit: limits.Cost{Requests: 1, Tokens: 20}, Count: 3, Share: 1})
	if n != 3 {
		t.Fatalf("leased %d, want 3", n)
	}
	// Two of the three leased units come back: what one request took is left taken.
	s = limits.RefundState(s, now, lim, limits.Cost{Requests: 2, Tokens: 40})
	_, d := limits.Decide(s, now, lim, limits.Cost{})
	if d.Requests.Remaining != 5 || d.Tokens.Remaining != 333-40 {
		t.Fatalf("after the refund: %+v", d)
	}
	// A refund never makes a bucket fuller than full.
	s = limits.RefundState(s, now, lim, limits.Cost{Requests: 100, Tokens: 10000})
	if s.RequestDebt != 0 || s.TokenDebt != 0 || s.Idle() != 0 {
		t.Fatalf("a large refund left %+v", s)
	}
}

func TestExtraValidate(t *testing.T) {
	for _, e := range []limits.Extra{
		{Count: -1, Share: 0.5},
		{Unit: limits.Cost{Tokens: -1}, Count: 1, Share: 0.5},
		{Count: 1, Share: 1.5},
		{Count: 1, Share: -0.1},
		{Count: 1, Share: math.NaN()},
	} {
		if err := e.Validate(); !errors.Is(err, limits.ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", e, err)
		}
	}
	if err := (limits.Extra{Unit: limits.Cost{Requests: 1}, Count: 3, Share: 1}).Validate(); err != nil {
		t.Errorf("a valid lease: %v", err)
	}
}
