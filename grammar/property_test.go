package grammar

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaGen draws random schemas from the supported subset.
type schemaGen struct {
	r    *rand.Rand
	defs map[string]any
}

var propNames = []string{"a", "name", "with space", `quo"te`, "slash/x", "é", "id", "n"}

func (g *schemaGen) typed(t string, depth int) map[string]any {
	r := g.r
	s := map[string]any{"type": t}
	switch t {
	case "string":
		switch r.IntN(3) {
		case 0:
			s["format"] = []string{"date", "time", "date-time", "uuid"}[r.IntN(4)]
		case 1:
			lo := r.IntN(4)
			s["minLength"], s["maxLength"] = lo, lo+r.IntN(5)
		}
	case "integer":
		lo := r.IntN(600) - 300
		if r.IntN(2) == 0 {
			s["minimum"] = lo
		} else if r.IntN(2) == 0 {
			s["exclusiveMinimum"] = float64(lo) - 0.5
		}
		if r.IntN(2) == 0 {
			s["maximum"] = lo + r.IntN(2000)
		} else if r.IntN(2) == 0 {
			s["exclusiveMaximum"] = lo + 1 + r.IntN(50)
		}
	case "object":
		props := map[string]any{}
		var req []string
		for range r.IntN(4) {
			k := propNames[r.IntN(len(propNames))]
			props[k] = g.schema(depth - 1)
			if r.IntN(2) == 0 {
				req = append(req, k)
			}
		}
		if len(props) > 0 {
			s["properties"] = props
		}
		if len(req) > 0 {
			s["required"] = dedupe(req)
		}
		switch r.IntN(3) {
		case 0:
			s["additionalProperties"] = false
		case 1:
			if len(props) == 0 {
				s["additionalProperties"] = g.schema(depth - 1)
			}
		}
	case "array":
		if r.IntN(3) > 0 {
			s["items"] = g.schema(depth - 1)
		}
		k := 0
		if r.IntN(3) == 0 {
			var pre []any
			for range 1 + r.IntN(2) {
				pre = append(pre, g.schema(depth-1))
			}
			k = len(pre)
			s["prefixItems"] = pre
			if r.IntN(2) == 0 {
				s["items"] = false
			}
		}
		lo := r.IntN(3)
		if s["items"] == false {
			lo = min(lo, k)
		}
		if r.IntN(2) == 0 {
			s["minItems"] = lo
		}
		if r.IntN(2) == 0 {
			s["maxItems"] = lo + r.IntN(3)
		}
	}
	return s
}

func dedupe(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

var scalarTypes = []string{"string", "integer", "number", "boolean", "null"}
var allTypes = []string{"string", "integer", "boolean", "null", "object", "array"}

func (g *schemaGen) schema(depth int) map[string]any {
	r := g.r
	n := 7
	if depth > 0 {
		n = 13
	}
	switch r.IntN(n) {
	case 0, 1, 2:
		return g.typed(scalarTypes[r.IntN(len(scalarTypes))], depth)
	case 3:
		return map[string]any{"enum": []any{"a", 1, 2.5, nil, true, map[string]any{"k": []any{1}}, "x\"y"}[:1+r.IntN(7)]}
	case 4:
		return map[string]any{"const": []any{"c", 0, false, []any{}}[r.IntN(4)], "description": "annotation"}
	case 5:
		t := scalarTypes[r.IntN(len(scalarTypes)-1)] // not null itself
		s := g.typed(t, depth)
		s["type"] = []string{t, "null"}
		return s
	case 6:
		return map[string]any{}
	case 7, 8:
		return g.typed("object", depth)
	case 9:
		return g.typed("array", depth)
	case 10:
		var branches []any
		for range 2 + r.IntN(2) {
			branches = append(branches, g.schema(depth-1))
		}
		return map[string]any{"anyOf": branches}
	case 11:
		perm := r.Perm(len(allTypes))
		var branches []any
		for _, i := range perm[:2+r.IntN(2)] {
			branches = append(branches, g.typed(allTypes[i], depth-1))
		}
		return map[string]any{"oneOf": branches}
	default:
		name := fmt.Sprintf("d%d", len(g.defs))
		g.defs[name] = nil // reserve the name before recursing
		g.defs[name] = g.schema(depth - 1)
		if r.IntN(2) == 0 {
			a, b := g.typed("object", 0), g.typed("object", 0)
			a["properties"], b["properties"] = map[string]any{"x": g.schema(0)}, map[string]any{"y": g.schema(0)}
			a["required"], b["required"] = []string{"x"}, []string{}
			delete(a, "additionalProperties")
			delete(b, "additionalProperties")
			g.defs[name] = a
			return map[string]any{"allOf": []any{map[string]any{"$ref": "#/$defs/" + name}, b}}
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
}

// TestGeneratedOutputsValidate draws random schemas from the supported subset and
// random strings from their grammars, and validates every string against its schema
// with an independent JSON Schema validator (formats asserted).
func TestGeneratedOutputsValidate(t *testing.T) {
	for seed := range uint64(300) {
		g := &schemaGen{r: rand.New(rand.NewPCG(seed, 7)), defs: map[string]any{}}
		root := g.schema(3)
		if len(g.defs) > 0 {
			root["$defs"] = g.defs
		}
		text, err := json.Marshal(root)
		if err != nil {
			t.Fatal(err)
		}
		b := NewBuilder()
		rule, err := b.AddSchema("s", text)
		if err != nil {
			t.Fatalf("seed %d: %s: %v", seed, text, err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(text)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("schema.json", doc); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile("schema.json")
		if err != nil {
			t.Fatalf("seed %d: the validator refuses %s: %v", seed, text, err)
		}
		rng := rand.New(rand.NewPCG(seed, 11))
		for range 10 {
			out := sample(t, b, rule, rng)
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
			if err != nil {
				t.Fatalf("seed %d: schema %s: output is not JSON: %s: %v", seed, text, out, err)
			}
			if err := sch.Validate(v); err != nil {
				g, _ := b.Grammar()
				t.Fatalf("seed %d: schema %s\noutput %s\n%v\n%s", seed, text, out, err, g)
			}
			if !accepts(t, b, rule, out) {
				t.Fatalf("seed %d: the recognizer rejects the generator's %s", seed, out)
			}
		}
	}
}
