package grammar

import (
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// annotations are keywords that do not constrain values; they are ignored, as are
// extension keywords starting with "x-".
var annotations = set("title", "description", "examples", "default", "$schema", "$id", "$comment",
	"deprecated", "readOnly", "writeOnly", "contentEncoding", "contentMediaType", "contentSchema",
	"$defs", "definitions")

// typeKeywords are the keywords the converter enforces, by the type they apply to.
var typeKeywords = map[string]string{
	"minLength": "string", "maxLength": "string", "format": "string",
	"minimum": "number", "maximum": "number", "exclusiveMinimum": "number", "exclusiveMaximum": "number",
	"properties": "object", "required": "object", "additionalProperties": "object",
	"items": "array", "prefixItems": "array", "minItems": "array", "maxItems": "array", "uniqueItems": "array",
}

// general are the enforced keywords that apply to every type.
var general = set("type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref")

// refused are JSON Schema keywords a grammar cannot enforce, with the reason.
var refused = map[string]string{
	"multipleOf":            "divisibility cannot be expressed in a grammar",
	"pattern":               "regular expressions are not converted to grammars",
	"patternProperties":     "regular expressions are not converted to grammars",
	"propertyNames":         "constraints on property names are not supported",
	"minProperties":         "property counts are not supported",
	"maxProperties":         "property counts are not supported",
	"dependentRequired":     "conditional requirements are not supported",
	"dependentSchemas":      "conditional schemas are not supported",
	"dependencies":          "conditional schemas are not supported",
	"not":                   "negation cannot be expressed in a grammar",
	"if":                    "conditional schemas are not supported",
	"then":                  "conditional schemas are not supported",
	"else":                  "conditional schemas are not supported",
	"contains":              "contains cannot be expressed in a grammar",
	"minContains":           "contains cannot be expressed in a grammar",
	"maxContains":           "contains cannot be expressed in a grammar",
	"unevaluatedProperties": "unevaluated properties are not supported",
	"unevaluatedItems":      "unevaluated items are not supported",
	"additionalItems":       "draft 2019-09 tuples are not supported; use prefixItems and items",
	"$dynamicRef":           "dynamic references are not supported",
	"$dynamicAnchor":        "dynamic references are not supported",
	"$recursiveRef":         "recursive references are not supported; use $ref",
	"$recursiveAnchor":      "recursive references are not supported; use $ref",
	"$anchor":               "anchors are not supported; use $ref with a JSON pointer",
	"$vocabulary":           "custom vocabularies are not supported",
}

// formats are the string formats enforced, by name of their shared rule.
var formats = set("date", "time", "date-time", "uuid")

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// converter turns one schema document into rules of a Builder.
type converter struct {
	b      *Builder
	doc    *node
	prefix string
	refs   map[string]string // JSON pointer of a $ref target → its rule
	depth  int
}

// prop is one declared property of an object.
type prop struct {
	key    string
	schema *node
	ptr    string
}

// schema returns an expression matching one JSON value that satisfies n (at JSON
// pointer ptr); name prefixes the rules it creates.
func (c *converter) schema(n *node, ptr, name string) (expr, error) {
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > MaxDepth {
		return nil, invalid(ptr, "", "nested deeper than %d schemas", MaxDepth)
	}
	switch n.kind {
	case 'b':
		if n.b {
			return ref(c.b.prim("value")), nil
		}
		return nil, invalid(ptr, "", "the schema false admits no value")
	case 'o':
	default:
		return nil, invalid(ptr, "", "a schema must be an object or a boolean, not %s", n.typeName())
	}
	for _, k := range n.keys {
		switch {
		case annotations[k] || strings.HasPrefix(k, "x-") || general[k] || typeKeywords[k] != "":
		case refused[k] != "":
			return nil, unsupported(ptr, k, "%s", refused[k])
		default:
			return nil, unsupported(ptr, k, "unknown keyword")
		}
	}
	switch {
	case n.get("$ref") != nil:
		if err := onlyAnnotations(n, ptr, "$ref"); err != nil {
			return nil, err
		}
		return c.ref(n.get("$ref"), ptr)
	case n.get("allOf") != nil:
		return c.allOf(n, ptr, name)
	case n.get("anyOf") != nil || n.get("oneOf") != nil:
		return c.anyOf(n, ptr, name)
	case n.get("enum") != nil || n.get("const") != nil:
		return c.enum(n, ptr)
	}
	types, err := c.types(n, ptr)
	if err != nil {
		return nil, err
	}
	if types == nil {
		return ref(c.b.prim("value")), nil
	}
	var a alt
	for _, t := range types {
		e, err := c.typed(n, ptr, name, t)
		if err != nil {
			return nil, err
		}
		a = append(a, e)
	}
	if len(a) == 1 {
		return a[0], nil
	}
	return a, nil
}

// onlyAnnotations refuses keywords other than kw and annotations beside kw.
func onlyAnnotations(n *node, ptr, kw string) error {
	for _, k := range n.keys {
		if k != kw && !annotations[k] && !strings.HasPrefix(k, "x-") {
			return unsupported(ptr, k, "not supported beside %s", kw)
		}
	}
	return nil
}

// types returns the types n's values may have: its "type", or the one type its
// keywords apply to, or nil for any value. A "number" in the list covers "integer".
func (c *converter) types(n *node, ptr string) ([]string, error) {
	t := n.get("type")
	if t == nil {
		var implied []string
		for _, k := range n.keys {
			if tk := typeKeywords[k]; tk != "" && !slices.Contains(implied, tk) {
				implied = append(implied, tk)
			}
		}
		if len(implied) > 1 {
			return nil, unsupported(ptr, "type", "missing while keywords for several types (%s) are present; give the type", strings.Join(implied, ", "))
		}
		return implied, nil
	}
	var names []string
	switch t.kind {
	case 's':
		names = []string{t.str}
	case 'a':
		for _, x := range t.arr {
			if x.kind != 's' {
				return nil, invalid(ptr, "type", "must be a string or an array of strings")
			}
			names = append(names, x.str)
		}
	default:
		return nil, invalid(ptr, "type", "must be a string or an array of strings")
	}
	if len(names) == 0 {
		return nil, invalid(ptr, "type", "an empty list of types admits no value")
	}
	var out []string
	for _, s := range names {
		switch s {
		case "null", "boolean", "object", "array", "number", "integer", "string":
		default:
			return nil, invalid(ptr, "type", "unknown type %q", s)
		}
		if s == "integer" && slices.Contains(names, "number") || slices.Contains(out, s) {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func (c *converter) typed(n *node, ptr, name, t string) (expr, error) {
	switch t {
	case "null":
		return lit("null"), nil
	case "boolean":
		return alt{lit("true"), lit("false")}, nil
	case "string":
		return c.str(n, ptr)
	case "integer":
		return c.integer(n, ptr)
	case "number":
		for _, k := range []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} {
			if n.get(k) != nil {
				return nil, unsupported(ptr, k, "bounds on non-integer numbers cannot be expressed in a grammar; use type integer")
			}
		}
		return ref(c.b.prim("number")), nil
	case "object":
		props, required, addl, err := c.objectParts(n, ptr)
		if err != nil {
			return nil, err
		}
		return c.object(props, required, addl, ptr, name)
	default:
		return c.array(n, ptr, name)
	}
}

// count reads a non-negative integer keyword; -1 when absent.
func count(n *node, ptr, kw string) (int, error) {
	v := n.get(kw)
	if v == nil {
		return -1, nil
	}
	if v.kind != 'n' || !isIntegral(v.num) {
		return 0, invalid(ptr, kw, "must be a non-negative integer")
	}
	i, err := strconv.ParseInt(v.num.String(), 10, 64)
	if err != nil {
		r, _ := new(big.Rat).SetString(v.num.String())
		if r.Sign() < 0 {
			return 0, invalid(ptr, kw, "must be a non-negative integer")
		}
		return 1 << 40, nil
	}
	if i < 0 {
		return 0, invalid(ptr, kw, "must be a non-negative integer")
	}
	return int(min(i, 1<<40)), nil
}

// bounds reads minLength/maxLength or minItems/maxItems: max is -1 when unbounded,
// lowered to MaxRepeat; a min over MaxRepeat is refused.
func bounds(n *node, ptr, minKw, maxKw string) (lo, hi int, err error) {
	if lo, err = count(n, ptr, minKw); err != nil {
		return 0, 0, err
	}
	if hi, err = count(n, ptr, maxKw); err != nil {
		return 0, 0, err
	}
	lo = max(lo, 0)
	if lo > MaxRepeat {
		return 0, 0, unsupported(ptr, minKw, "more than %d cannot be expressed in a grammar", MaxRepeat)
	}
	if hi >= 0 && lo > hi {
		return 0, 0, invalid(ptr, maxKw, "%s %d is above %s %d: no value satisfies both", minKw, lo, maxKw, hi)
	}
	return lo, min(hi, MaxRepeat), nil
}

func (c *converter) str(n *node, ptr string) (expr, error) {
	if f := n.get("format"); f != nil {
		if f.kind != 's' {
			return nil, invalid(ptr, "format", "must be a string")
		}
		if !formats[f.str] {
			return nil, unsupported(ptr, "format", "format %q is not supported (supported: date, time, date-time, uuid)", f.str)
		}
		for _, k := range []string{"minLength", "maxLength"} {
			if n.get(k) != nil {
				return nil, unsupported(ptr, k, "not supported together with format")
			}
		}
		return seq{lit(`"`), ref(c.b.prim(f.str)), lit(`"`)}, nil
	}
	lo, hi, err := bounds(n, ptr, "minLength", "maxLength")
	if err != nil {
		return nil, err
	}
	if lo == 0 && hi < 0 {
		return ref(c.b.prim("string")), nil
	}
	return seq{lit(`"`), rep{e: ref(c.b.prim("char")), min: lo, max: hi}, lit(`"`)}, nil
}

func (c *converter) integer(n *node, ptr string) (expr, error) {
	lo, hi := int64(-maxInt), int64(maxInt)
	bounded := false
	for _, k := range []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} {
		v := n.get(k)
		if v == nil {
			continue
		}
		if v.kind == 'b' {
			return nil, unsupported(ptr, k, "a boolean (draft 4) is not supported; give the bound as a number")
		}
		if v.kind != 'n' {
			return nil, invalid(ptr, k, "must be a number")
		}
		r, ok := new(big.Rat).SetString(v.num.String())
		if !ok {
			return nil, invalid(ptr, k, "must be a number")
		}
		bounded = true
		switch k {
		case "minimum":
			lo = max(lo, ratCeil(r))
		case "exclusiveMinimum":
			lo = max(lo, ratFloor(r)+1)
		case "maximum":
			hi = min(hi, ratFloor(r))
		case "exclusiveMaximum":
			hi = min(hi, ratCeil(r)-1)
		}
	}
	if !bounded {
		return ref(c.b.prim("integer")), nil
	}
	if lo > hi {
		return nil, invalid(ptr, "minimum", "no integer lies within the bounds (or they exceed ±%d)", int64(maxInt))
	}
	return intRange(lo, hi), nil
}

// rule returns a reference to a new rule (named after name) for schema n; a schema
// that is only a $ref is referenced directly.
func (c *converter) rule(name string, n *node, ptr string) (expr, error) {
	if n.kind == 'o' && n.get("$ref") != nil {
		return c.schema(n, ptr, name)
	}
	nm := c.b.unique(name)
	c.b.define(nm, nil)
	e, err := c.schema(n, ptr, nm)
	if err != nil {
		return nil, err
	}
	c.b.define(nm, e)
	return ref(nm), nil
}

// ref resolves a local $ref; each target gets one rule, so recursive schemas give
// recursive rules.
func (c *converter) ref(v *node, ptr string) (expr, error) {
	if v.kind != 's' {
		return nil, invalid(ptr, "$ref", "must be a string")
	}
	if !strings.HasPrefix(v.str, "#") {
		return nil, unsupported(ptr, "$ref", "only local references (#/...) are supported, not %q", v.str)
	}
	frag, err := url.PathUnescape(v.str[1:])
	if err != nil || frag != "" && !strings.HasPrefix(frag, "/") {
		return nil, unsupported(ptr, "$ref", "only JSON pointers (#/...) are supported, not %q", v.str)
	}
	if nm, ok := c.refs[frag]; ok {
		return ref(nm), nil
	}
	target := c.doc
	var last string
	if frag != "" {
		for _, tok := range strings.Split(frag[1:], "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch target.kind {
			case 'o':
				target = target.vals[tok]
			case 'a':
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(target.arr) {
					target = nil
				} else {
					target = target.arr[i]
				}
			default:
				target = nil
			}
			if target == nil {
				return nil, invalid(ptr, "$ref", "%q does not resolve in this schema", v.str)
			}
			last = tok
		}
	}
	nm := c.b.unique(c.prefix + "-" + cmp(last, "root"))
	c.refs[frag] = nm
	c.b.define(nm, nil)
	e, err := c.schema(target, frag, nm)
	if err != nil {
		return nil, err
	}
	c.b.define(nm, e)
	return ref(nm), nil
}

func cmp(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// resolve follows $ref chains to the schema they name (for allOf and oneOf checks).
func (c *converter) resolve(n *node, ptr string) (*node, string) {
	for i := 0; i < MaxDepth && n.kind == 'o' && n.get("$ref") != nil && n.get("$ref").kind == 's'; i++ {
		s := n.get("$ref").str
		frag, err := url.PathUnescape(strings.TrimPrefix(s, "#"))
		if err != nil || !strings.HasPrefix(s, "#") {
			return n, ptr
		}
		t := c.doc
		for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
			if frag == "" {
				break
			}
			t = t.get(strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~"))
		}
		if t == nil {
			return n, ptr
		}
		n, ptr = t, frag
	}
	return n, ptr
}

func (c *converter) enum(n *node, ptr string) (expr, error) {
	for _, k := range n.keys {
		if k != "enum" && k != "const" && k != "type" && !annotations[k] && !strings.HasPrefix(k, "x-") {
			return nil, unsupported(ptr, k, "not supported beside enum or const")
		}
	}
	var values []*node
	if v := n.get("enum"); v != nil {
		if v.kind != 'a' || len(v.arr) == 0 {
			return nil, invalid(ptr, "enum", "must be a non-empty array")
		}
		values = v.arr
	}
	if v := n.get("const"); v != nil {
		if values != nil {
			return nil, unsupported(ptr, "const", "not supported together with enum")
		}
		values = []*node{v}
	}
	var types []string
	if n.get("type") != nil {
		var err error
		if types, err = c.types(n, ptr); err != nil {
			return nil, err
		}
	}
	var a alt
	for _, v := range values {
		t := v.typeName()
		if types != nil && !slices.Contains(types, t) && !(t == "integer" && slices.Contains(types, "number")) {
			continue
		}
		var w strings.Builder
		v.encode(&w)
		if l := lit(w.String()); !slices.Contains(a, expr(l)) {
			a = append(a, l)
		}
	}
	switch len(a) {
	case 0:
		return nil, invalid(ptr, "enum", "no value has the schema's type")
	case 1:
		return a[0], nil
	}
	return a, nil
}

func (c *converter) anyOf(n *node, ptr, name string) (expr, error) {
	kw := "anyOf"
	if n.get("oneOf") != nil {
		kw = "oneOf"
		if n.get("anyOf") != nil {
			return nil, unsupported(ptr, "oneOf", "not supported together with anyOf")
		}
	}
	if err := onlyAnnotations(n, ptr, kw); err != nil {
		return nil, err
	}
	v := n.get(kw)
	if v.kind != 'a' || len(v.arr) == 0 {
		return nil, invalid(ptr, kw, "must be a non-empty array of schemas")
	}
	if kw == "oneOf" && !c.disjoint(v.arr, ptr+"/oneOf") {
		return nil, unsupported(ptr, "oneOf", "branches may overlap and a grammar cannot exclude values matching several; use anyOf, or branches of distinct types, or objects told apart by a required const property")
	}
	var a alt
	for i, x := range v.arr {
		e, err := c.rule(fmt.Sprintf("%s-%d", name, i), x, fmt.Sprintf("%s/%s/%d", ptr, kw, i))
		if err != nil {
			return nil, err
		}
		a = append(a, e)
	}
	if len(a) == 1 {
		return a[0], nil
	}
	return a, nil
}

// Kinds of JSON values, for oneOf's disjointness check (integers are numbers).
const (
	kNull = 1 << iota
	kBool
	kObject
	kArray
	kString
	kNumber
	kAny = kNull | kBool | kObject | kArray | kString | kNumber
)

var kindOf = map[string]int{"null": kNull, "boolean": kBool, "object": kObject, "array": kArray, "string": kString, "number": kNumber, "integer": kNumber}

// kinds over-approximates the kinds of values schema n admits.
func (c *converter) kinds(n *node, ptr string, depth int) int {
	n, ptr = c.resolve(n, ptr)
	if n.kind != 'o' || depth > MaxDepth {
		return kAny
	}
	if v := n.get("enum"); v != nil && v.kind == 'a' {
		k := 0
		for _, x := range v.arr {
			k |= kindOf[x.typeName()]
		}
		return k
	}
	if v := n.get("const"); v != nil {
		return kindOf[v.typeName()]
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if v := n.get(kw); v != nil && v.kind == 'a' {
			k := 0
			for _, x := range v.arr {
				k |= c.kinds(x, ptr, depth+1)
			}
			return k
		}
	}
	types, err := c.types(n, ptr)
	if err != nil || types == nil {
		return kAny
	}
	k := 0
	for _, t := range types {
		k |= kindOf[t]
	}
	return k
}

// disjoint reports whether no value can satisfy two of the branches: their kinds of
// values are disjoint, or they are objects with a required property whose const or
// enum values differ between every two branches.
func (c *converter) disjoint(branches []*node, ptr string) bool {
	seen := 0
	overlap := false
	for i, b := range branches {
		k := c.kinds(b, fmt.Sprintf("%s/%d", ptr, i), 0)
		if seen&k != 0 {
			overlap = true
		}
		seen |= k
	}
	if !overlap {
		return true
	}
	first, _ := c.resolve(branches[0], ptr)
	for _, key := range requiredNames(first) {
		used := map[string]bool{}
		ok := true
		for i, b := range branches {
			b, _ = c.resolve(b, fmt.Sprintf("%s/%d", ptr, i))
			vals, isObj := discriminator(b, key)
			if !isObj || !slices.Contains(requiredNames(b), key) || vals == nil {
				ok = false
				break
			}
			for _, v := range vals {
				if used[v] {
					ok = false
				}
				used[v] = true
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func requiredNames(n *node) []string {
	var out []string
	if r := n.get("required"); r != nil && r.kind == 'a' {
		for _, x := range r.arr {
			if x.kind == 's' {
				out = append(out, x.str)
			}
		}
	}
	return out
}

// discriminator returns the encoded const/enum values of property key of object
// schema n (nil when it has none), and whether n only admits objects.
func discriminator(n *node, key string) ([]string, bool) {
	t := n.get("type")
	if t == nil || t.kind != 's' || t.str != "object" {
		return nil, false
	}
	p := n.get("properties").get(key)
	var vals []*node
	if v := p.get("const"); v != nil {
		vals = []*node{v}
	} else if v := p.get("enum"); v != nil && v.kind == 'a' {
		vals = v.arr
	}
	var out []string
	for _, v := range vals {
		if v.kind == 'n' {
			return nil, true // 1 and 1.0 are equal: numbers are not compared
		}
		var w strings.Builder
		v.encode(&w)
		out = append(out, w.String())
	}
	return out, true
}

// objectParts reads an object schema's properties, required names and
// additionalProperties (nil when absent).
func (c *converter) objectParts(n *node, ptr string) ([]prop, []string, *node, error) {
	var props []prop
	if p := n.get("properties"); p != nil {
		if p.kind != 'o' {
			return nil, nil, nil, invalid(ptr, "properties", "must be an object of schemas")
		}
		for _, k := range p.keys {
			props = append(props, prop{key: k, schema: p.vals[k], ptr: ptr + "/properties/" + pointerToken(k)})
		}
	}
	var required []string
	if r := n.get("required"); r != nil {
		if r.kind != 'a' {
			return nil, nil, nil, invalid(ptr, "required", "must be an array of strings")
		}
		for _, x := range r.arr {
			if x.kind != 's' {
				return nil, nil, nil, invalid(ptr, "required", "must be an array of strings")
			}
			if !slices.Contains(required, x.str) {
				required = append(required, x.str)
			}
		}
	}
	addl := n.get("additionalProperties")
	if addl != nil && addl.kind != 'b' && addl.kind != 'o' {
		return nil, nil, nil, invalid(ptr, "additionalProperties", "must be a boolean or a schema")
	}
	return props, required, addl, nil
}

// object matches objects with the declared properties in their declared order,
// required ones always and optional ones or not. Undeclared properties are produced
// only when there are no declared ones and additionalProperties allows them (a map):
// that is a subset of what the schema admits, so outputs always validate.
func (c *converter) object(props []prop, required []string, addl *node, ptr, name string) (expr, error) {
	ws := ref(c.b.prim("ws"))
	for _, r := range required {
		if !slices.ContainsFunc(props, func(p prop) bool { return p.key == r }) {
			return nil, unsupported(ptr, "required", "%q is not among the declared properties", r)
		}
	}
	if len(props) == 0 {
		switch {
		case addl != nil && addl.kind == 'b' && !addl.b:
			return seq{lit("{"), ws, lit("}")}, nil
		case addl == nil || addl.kind == 'b':
			return ref(c.b.prim("object")), nil
		}
		val, err := c.rule(name+"-value", addl, ptr+"/additionalProperties")
		if err != nil {
			return nil, err
		}
		kv := seq{ref(c.b.prim("string")), ws, lit(":"), ws, val, ws}
		return seq{lit("{"), ws, opt(seq{kv, rep{e: seq{lit(","), ws, kv}, max: -1}}), lit("}")}, nil
	}
	kvs := make([]expr, len(props))
	req := make([]bool, len(props))
	for i, p := range props {
		val, err := c.rule(name+"-"+p.key, p.schema, p.ptr)
		if err != nil {
			return nil, err
		}
		kvs[i] = seq{lit(jsonString(p.key)), ws, lit(":"), ws, val, ws}
		req[i] = slices.Contains(required, p.key)
	}
	// rest(i): properties i.. after one has been written (each preceded by a comma).
	// With optional properties each rest is a rule, so that the alternatives for the
	// first property written share them.
	optional := slices.Contains(req, false)
	rests := make([]expr, len(props)+1)
	var rest func(i int) expr
	rest = func(i int) expr {
		if i == len(props) {
			return seq{}
		}
		if rests[i] != nil {
			return rests[i]
		}
		item := cat(lit(","), ws, kvs[i])
		if !req[i] {
			item = opt(item)
		}
		body := cat(item, rest(i+1))
		if optional {
			nm := c.b.unique(fmt.Sprintf("%s-rest-%d", name, i))
			c.b.define(nm, body)
			body = ref(nm)
		}
		rests[i] = body
		return body
	}
	var first alt
	allOptional := true
	for i := range props {
		first = append(first, cat(kvs[i], rest(i+1)))
		if req[i] {
			allOptional = false
			break
		}
	}
	var inner expr = first
	if len(first) == 1 {
		inner = first[0]
	}
	if allOptional {
		inner = opt(inner)
	}
	return cat(lit("{"), ws, inner, lit("}")), nil
}

func (c *converter) array(n *node, ptr, name string) (expr, error) {
	if u := n.get("uniqueItems"); u != nil && (u.kind != 'b' || u.b) {
		return nil, unsupported(ptr, "uniqueItems", "uniqueness cannot be expressed in a grammar")
	}
	var prefix []expr
	if p := n.get("prefixItems"); p != nil {
		if p.kind != 'a' {
			return nil, invalid(ptr, "prefixItems", "must be an array of schemas")
		}
		for i, x := range p.arr {
			e, err := c.rule(fmt.Sprintf("%s-%d", name, i), x, fmt.Sprintf("%s/prefixItems/%d", ptr, i))
			if err != nil {
				return nil, err
			}
			prefix = append(prefix, e)
		}
	}
	var item expr = ref(c.b.prim("value"))
	if it := n.get("items"); it != nil {
		switch {
		case it.kind == 'a':
			return nil, unsupported(ptr, "items", "an array of schemas (draft 2019-09 tuples) is not supported; use prefixItems")
		case it.kind == 'b' && !it.b:
			item = nil
		case it.kind == 'b':
		default:
			var err error
			if item, err = c.rule(name+"-item", it, ptr+"/items"); err != nil {
				return nil, err
			}
		}
	}
	lo, hi, err := bounds(n, ptr, "minItems", "maxItems")
	if err != nil {
		return nil, err
	}
	k := len(prefix)
	if item == nil {
		if lo > k {
			return nil, invalid(ptr, "minItems", "%d is more than the %d items that items: false allows", lo, k)
		}
		if hi < 0 || hi > k {
			hi = k
		}
	}
	ws := ref(c.b.prim("ws"))
	sep := seq{lit(","), ws}
	var tail func(i int) expr
	tail = func(i int) expr {
		if hi >= 0 && i >= hi {
			return seq{}
		}
		if i < k {
			one := cat(prefix[i], ws, tail(i+1))
			if i > 0 {
				one = cat(sep, one)
			}
			if i >= lo {
				return opt(one)
			}
			return one
		}
		if item == nil {
			return seq{}
		}
		more := func(min, max int) expr { return rep{e: cat(sep, item, ws), min: min, max: max} }
		need, left := max(lo-k, 0), -1
		if hi >= 0 {
			left = hi - k
		}
		if k > 0 {
			return more(need, left)
		}
		rest := left
		if left > 0 {
			rest = left - 1
		}
		all := cat(item, ws)
		if rest != 0 {
			all = cat(item, ws, more(max(need-1, 0), rest))
		}
		if need == 0 {
			return opt(all)
		}
		return all
	}
	return cat(lit("["), ws, tail(0), lit("]")), nil
}

// allOf merges object schemas (each branch, and the object keywords beside allOf)
// into one object; anything else is refused.
func (c *converter) allOf(n *node, ptr, name string) (expr, error) {
	v := n.get("allOf")
	if v.kind != 'a' || len(v.arr) == 0 {
		return nil, invalid(ptr, "allOf", "must be a non-empty array of schemas")
	}
	if len(v.arr) == 1 && onlyAnnotations(n, ptr, "allOf") == nil {
		return c.schema(v.arr[0], ptr+"/allOf/0", name)
	}
	type part struct {
		n   *node
		ptr string
	}
	parts := []part{{n, ptr}}
	for i, x := range v.arr {
		x, p := c.resolve(x, fmt.Sprintf("%s/allOf/%d", ptr, i))
		parts = append(parts, part{x, p})
	}
	var props []prop
	var required []string
	var closed []part
	for _, p := range parts {
		if p.n.kind != 'o' {
			return nil, unsupported(p.ptr, "allOf", "only object schemas can be merged")
		}
		for _, k := range p.n.keys {
			switch {
			case annotations[k] || strings.HasPrefix(k, "x-") || k == "properties" || k == "required" || k == "additionalProperties" || k == "allOf" && p.n == n:
			case k == "type" && p.n.get("type").kind == 's' && p.n.get("type").str == "object":
			default:
				return nil, unsupported(p.ptr, "allOf", "only objects with properties, required and additionalProperties can be merged (%q here)", k)
			}
		}
		ps, req, addl, err := c.objectParts(p.n, p.ptr)
		if err != nil {
			return nil, err
		}
		if addl != nil && addl.kind == 'o' {
			return nil, unsupported(p.ptr, "additionalProperties", "a schema for additional properties is not supported inside allOf")
		}
		if addl != nil && !addl.b {
			closed = append(closed, p)
		}
		for _, q := range ps {
			if slices.ContainsFunc(props, func(o prop) bool { return o.key == q.key }) {
				return nil, unsupported(q.ptr, "allOf", "property %q is declared in several merged schemas", q.key)
			}
			props = append(props, q)
		}
		for _, r := range req {
			if !slices.Contains(required, r) {
				required = append(required, r)
			}
		}
	}
	for _, p := range closed {
		for _, q := range props {
			if p.n.get("properties").get(q.key) == nil {
				return nil, unsupported(p.ptr, "additionalProperties", "false excludes property %q declared by another schema in allOf", q.key)
			}
		}
	}
	return c.object(props, required, nil, ptr, name)
}
