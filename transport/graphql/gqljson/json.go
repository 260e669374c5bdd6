// Package gqljson is the GraphQL JSON scalar of HXP's schema: any JSON value (a
// string, number, boolean, list or object), held as its JSON text. Inputs that REST
// takes as polymorphic JSON (message content, stop, prompt, tool_choice, JSON
// schemas) keep that shape in GraphQL through it, and decode with the REST decoder.
//
// It is its own package so that the generated executor (transport/graphql/generated)
// can bind to it without importing the transport that imports the executor.
package gqljson

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/99designs/gqlgen/graphql"
)

// MarshalJSON writes v as JSON (null when empty).
func MarshalJSON(v json.RawMessage) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		if len(v) == 0 {
			_, _ = io.WriteString(w, "null")
			return
		}
		_, _ = w.Write(v)
	})
}

// UnmarshalJSON reads a JSON scalar input: the value of a variable or a literal, as
// gqlgen decoded it, encoded back to JSON text.
func UnmarshalJSON(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("JSON scalar: %w", err)
	}
	return b, nil
}
