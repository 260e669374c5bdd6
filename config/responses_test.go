package config

import (
	"strings"
	"testing"
	"time"
)

// TestResponsesSection: defaults, the HXP_ mapping and the validation naming the field.
func TestResponsesSection(t *testing.T) {
	var r Responses
	r.applyDefaults()
	if r.Retention.D() != 30*24*time.Hour || r.MaxStored != 10000 || r.MaxStoredBytes != 256<<20 {
		t.Fatalf("defaults = %+v", r)
	}
	c := &Config{}
	if problems := ApplyEnv(c, []string{"HXP_RESPONSES_RETENTION=48h"}); len(problems) > 0 {
		t.Fatal(problems)
	}
	if c.Responses.Retention.D() != 48*time.Hour {
		t.Errorf("HXP_RESPONSES_RETENTION=48h gave %s", c.Responses.Retention.D())
	}
	var msgs []string
	validateResponses(func(path, format string, args ...any) { msgs = append(msgs, path) },
		Responses{Retention: Duration(time.Second), MaxStored: 0, MaxStoredBytes: 10})
	if got := strings.Join(msgs, ","); got != "responses.retention,responses.max_stored,responses.max_stored_bytes" {
		t.Errorf("validation named %s", got)
	}
}
