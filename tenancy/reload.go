package tenancy

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/sched"
)

// swappableKeys is the KeyStore of the config's keys; a reload replaces them whole,
// so that a lookup sees either the old keys or the new ones.
type swappableKeys struct{ keys atomic.Pointer[StaticKeys] }

// Lookup implements KeyStore.
func (s *swappableKeys) Lookup(ctx context.Context, secret string) (*infer.Caller, error) {
	keys := s.keys.Load()
	if keys == nil {
		return StaticKeys(nil).Lookup(ctx, secret)
	}
	return keys.Lookup(ctx, secret)
}

// SetStaticKeys replaces the keys that come from the config: auth.keys (hashed, with
// their scopes and limits), the node key, and the plain keys of auth.api_keys_file
// and HXP_AUTH_API_KEYS. Requests in flight keep the caller they were admitted with;
// the next lookup sees the new keys. Whether keys are required at all is fixed when
// the tenancy opens. On an error the old keys stay.
func (t *Tenancy) SetStaticKeys(auth config.KeyAuth, plain []string) error {
	var static []StaticKey
	for _, k := range auth.Keys {
		h, err := k.Hash()
		if err != nil {
			return fmt.Errorf("tenancy: auth.keys %s: sha256: %w", k.ID, err)
		}
		prio, err := sched.ParsePriority(k.Priority) // validated by config already
		if err != nil {
			return fmt.Errorf("tenancy: auth.keys %s: %w", k.ID, err)
		}
		static = append(static, StaticKey{Hash: h, Caller: infer.Caller{ID: k.ID, Name: k.ID, Models: k.Models,
			RPM: int64(k.RPM), TPM: int64(k.TPM), Budget: k.MonthlyTokenBudget, Weight: k.Weight, Priority: prio}})
	}
	if auth.NodeKey != "" {
		static = append(static, StaticKey{Hash: HashKey(auth.NodeKey), Caller: infer.Caller{ID: "node", Name: "node-to-node", Internal: true}})
	}
	keys := NewStaticKeys(static, plain)
	t.static.keys.Store(&keys)
	return nil
}
