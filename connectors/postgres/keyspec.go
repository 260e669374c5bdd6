package postgres

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on key fields, checked before anything reaches the database.
const (
	// MaxKeyNameLength is the longest key name, in characters.
	MaxKeyNameLength = 100
	// MaxModelNameLength is the longest model name in AllowedModels, in characters.
	MaxModelNameLength = 200
	// MaxAllowedModels is the most models a key may be restricted to.
	MaxAllowedModels = 100
	// MaxRateLimit bounds RPM and TPM (they are stored as 32-bit integers).
	MaxRateLimit = 1<<31 - 1
	// MaxKeyWeight bounds Weight.
	MaxKeyWeight = 1000.0
)

// Key priorities: the scheduling class of a key's requests.
const (
	// PriorityInteractive requests are served before batch ones (the default).
	PriorityInteractive = "interactive"
	// PriorityBatch requests run when no interactive request waits (with aging).
	PriorityBatch = "batch"
)

// KeySpec describes a key to create. Zero limits mean "no limit".
type KeySpec struct {
	// Name is a human label, 1 to MaxKeyNameLength printable characters.
	Name string `json:"name"`
	// AllowedModels restricts the key to these models; empty allows every model.
	AllowedModels []string `json:"allowed_models,omitempty"`
	// RPM is the requests-per-minute limit; 0 means unlimited.
	RPM int `json:"rpm"`
	// TPM is the tokens-per-minute limit; 0 means unlimited.
	TPM int `json:"tpm"`
	// MonthlyTokenBudget caps prompt plus completion tokens per calendar month (UTC);
	// 0 means unlimited.
	MonthlyTokenBudget int64 `json:"monthly_token_budget"`
	// ExpiresAt is when the key stops working; the zero time means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Weight is the key's share of a busy model relative to other keys; 0 means 1.
	Weight float64 `json:"weight,omitempty"`
	// Priority is PriorityInteractive (default, also for "") or PriorityBatch.
	Priority string `json:"priority,omitempty"`
}

// weight returns the spec's weight with the default applied.
func (s KeySpec) weight() float64 {
	if s.Weight == 0 {
		return 1
	}
	return s.Weight
}

// priority returns the spec's priority with the default applied.
func (s KeySpec) priority() string {
	if s.Priority == "" {
		return PriorityInteractive
	}
	return s.Priority
}

// ValidationError reports a KeySpec field (or another input) that is not acceptable.
type ValidationError struct {
	// Field is the JSON name of the field.
	Field string
	// Value is the rejected value, formatted for the message.
	Value string
	// Reason says what is allowed.
	Reason string
}

// Error implements error.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s %s: %s", e.Field, e.Value, e.Reason)
}

// invalid builds a ValidationError.
func invalid(field string, value any, reason string) error {
	return &ValidationError{Field: field, Value: fmt.Sprintf("%q", fmt.Sprint(value)), Reason: reason}
}

// Validate checks the spec against the limits above; now is the time expiry is checked
// against. The error is a *ValidationError naming the first bad field.
func (s KeySpec) Validate(now time.Time) error {
	name := strings.TrimSpace(s.Name)
	switch {
	case name == "":
		return invalid("name", s.Name, "must not be empty")
	case utf8.RuneCountInString(s.Name) > MaxKeyNameLength:
		return invalid("name", s.Name, fmt.Sprintf("must be at most %d characters", MaxKeyNameLength))
	case !utf8.ValidString(s.Name) || strings.IndexFunc(s.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return invalid("name", s.Name, "must be valid UTF-8 without control characters")
	}
	if len(s.AllowedModels) > MaxAllowedModels {
		return invalid("allowed_models", len(s.AllowedModels), fmt.Sprintf("at most %d models", MaxAllowedModels))
	}
	seen := make(map[string]bool, len(s.AllowedModels))
	for i, m := range s.AllowedModels {
		field := fmt.Sprintf("allowed_models[%d]", i)
		switch {
		case strings.TrimSpace(m) == "":
			return invalid(field, m, "must not be empty")
		case utf8.RuneCountInString(m) > MaxModelNameLength:
			return invalid(field, m, fmt.Sprintf("must be at most %d characters", MaxModelNameLength))
		case seen[m]:
			return invalid(field, m, "is listed twice")
		}
		seen[m] = true
	}
	if s.RPM < 0 || s.RPM > MaxRateLimit {
		return invalid("rpm", s.RPM, fmt.Sprintf("must be between 0 (unlimited) and %d", MaxRateLimit))
	}
	if s.TPM < 0 || s.TPM > MaxRateLimit {
		return invalid("tpm", s.TPM, fmt.Sprintf("must be between 0 (unlimited) and %d", MaxRateLimit))
	}
	if s.MonthlyTokenBudget < 0 {
		return invalid("monthly_token_budget", s.MonthlyTokenBudget, "must be >= 0 (0 is unlimited)")
	}
	if w := s.Weight; !(w >= 0 && w <= MaxKeyWeight) {
		return invalid("weight", w, fmt.Sprintf("must be above 0 and at most %g (1 is an equal share; 0 or unset means 1)", MaxKeyWeight))
	}
	if p := s.priority(); p != PriorityInteractive && p != PriorityBatch {
		return invalid("priority", s.Priority, "must be interactive or batch (unset means interactive)")
	}
	if !s.ExpiresAt.IsZero() && !s.ExpiresAt.After(now) {
		return invalid("expires_at", s.ExpiresAt.Format(time.RFC3339), "must be in the future (or unset for no expiry)")
	}
	return nil
}
