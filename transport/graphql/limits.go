package graphql

import (
	"context"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// depthLimit refuses operations whose selections nest deeper than max, before they
// run: { models { id } } has depth 2. Fragments count where they are spread;
// introspection fields (__schema, __type, __typename) are not counted, so that
// introspection depends on its own switch only.
type depthLimit int

// ExtensionName implements graphql.HandlerExtension.
func (depthLimit) ExtensionName() string { return "DepthLimit" }

// Validate implements graphql.HandlerExtension.
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext implements graphql.OperationContextMutator.
func (d depthLimit) MutateOperationContext(_ context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	if depth := selectionDepth(rc.Doc, rc.Operation.SelectionSet, int(d)); depth > int(d) {
		return &gqlerror.Error{Message: "operation is nested deeper than the limit of " + strconv.Itoa(int(d)) + " (graphql.max_depth)",
			Extensions: map[string]any{"code": "DEPTH_LIMIT_EXCEEDED"}}
	}
	return nil
}

// selectionDepth is the depth of set, counted up to limit+1 (deeper sets are not
// walked, so fragment cycles cannot loop).
func selectionDepth(doc *ast.QueryDocument, set ast.SelectionSet, limit int) int {
	if limit < 0 {
		return 1
	}
	deepest := 0
	for _, sel := range set {
		d := 0
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") {
				continue
			}
			d = 1
			if len(s.SelectionSet) > 0 {
				d += selectionDepth(doc, s.SelectionSet, limit-1)
			}
		case *ast.InlineFragment:
			d = selectionDepth(doc, s.SelectionSet, limit)
		case *ast.FragmentSpread:
			if f := doc.Fragments.ForName(s.Name); f != nil {
				d = selectionDepth(doc, f.SelectionSet, limit)
			}
		}
		deepest = max(deepest, d)
	}
	return deepest
}
