package config

import (
	"strings"
	"testing"
)

func TestGraphQLDefaults(t *testing.T) {
	c, err := Parse([]byte(grpcModels), Options{SkipFiles: true, HostCores: 2})
	if err != nil {
		t.Fatal(err)
	}
	g := c.GraphQL
	if !g.On() || g.MaxDepth != DefaultGraphQLMaxDepth || g.MaxComplexity != DefaultGraphQLMaxComplexity {
		t.Fatalf("defaults: %+v", g)
	}
	if !g.IntrospectionOn(false) || g.IntrospectionOn(true) {
		t.Fatal("introspection should default to on for an open API and off when keys are required")
	}
}

func TestGraphQLEnv(t *testing.T) {
	c, err := Parse([]byte(grpcModels), Options{SkipFiles: true, HostCores: 2, Environ: []string{
		"HXP_GRAPHQL_ENABLED=false", "HXP_GRAPHQL_INTROSPECTION=true", "HXP_GRAPHQL_MAX_DEPTH=7", "HXP_GRAPHQL_MAX_COMPLEXITY=90"}})
	if err != nil {
		t.Fatal(err)
	}
	g := c.GraphQL
	if g.On() || !g.IntrospectionOn(true) || g.MaxDepth != 7 || g.MaxComplexity != 90 {
		t.Fatalf("env not applied: %+v", g)
	}
}

func TestGraphQLValidation(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"graphql: {max_depth: -1}\n", "graphql.max_depth: -1 is out of range (1..100"},
		{"graphql: {max_depth: 101}\n", "graphql.max_depth: 101 is out of range"},
		{"graphql: {max_complexity: -5}\n", "graphql.max_complexity: -5 is out of range (1..1000000)"},
	} {
		_, err := Parse([]byte(c.yaml+grpcModels), Options{SkipFiles: true, HostCores: 2})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.yaml, err, c.want)
		}
	}
}
