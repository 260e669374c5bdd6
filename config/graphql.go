package config

// GraphQL configures the GraphQL front end, served at /graphql on the gateway's
// address (queries and mutations over POST, subscriptions over WebSocket).
type GraphQL struct {
	// Enabled serves /graphql. Unset means true; HXP_GRAPHQL_ENABLED=false turns it
	// off.
	Enabled *bool `yaml:"enabled"`
	// Introspection answers __schema and __type queries. Unset means on in
	// development (no key source configured: the API is open) and off once API keys
	// are required; set it to choose.
	Introspection *bool `yaml:"introspection"`
	// MaxDepth bounds how deeply an operation's selections nest (introspection
	// fields are not counted). Default 10.
	MaxDepth int `yaml:"max_depth"`
	// MaxComplexity bounds an operation's complexity: every selected field counts 1,
	// its selections included. Default 500.
	MaxComplexity int `yaml:"max_complexity"`
}

// GraphQL defaults and bounds.
const (
	DefaultGraphQLMaxDepth      = 10
	DefaultGraphQLMaxComplexity = 500
	maxGraphQLDepth             = 100
	maxGraphQLComplexity        = 1_000_000
)

// On reports whether /graphql is served.
func (g GraphQL) On() bool { return g.Enabled == nil || *g.Enabled }

// IntrospectionOn reports whether introspection is answered, given whether the API
// requires keys (authRequired): the configured value, else on for an open API only.
func (g GraphQL) IntrospectionOn(authRequired bool) bool {
	if g.Introspection != nil {
		return *g.Introspection
	}
	return !authRequired
}

func (g *GraphQL) applyDefaults() {
	if g.MaxDepth == 0 {
		g.MaxDepth = DefaultGraphQLMaxDepth
	}
	if g.MaxComplexity == 0 {
		g.MaxComplexity = DefaultGraphQLMaxComplexity
	}
}

// validateGraphQL checks the graphql section.
func validateGraphQL(add func(path, format string, args ...any), g GraphQL) {
	if g.MaxDepth < 1 || g.MaxDepth > maxGraphQLDepth {
		add("graphql.max_depth", "%d is out of range (1..%d)", g.MaxDepth, maxGraphQLDepth)
	}
	if g.MaxComplexity < 1 || g.MaxComplexity > maxGraphQLComplexity {
		add("graphql.max_complexity", "%d is out of range (1..%d)", g.MaxComplexity, maxGraphQLComplexity)
	}
}
