package postgres

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestKeyLifecycle(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())

	spec := KeySpec{Name: "team a", AllowedModels: []string{"phi-3-mini"}, RPM: 60, TPM: 10000, MonthlyTokenBudget: 1e6}
	secret, key, err := db.CreateKey(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, KeyPrefix) || len(secret) != KeyLength || KeyIDOf(secret) != key.ID {
		t.Fatalf("secret %q does not carry id %q", secret, key.ID)
	}
	if key.Name != spec.Name || key.RPM != 60 || key.TPM != 10000 || key.MonthlyTokenBudget != 1e6 ||
		!key.AllowsModel("phi-3-mini") || key.AllowsModel("mixtral") || key.Disabled || key.CreatedAt.IsZero() {
		t.Fatalf("created key = %+v", key)
	}

	// Only the hash is stored.
	var stored []byte
	if err := db.pool.QueryRow(ctx, "SELECT secret_hash FROM api_keys WHERE id = $1", key.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	if !bytes.Equal(stored, sum[:]) {
		t.Fatal("stored hash is not SHA-256 of the secret")
	}

	got, err := db.LookupKey(ctx, secret)
	if err != nil {
		t.Fatalf("LookupKey: %v", err)
	}
	if got.ID != key.ID || got.Name != key.Name || len(got.AllowedModels) != 1 {
		t.Fatalf("LookupKey = %+v, want %+v", got, key)
	}

	// Right id, wrong secret part; malformed strings; unknown id.
	last := "A"
	if strings.HasSuffix(secret, "A") {
		last = "B"
	}
	wrong := secret[:len(secret)-1] + last
	other, _, _ := newKeySecret()
	for name, s := range map[string]string{"wrong secret": wrong, "empty": "", "short": "hxp-abc", "bad char": secret[:len(secret)-1] + "!", "unknown id": other} {
		_, err := db.LookupKey(ctx, s)
		if !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("%s: err = %v, want ErrKeyNotFound", name, err)
		}
		if err != nil && len(s) > 12 && strings.Contains(err.Error(), s[12:]) {
			t.Errorf("%s: error leaks the secret: %v", name, err)
		}
	}

	if err := db.RevokeKey(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeKey(ctx, key.ID); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := db.LookupKey(ctx, secret); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("after revoke: err = %v, want ErrKeyRevoked", err)
	}
	if err := db.RevokeKey(ctx, "nope0000"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("revoke unknown: err = %v", err)
	}
	rk, err := db.GetKey(ctx, key.ID)
	if err != nil || !rk.Disabled || rk.RevokedAt.IsZero() {
		t.Fatalf("GetKey after revoke = %+v, %v", rk, err)
	}
}

func TestKeyExpiry(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	secret, key, err := db.CreateKey(ctx, KeySpec{Name: "short-lived", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.LookupKey(ctx, secret); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	// Move the expiry into the past rather than waiting for it.
	if _, err := db.pool.Exec(ctx, "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LookupKey(ctx, secret); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("after expiry: err = %v, want ErrKeyExpired", err)
	}
}

func TestListKeys(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	var ids []string
	for _, name := range []string{"first", "second", "third"} {
		_, k, err := db.CreateKey(ctx, KeySpec{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	if err := db.RevokeKey(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	keys, err := db.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("ListKeys returned %d keys", len(keys))
	}
	for i, k := range keys {
		if k.ID != ids[i] || k.Disabled != (i == 1) || k.AllowedModels == nil {
			t.Errorf("key %d = %+v", i, k)
		}
	}
}

func TestKeySpecValidation(t *testing.T) {
	now := time.Now()
	cases := []struct {
		spec  KeySpec
		field string
	}{
		{KeySpec{Name: ""}, "name"},
		{KeySpec{Name: "   "}, "name"},
		{KeySpec{Name: strings.Repeat("x", MaxKeyNameLength+1)}, "name"},
		{KeySpec{Name: "tab\there"}, "name"},
		{KeySpec{Name: "ok", RPM: -1}, "rpm"},
		{KeySpec{Name: "ok", TPM: -5}, "tpm"},
		{KeySpec{Name: "ok", RPM: MaxRateLimit + 1}, "rpm"},
		{KeySpec{Name: "ok", MonthlyTokenBudget: -1}, "monthly_token_budget"},
		{KeySpec{Name: "ok", AllowedModels: []string{"a", ""}}, "allowed_models[1]"},
		{KeySpec{Name: "ok", AllowedModels: []string{"a", "a"}}, "allowed_models[1]"},
		{KeySpec{Name: "ok", ExpiresAt: now.Add(-time.Minute)}, "expires_at"},
	}
	for _, c := range cases {
		err := c.spec.Validate(now)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: err = %v, want a ValidationError for %s", c.spec, err, c.field)
		}
	}
	if err := (KeySpec{Name: "ok", RPM: 0, AllowedModels: []string{"a", "b"}, ExpiresAt: now.Add(time.Hour)}).Validate(now); err != nil {
		t.Fatalf("valid spec rejected: %v", err)
	}
}

func TestCreateKeyValidatesBeforeWriting(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(ctx, t, testenv.SharedPostgres(t).URL())
	_, _, err := db.CreateKey(ctx, KeySpec{Name: "x", RPM: -1})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "rpm" {
		t.Fatalf("err = %v", err)
	}
	keys, err := db.ListKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Fatalf("ListKeys = %v, %v; want no keys", keys, err)
	}
}

// chiSquare61Critical is the value that Pearson's statistic over 62 equally likely
// characters (61 degrees of freedom) exceeds with probability 1e-9: a correct generator fails
// the test once in a billion runs.
const chiSquare61Critical = 152.0

// TestRandomBase62IsUniform draws 4000 characters per symbol on average and tests the counts
// against the uniform distribution with Pearson's chi-square test at alpha = 1e-9. Dropping
// the rejection of bytes 248..255 (making '0'..'7' a quarter more likely) gives a statistic
// of about 1700.
func TestRandomBase62IsUniform(t *testing.T) {
	const perSymbol = 4000
	n := len(base62) * perSymbol
	s, err := randomBase62(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != n {
		t.Fatalf("randomBase62(%d) returned %d characters", n, len(s))
	}
	counts := map[string]int{}
	for _, r := range s {
		if !strings.ContainsRune(base62, r) {
			t.Fatalf("character %q outside base62", r)
		}
		counts[string(r)]++
	}
	var stat float64
	for _, r := range base62 {
		d := float64(counts[string(r)] - perSymbol)
		stat += d * d / perSymbol
	}
	if stat > chiSquare61Critical {
		t.Fatalf("chi-square statistic %.1f over %d characters exceeds %.1f (p < 1e-9): not uniform; counts %v", stat, n, chiSquare61Critical, counts)
	}
	t.Logf("chi-square statistic %.1f (61 degrees of freedom, expected about 61)", stat)
}
