package grammar

import (
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
)

// maxInt is the largest magnitude an integer rule produces (16 digits, as the
// unbounded integer rule): bounds beyond it are lowered to it, which keeps every
// output inside the schema's bounds.
const maxInt = 9999999999999999

func isIntegral(n json.Number) bool {
	r, ok := new(big.Rat).SetString(n.String())
	return ok && r.IsInt()
}

// ratFloor and ratCeil round r to an integer clamped to ±maxInt.
func ratFloor(r *big.Rat) int64 { return clampInt(floorRat(r)) }
func ratCeil(r *big.Rat) int64 {
	f := floorRat(r)
	if !r.IsInt() {
		f.Add(f, big.NewInt(1))
	}
	return clampInt(f)
}

func floorRat(r *big.Rat) *big.Int {
	// Euclidean division by the positive denominator: the quotient is the floor.
	q, _ := new(big.Int).DivMod(r.Num(), r.Denom(), new(big.Int))
	return q
}

func clampInt(i *big.Int) int64 {
	if i.Cmp(big.NewInt(maxInt)) > 0 {
		return maxInt
	}
	if i.Cmp(big.NewInt(-maxInt)) < 0 {
		return -maxInt
	}
	return i.Int64()
}

// intRange matches the canonical decimal form (no leading zeros, no "-0") of every
// integer in [lo, hi], built digit by digit as llama.cpp's converter does.
func intRange(lo, hi int64) expr {
	var a alt
	if lo < 0 {
		nlo := int64(1)
		if hi < 0 {
			nlo = -hi
		}
		a = append(a, seq{lit("-"), natRange(nlo, -lo)})
	}
	if hi >= 0 {
		a = append(a, natRange(max(lo, 0), hi))
	}
	if len(a) == 1 {
		return a[0]
	}
	return a
}

// natRange matches the naturals in [lo, hi], split by number of digits.
func natRange(lo, hi int64) expr {
	x, y := strconv.FormatInt(lo, 10), strconv.FormatInt(hi, 10)
	var a alt
	for l := len(x); l <= len(y); l++ {
		from, to := x, y
		if l > len(x) {
			from = "1" + strings.Repeat("0", l-1)
		}
		if l < len(y) {
			to = strings.Repeat("9", l)
		}
		a = append(a, digitRange(from, to))
	}
	if len(a) == 1 {
		return a[0]
	}
	return a
}

// digitRange matches the digit strings of x's length between x and y inclusive.
func digitRange(x, y string) expr {
	if x == "" {
		return seq{}
	}
	if x[0] == y[0] {
		return join(lit(x[:1]), digitRange(x[1:], y[1:]))
	}
	n := len(x) - 1
	lo, hi := rune(x[0]), rune(y[0])
	var a alt
	if strings.Trim(x[1:], "0") != "" {
		a = append(a, join(lit(x[:1]), digitRange(x[1:], strings.Repeat("9", n))))
		lo++
	}
	var last expr
	if strings.Trim(y[1:], "9") != "" {
		last = join(lit(y[:1]), digitRange(strings.Repeat("0", n), y[1:]))
		hi--
	}
	if lo <= hi {
		mid := seq{chars(false, lo, hi)}
		if n > 0 {
			mid = append(mid, rep{e: chars(false, '0', '9'), min: n, max: n})
		}
		a = append(a, mid)
	}
	if last != nil {
		a = append(a, last)
	}
	if len(a) == 1 {
		return a[0]
	}
	return a
}

// join is a sequence of a and b, merging adjacent literals and flattening.
func join(a, b expr) expr {
	if s, ok := b.(seq); ok && len(s) == 0 {
		return a
	}
	if la, ok := a.(lit); ok {
		if lb, ok := b.(lit); ok {
			return la + lb
		}
	}
	return seq{a, b}
}
