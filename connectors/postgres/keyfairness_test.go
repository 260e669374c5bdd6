package postgres

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestKeySpecFairnessValidation(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		spec  KeySpec
		field string
	}{
		{KeySpec{Name: "k", Weight: -1}, "weight"},
		{KeySpec{Name: "k", Weight: MaxKeyWeight + 1}, "weight"},
		{KeySpec{Name: "k", Weight: math.NaN()}, "weight"},
		{KeySpec{Name: "k", Priority: "urgent"}, "priority"},
	} {
		var ve *ValidationError
		if err := c.spec.Validate(now); !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%+v: %v, want a ValidationError naming %s", c.spec, err, c.field)
		}
	}
	for _, ok := range []KeySpec{{Name: "k"}, {Name: "k", Weight: 0.5, Priority: PriorityBatch}, {Name: "k", Weight: MaxKeyWeight, Priority: PriorityInteractive}} {
		if err := ok.Validate(now); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// TestKeyFairnessStored: weight and priority are stored and read back; a key created
// without them (as every key before migration 0003) has weight 1 and the interactive
// class.
func TestKeyFairnessStored(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	secret, key, err := db.CreateKey(ctx, KeySpec{Name: "batch jobs", Weight: 3, Priority: PriorityBatch})
	if err != nil {
		t.Fatal(err)
	}
	if key.Weight != 3 || key.Priority != PriorityBatch {
		t.Fatalf("created key: weight %v priority %q", key.Weight, key.Priority)
	}
	got, err := db.LookupKey(ctx, secret)
	if err != nil || got.Weight != 3 || got.Priority != PriorityBatch {
		t.Fatalf("LookupKey: %+v, %v", got, err)
	}
	_, plain, err := db.CreateKey(ctx, KeySpec{Name: "defaults"})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Weight != 1 || plain.Priority != PriorityInteractive {
		t.Errorf("key without weight and priority: weight %v priority %q", plain.Weight, plain.Priority)
	}
	// The database refuses what validation would have: the columns' checks hold for
	// writers other than CreateKey too.
	if _, err := db.pool.Exec(ctx, "UPDATE api_keys SET weight = 0 WHERE id = $1", plain.ID); err == nil {
		t.Error("weight 0 was stored")
	}
	if _, err := db.pool.Exec(ctx, "UPDATE api_keys SET priority = 'urgent' WHERE id = $1", plain.ID); err == nil {
		t.Error("priority urgent was stored")
	}
}
