package kvtype

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Type{"": F16, "F16": F16, "bf16": BF16, "q8_0": Q8_0, " q4_0 ": Q4_0, "f32": F32} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := Parse("q2_k")
	if err == nil || !strings.Contains(err.Error(), "kv_type") || !strings.Contains(err.Error(), Names()) {
		t.Errorf("Parse(q2_k) error %v: want one naming kv_type and %s", err, Names())
	}
	if Type("").Valid() || Type("F16").Valid() || !Q4_0.Valid() {
		t.Error("Valid must accept exactly the table's spellings")
	}
}

func TestStorage(t *testing.T) {
	for _, tc := range []struct {
		t     Type
		n     uint64
		bytes uint64
		per   float64
		flash bool
	}{
		{F16, 100, 200, 2, false},
		{BF16, 100, 200, 2, false},
		{F32, 100, 400, 4, false},
		{Q8_0, 64, 68, 34.0 / 32, true},
		{Q8_0, 33, 68, 34.0 / 32, true}, // a partial block takes a whole one
		{Q4_0, 64, 36, 18.0 / 32, true},
		{"nonsense", 100, 200, 2, false}, // sized as the default
	} {
		if got := tc.t.Bytes(tc.n); got != tc.bytes {
			t.Errorf("%s.Bytes(%d) = %d, want %d", tc.t, tc.n, got, tc.bytes)
		}
		if got := tc.t.BytesPerElement(); got != tc.per {
			t.Errorf("%s.BytesPerElement() = %v, want %v", tc.t, got, tc.per)
		}
		if got := tc.t.NeedsFlashAttention(); got != tc.flash {
			t.Errorf("%s.NeedsFlashAttention() = %v, want %v", tc.t, got, tc.flash)
		}
	}
	if all := All(); len(all) != 5 || all[0] != Default {
		t.Errorf("All() = %v: want the five types, default first", all)
	}
}
