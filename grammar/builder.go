package grammar

import (
	"fmt"
	"strings"
)

// Size limits. A schema deeper than MaxDepth or producing more than MaxRules rules is
// refused (InvalidError), so that a request cannot make grammar construction or
// llama.cpp's grammar parser arbitrarily expensive. MaxRepeat is llama.cpp's own bound
// on a repetition count ({m,n}): larger maxLength/maxItems are lowered to it (outputs
// stay valid), larger minLength/minItems are refused.
const (
	MaxDepth  = 64
	MaxRules  = 4096
	MaxRepeat = 2000
)

// Builder assembles one grammar from schema rules, shared JSON rules and a root
// written by the caller. The zero value is not usable; call NewBuilder.
//
//	b := grammar.NewBuilder()
//	args, err := b.AddSchema("f-args", schema)
//	b.SetRoot(grammar.Literal(`<tool_call>{"name": "f", "arguments": `) + " " + args + " " + grammar.Literal("}</tool_call>"))
//	text, err := b.Grammar()
type Builder struct {
	rules map[string]expr
	order []string
	root  expr
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder { return &Builder{rules: map[string]expr{}} }

// AddSchema converts a JSON Schema into rules named after name and returns the name of
// the rule that matches one JSON value satisfying the schema, for use in SetRoot or
// AddRule. Errors are *UnsupportedError or *InvalidError; the Builder is unchanged
// when AddSchema fails.
func (b *Builder) AddSchema(name string, schema []byte) (string, error) {
	doc, err := parseJSON(schema)
	if err != nil {
		return "", &InvalidError{Reason: "not JSON: " + err.Error()}
	}
	saved := b.snapshot()
	c := &converter{b: b, doc: doc, prefix: b.unique(name), refs: map[string]string{}}
	rule := c.prefix
	b.define(rule, nil)
	e, err := c.schema(doc, "", rule)
	if err == nil {
		err = b.checkSize()
	}
	if err != nil {
		b.restore(saved)
		return "", err
	}
	b.rules[rule] = e
	return rule, nil
}

// AddRule adds a rule with a GBNF body written by the caller and returns its name
// (name itself, or name with a suffix when taken).
func (b *Builder) AddRule(name, body string) string {
	n := b.unique(name)
	b.define(n, raw(body))
	return n
}

// SetRoot sets the body of the grammar's "root" rule: GBNF text over the names that
// AddSchema, AddRule, WS and JSONValue return and literals from Literal.
func (b *Builder) SetRoot(body string) { b.root = raw(body) }

// WS returns the name of the whitespace rule used between JSON tokens: at most two
// of space, tab and newline, so that a model cannot spend its budget on blanks.
func (b *Builder) WS() string { return b.prim("ws") }

// JSONValue returns the name of a rule matching any JSON value.
func (b *Builder) JSONValue() string { return b.prim("value") }

// Grammar renders the grammar: the root rule, then the others in the order added.
func (b *Builder) Grammar() (string, error) {
	if b.root == nil {
		return "", fmt.Errorf("grammar: no root rule (call SetRoot)")
	}
	var w strings.Builder
	writeRule(&w, "root", b.root)
	for _, n := range b.order {
		writeRule(&w, n, b.rules[n])
	}
	return w.String(), nil
}

func writeRule(w *strings.Builder, name string, e expr) {
	w.WriteString(name)
	w.WriteString(" ::= ")
	if r, ok := e.(raw); ok {
		w.WriteString(string(r))
	} else {
		write(w, e, false)
	}
	w.WriteByte('\n')
}

// FromSchema converts a JSON Schema into a complete grammar whose root matches one
// JSON value satisfying it. Errors are *UnsupportedError (a keyword it cannot enforce)
// or *InvalidError.
func FromSchema(schema []byte) (string, error) {
	b := NewBuilder()
	n, err := b.AddSchema("schema", schema)
	if err != nil {
		return "", err
	}
	b.root = ref(n)
	return b.Grammar()
}

// JSONObject is the grammar of one JSON object (response_format json_object): bounded
// whitespace between tokens, and nothing after the closing brace, so generation ends
// right after the object.
var JSONObject = func() string {
	b := NewBuilder()
	b.root = ref(b.prim("object"))
	g, _ := b.Grammar()
	return g
}()

var (
	digit  = chars(false, '0', '9')
	hour   = alt{seq{chars(false, '0', '1'), digit}, seq{lit("2"), chars(false, '0', '3')}}
	minute = seq{chars(false, '0', '5'), digit}
)

// prims are the shared JSON rules, added to a grammar when first used.
var prims = map[string]expr{
	"ws":     rep{e: chars(false, ' ', ' ', '\t', '\t', '\n', '\n'), min: 0, max: 2},
	"value":  alt{ref("object"), ref("array"), ref("string"), ref("number"), lit("true"), lit("false"), lit("null")},
	"object": seq{lit("{"), ref("ws"), opt(seq{ref("member"), rep{e: seq{lit(","), ref("ws"), ref("member")}, max: -1}}), lit("}")},
	"member": seq{ref("string"), ref("ws"), lit(":"), ref("ws"), ref("value"), ref("ws")},
	"array":  seq{lit("["), ref("ws"), opt(seq{ref("value"), ref("ws"), rep{e: seq{lit(","), ref("ws"), ref("value"), ref("ws")}, max: -1}}), lit("]")},
	"string": seq{lit(`"`), rep{e: ref("char"), max: -1}, lit(`"`)},
	// char is one code point of a JSON string: unescaped, or an escape other than a
	// UTF-16 surrogate (so that string lengths count code points exactly).
	"char":   alt{chars(true, '"', '"', '\\', '\\', 0, 0x1f), seq{lit(`\`), ref("escape")}},
	"escape": alt{chars(false, '"', '"', '\\', '\\', '/', '/', 'b', 'b', 'f', 'f', 'n', 'n', 'r', 'r', 't', 't'), seq{lit("u"), alt{seq{chars(false, '0', '9', 'a', 'c', 'A', 'C', 'e', 'f', 'E', 'F'), rep{e: ref("hex"), min: 3, max: 3}}, seq{chars(false, 'd', 'd', 'D', 'D'), chars(false, '0', '7'), rep{e: ref("hex"), min: 2, max: 2}}}}},
	"hex":    chars(false, '0', '9', 'a', 'f', 'A', 'F'),
	"number": seq{opt(lit("-")), alt{lit("0"), seq{chars(false, '1', '9'), rep{e: chars(false, '0', '9'), max: -1}}}, opt(seq{lit("."), rep{e: chars(false, '0', '9'), min: 1, max: -1}}), opt(seq{chars(false, 'e', 'e', 'E', 'E'), opt(chars(false, '-', '-', '+', '+')), rep{e: chars(false, '0', '9'), min: 1, max: -1}})},
	// The string formats (without quotes). Dates are exact except February 29,
	// which is left out because it depends on the year.
	"date": seq{rep{e: digit, min: 4, max: 4}, lit("-"), alt{
		seq{alt{lit("01"), lit("03"), lit("05"), lit("07"), lit("08"), lit("10"), lit("12")}, lit("-"), alt{seq{lit("0"), chars(false, '1', '9')}, seq{chars(false, '1', '2'), digit}, seq{lit("3"), chars(false, '0', '1')}}},
		seq{alt{lit("04"), lit("06"), lit("09"), lit("11")}, lit("-"), alt{seq{lit("0"), chars(false, '1', '9')}, seq{chars(false, '1', '2'), digit}, lit("30")}},
		seq{lit("02-"), alt{seq{lit("0"), chars(false, '1', '9')}, seq{lit("1"), digit}, seq{lit("2"), chars(false, '0', '8')}}},
	}},
	"time":      seq{hour, lit(":"), minute, lit(":"), minute, opt(seq{lit("."), rep{e: digit, min: 1, max: 9}}), alt{lit("Z"), seq{chars(false, '+', '+', '-', '-'), hour, lit(":"), minute}}},
	"date-time": seq{ref("date"), lit("T"), ref("time")},
	"uuid":      seq{rep{e: ref("hex"), min: 8, max: 8}, lit("-"), rep{e: ref("hex"), min: 4, max: 4}, lit("-"), rep{e: ref("hex"), min: 4, max: 4}, lit("-"), rep{e: ref("hex"), min: 4, max: 4}, lit("-"), rep{e: ref("hex"), min: 12, max: 12}},
	// integer is limited to 16 digits, as llama.cpp's converter does.
	"integer": seq{opt(lit("-")), alt{lit("0"), seq{chars(false, '1', '9'), rep{e: chars(false, '0', '9'), max: 15}}}},
}

// prim adds shared rule name (and the shared rules it uses) and returns name.
func (b *Builder) prim(name string) string {
	if _, ok := b.rules[name]; ok {
		return name
	}
	e, ok := prims[name]
	if !ok {
		panic("grammar: no shared rule " + name)
	}
	b.define(name, e)
	walkRefs(e, func(r ref) { b.prim(string(r)) })
	return name
}

func walkRefs(e expr, f func(ref)) {
	switch e := e.(type) {
	case ref:
		f(e)
	case seq:
		for _, x := range e {
			walkRefs(x, f)
		}
	case alt:
		for _, x := range e {
			walkRefs(x, f)
		}
	case rep:
		walkRefs(e.e, f)
	}
}

func (b *Builder) define(name string, e expr) {
	if _, ok := b.rules[name]; !ok {
		b.order = append(b.order, name)
	}
	b.rules[name] = e
}

// unique turns name into a valid rule name ([a-zA-Z0-9-]) not yet used nor reserved.
func (b *Builder) unique(name string) string {
	clean := []byte(name)
	for i, c := range clean {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			clean[i] = '-'
		}
	}
	base := string(clean)
	if base == "" {
		base = "r"
	}
	taken := func(n string) bool {
		_, used := b.rules[n]
		_, reserved := prims[n]
		return used || reserved || n == "root"
	}
	n := base
	for i := 1; taken(n); i++ {
		n = fmt.Sprintf("%s-%d", base, i)
	}
	return n
}

func (b *Builder) checkSize() error {
	if len(b.rules) > MaxRules {
		return &InvalidError{Reason: fmt.Sprintf("the grammar would have more than %d rules", MaxRules)}
	}
	return nil
}

type snapshot struct {
	order []string
	rules map[string]expr
}

func (b *Builder) snapshot() snapshot {
	rules := make(map[string]expr, len(b.rules))
	for k, v := range b.rules {
		rules[k] = v
	}
	return snapshot{order: append([]string(nil), b.order...), rules: rules}
}

func (b *Builder) restore(s snapshot) { b.order, b.rules = s.order, s.rules }
