package grammar

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// build converts schema with a fresh Builder and returns it with the schema's rule.
func build(t *testing.T, schema string) (*Builder, string) {
	t.Helper()
	b := NewBuilder()
	n, err := b.AddSchema("s", []byte(schema))
	if err != nil {
		t.Fatalf("%s: %v", schema, err)
	}
	return b, n
}

func TestConversions(t *testing.T) {
	cases := []struct {
		name, schema   string
		accept, reject []string
	}{
		{"string", `{"type":"string"}`,
			[]string{`"abc"`, `"a\"b"`, `"é日"`, `""`, `"\u00e9"`}, []string{`abc`, `"a`, `1`, `"\ud83d\ude00"`}},
		{"string bounds", `{"type":"string","minLength":2,"maxLength":3}`,
			[]string{`"ab"`, `"abc"`, `"a\nb"`, `"日本"`}, []string{`"a"`, `"abcd"`, `""`}},
		{"integer", `{"type":"integer"}`,
			[]string{`0`, `-12`, `1234567890123456`, `-0`}, []string{`01`, `1.5`, `12345678901234567`, `+1`, `1e3`}},
		{"integer bounds", `{"type":"integer","minimum":-5,"exclusiveMaximum":100}`,
			[]string{`-5`, `0`, `99`, `42`}, []string{`-6`, `100`, `5.0`, `-0`, `007`}},
		{"integer fractional bounds", `{"type":"integer","exclusiveMinimum":1.5,"maximum":3.9}`,
			[]string{`2`, `3`}, []string{`1`, `4`}},
		{"number", `{"type":"number"}`,
			[]string{`1.5e-3`, `-0`, `10`, `2E+8`}, []string{`+1`, `.5`, `1.`, `01`}},
		{"boolean", `{"type":"boolean"}`, []string{`true`, `false`}, []string{`null`, `"true"`}},
		{"null", `{"type":"null"}`, []string{`null`}, []string{`false`}},
		{"enum", `{"enum":["a",1,null,{"k":[1]}]}`,
			[]string{`"a"`, `1`, `null`, `{"k":[1]}`}, []string{`"b"`, `2`, `{"k":[2]}`}},
		{"enum filtered by type", `{"type":"string","enum":["a",1]}`, []string{`"a"`}, []string{`1`}},
		{"const", `{"const":"x</y>"}`, []string{`"x</y>"`}, []string{`"x"`}},
		{"object order and required", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["b"]}`,
			[]string{`{"b":"x"}`, `{"a":1,"b":"x"}`, `{ "a": 1, "b": "x" }`, "{\n\t\"b\":\"x\"}"},
			[]string{`{}`, `{"a":1}`, `{"b":"x","a":1}`, `{"b":"x","c":1}`, `{"b":"x"}x`, `{   "b":"x"}`}},
		{"all optional, type inferred", `{"properties":{"a":{"type":"integer"},"b":{"type":"boolean"}}}`,
			[]string{`{}`, `{"a":1}`, `{"b":true}`, `{"a":1,"b":true}`}, []string{`{,"b":true}`, `{"a":1,}`, `{"b":true,"a":1}`}},
		{"required in the middle", `{"properties":{"a":{"const":1},"b":{"const":2},"c":{"const":3}},"required":["b"]}`,
			[]string{`{"b":2}`, `{"a":1,"b":2}`, `{"b":2,"c":3}`, `{"a":1,"b":2,"c":3}`}, []string{`{"a":1,"c":3}`, `{}`}},
		{"closed empty object", `{"type":"object","additionalProperties":false}`, []string{`{}`}, []string{`{"a":1}`}},
		{"map", `{"type":"object","additionalProperties":{"type":"integer"}}`,
			[]string{`{}`, `{"x":1,"y":2}`}, []string{`{"x":"a"}`}},
		{"any object", `{"type":"object"}`, []string{`{"x":[1,{"y":null}]}`, `{}`}, []string{`[]`}},
		{"declared properties only", `{"type":"object","properties":{"a":{"type":"null"}},"additionalProperties":true}`,
			[]string{`{"a":null}`, `{}`}, []string{`{"a":null,"b":1}`}},
		{"array", `{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}`,
			[]string{`[1]`, `[1, 2]`}, []string{`[]`, `[1,2,3]`, `["a"]`}},
		{"array unbounded", `{"type":"array","items":{"type":"integer"},"minItems":2}`,
			[]string{`[1,2]`, `[1,2,3,4]`}, []string{`[1]`}},
		{"any array", `{"type":"array"}`, []string{`[]`, `[1,"a",null]`}, []string{`{}`}},
		{"tuple closed", `{"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}`,
			[]string{`[]`, `["a"]`, `["a",1]`}, []string{`[1]`, `["a",1,2]`}},
		{"tuple min", `{"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false,"minItems":2}`,
			[]string{`["a",1]`}, []string{`["a"]`, `[]`}},
		{"tuple then items", `{"prefixItems":[{"const":"x"}],"items":{"type":"boolean"},"minItems":2,"maxItems":3}`,
			[]string{`["x",true]`, `["x",true,false]`}, []string{`["x"]`, `[true]`, `["x",true,true,true]`}},
		{"anyOf", `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, []string{`"a"`, `1`}, []string{`null`}},
		{"oneOf of distinct types", `{"oneOf":[{"type":"string"},{"type":"array","items":{"type":"null"}}],"description":"d"}`,
			[]string{`"a"`, `[null]`}, []string{`1`}},
		{"oneOf with a discriminator", `{"oneOf":[{"type":"object","properties":{"kind":{"const":"a"},"x":{"type":"integer"}},"required":["kind"]},{"type":"object","properties":{"kind":{"enum":["b","c"]}},"required":["kind"]}]}`,
			[]string{`{"kind":"a","x":1}`, `{"kind":"b"}`, `{"kind":"c"}`}, []string{`{"kind":"d"}`, `{"kind":"b","x":1}`}},
		{"null union", `{"type":["string","null"],"maxLength":1}`, []string{`null`, `"a"`}, []string{`"ab"`, `1`}},
		{"integer within number", `{"type":["integer","number"]}`, []string{`1`, `1.5`}, []string{`"1"`}},
		{"recursive $defs", `{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/node"}`,
			[]string{`{"v":1,"next":{"v":2,"next":null}}`, `{"v":1,"next":null}`}, []string{`{"v":1}`, `{"v":1,"next":{"v":2}}`}},
		{"root recursion", `{"type":"object","properties":{"c":{"type":"array","items":{"$ref":"#"}}}}`,
			[]string{`{"c":[{},{"c":[]}]}`, `{}`}, []string{`{"c":[1]}`}},
		{"definitions and escaped pointer", `{"definitions":{"a/b":{"type":"boolean"}},"type":"array","items":{"$ref":"#/definitions/a~1b"}}`,
			[]string{`[true,false]`}, []string{`[1]`}},
		{"allOf merge", `{"allOf":[{"$ref":"#/$defs/base"},{"properties":{"b":{"type":"integer"}},"required":["b"]}],"$defs":{"base":{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}}}`,
			[]string{`{"a":"x","b":1}`}, []string{`{"b":1}`, `{"a":"x"}`}},
		{"allOf single", `{"allOf":[{"type":"integer","maximum":3}]}`, []string{`3`}, []string{`4`}},
		{"date", `{"type":"string","format":"date"}`,
			[]string{`"2024-02-28"`, `"2024-12-31"`, `"0001-04-30"`}, []string{`"2024-02-30"`, `"2024-13-01"`, `"2024-04-31"`, `"24-01-01"`}},
		{"time", `{"type":"string","format":"time"}`,
			[]string{`"23:59:59Z"`, `"00:00:00.123+05:30"`}, []string{`"24:00:00Z"`, `"12:00:00"`, `"12:60:00Z"`}},
		{"date-time", `{"type":"string","format":"date-time"}`, []string{`"2024-01-01T10:00:00Z"`}, []string{`"2024-01-01 10:00:00Z"`}},
		{"uuid", `{"type":"string","format":"uuid"}`, []string{`"123e4567-e89b-12d3-a456-426614174000"`}, []string{`"123e4567e89b12d3a456426614174000"`}},
		{"annotations", `{"title":"t","description":"d","type":"boolean","default":true,"examples":[true],"$comment":"c","x-foo":1,"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"urn:x"}`,
			[]string{`true`}, []string{`1`}},
		{"true schema", `true`, []string{`1`, `{"a":[]}`, `"x"`}, []string{`x`}},
		{"empty schema", `{}`, []string{`null`}, []string{``}},
		{"odd property name", `{"properties":{"a b\"c":{"type":"null"}},"required":["a b\"c"]}`, []string{`{"a b\"c":null}`}, []string{`{}`}},
		{"uniqueItems false", `{"type":"array","uniqueItems":false,"maxItems":1}`, []string{`[1]`}, []string{`[1,1]`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, n := build(t, c.schema)
			for _, s := range c.accept {
				if !accepts(t, b, n, s) {
					g, _ := FromSchema([]byte(c.schema))
					t.Errorf("rejects %s\n%s", s, g)
				}
			}
			for _, s := range c.reject {
				if accepts(t, b, n, s) {
					t.Errorf("accepts %s", s)
				}
			}
		})
	}
}

func TestIntegerRangesExact(t *testing.T) {
	for _, r := range [][2]int64{{0, 0}, {-5, 5}, {18, 130}, {-123, 4567}, {7, 7}, {-1000, -10}, {99, 1001}, {0, 9}, {1, 100}, {-9, -1}, {450, 549}, {100, 199}} {
		b := NewBuilder()
		b.define("r", intRange(r[0], r[1]))
		for x := r[0] - 30; x <= r[1]+30; x++ {
			if got, want := accepts(t, b, "r", fmt.Sprint(x)), x >= r[0] && x <= r[1]; got != want {
				t.Fatalf("range %v: %d accepted=%v", r, x, got)
			}
		}
		if accepts(t, b, "r", "-0") || accepts(t, b, "r", "0"+fmt.Sprint(r[1])) {
			t.Fatalf("range %v: non-canonical form accepted", r)
		}
	}
	// Bounds beyond 16 digits are lowered to the largest 16-digit integer.
	b, n := build(t, `{"type":"integer","minimum":9999999999999990,"maximum":1e30}`)
	if !accepts(t, b, n, "9999999999999999") || accepts(t, b, n, "10000000000000000") || accepts(t, b, n, "9999999999999989") {
		t.Fatal("large bounds")
	}
}

func TestGrammarText(t *testing.T) {
	g, err := FromSchema([]byte(`{"type":"object","properties":{"n":{"type":"integer","minimum":1,"maximum":12},"t":{"enum":["a","b"]}},"required":["n"]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `root ::= schema
schema ::= "{" ws "\"n\"" ws ":" ws schema-n ws schema-rest-1 "}"
ws ::= [ \t\n]{0,2}
schema-n ::= [1-9] | "1" [0-2]
schema-t ::= "\"a\"" | "\"b\""
schema-rest-1 ::= ( "," ws "\"t\"" ws ":" ws schema-t ws )?
`
	if g != want {
		t.Fatalf("got\n%s\nwant\n%s", g, want)
	}
}

func TestJSONObject(t *testing.T) {
	if !strings.HasPrefix(JSONObject, "root ::= object\n") || !strings.Contains(JSONObject, "\nws ::= [ \\t\\n]{0,2}\n") {
		t.Fatalf("JSONObject:\n%s", JSONObject)
	}
	b := NewBuilder()
	n := b.prim("object")
	for _, s := range []string{`{}`, `{"a": [1, 2.5e3, "x\n", true, null, {}]}`, "{\n \"k\": {\"x\": -0}\n}"} {
		if !accepts(t, b, n, s) {
			t.Errorf("rejects %s", s)
		}
	}
	for _, s := range []string{`[]`, `{"a":1} `, `{"a":01}`, `{"a":"\x"}`, "{     }", `"x"`} {
		if accepts(t, b, n, s) {
			t.Errorf("accepts %s", s)
		}
	}
}

func TestLiteral(t *testing.T) {
	if got, want := Literal("a\"b\\c\n\t\x01é"), `"a\"b\\c\n\t\x01é"`; got != want {
		t.Fatalf("Literal = %s, want %s", got, want)
	}
}

func TestBuilderComposes(t *testing.T) {
	b := NewBuilder()
	f, err := b.AddSchema("f-args", []byte(`{"type":"object","properties":{"x":{"type":"integer"}},"required":["x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := b.AddSchema("f-args", []byte(`{"type":"string"}`))
	if err != nil {
		t.Fatal(err)
	}
	if f != "f-args" || g == f {
		t.Fatalf("rule names %q %q", f, g)
	}
	before := len(b.rules)
	if _, err := b.AddSchema("bad", []byte(`{"type":"object","properties":{"y":{"not":{}}}}`)); err == nil || len(b.rules) != before {
		t.Fatalf("failed AddSchema left %d rules (had %d), err %v", len(b.rules), before, err)
	}
	if _, err := b.Grammar(); err == nil {
		t.Fatal("grammar without root")
	}
	call := func(name, args string) string {
		return Literal(`<tool_call>{"name": "`+name+`", "arguments": `) + " " + args + " " + Literal("}</tool_call>")
	}
	b.SetRoot(call("f", f) + " | " + call("g", g) + " " + b.WS())
	text, err := b.Grammar()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`root ::= "<tool_call>{\"name\": \"f\", \"arguments\": " f-args "}</tool_call>" | `, "\nf-args ::= ", "\nf-args-1 ::= string\n", "\nws ::= "} {
		if !strings.Contains(text, want) {
			t.Errorf("grammar lacks %q:\n%s", want, text)
		}
	}
	if r := b.AddRule("root", `"x"`); r == "root" {
		t.Fatal("AddRule took the root's name")
	}
}

func TestRefused(t *testing.T) {
	cases := []struct{ schema, keyword, pointer string }{
		{`{"type":"object","properties":{"n":{"type":"integer","multipleOf":2}}}`, "multipleOf", "/properties/n"},
		{`{"type":"string","pattern":"^a"}`, "pattern", ""},
		{`{"type":"array","uniqueItems":true}`, "uniqueItems", ""},
		{`{"type":"number","minimum":0}`, "minimum", ""},
		{`{"type":["number","null"],"exclusiveMaximum":1}`, "exclusiveMaximum", ""},
		{`{"type":"string","format":"email"}`, "format", ""},
		{`{"$ref":"https://example.com/s.json"}`, "$ref", ""},
		{`{"$ref":"#anchor"}`, "$ref", ""},
		{`{"type":"array","items":[{"type":"string"}]}`, "items", ""},
		{`{"oneOf":[{"type":"integer"},{"type":"number"}]}`, "oneOf", ""},
		{`{"oneOf":[{"type":"object","properties":{"k":{"const":"a"}}},{"type":"object","properties":{"k":{"const":"b"}}}]}`, "oneOf", ""},
		{`{"type":"string","foo":1}`, "foo", ""},
		{`{"type":"integer","exclusiveMinimum":true,"minimum":1}`, "exclusiveMinimum", ""},
		{`{"type":"string","minLength":3000}`, "minLength", ""},
		{`{"minLength":1,"minItems":1}`, "type", ""},
		{`{"$defs":{"a":{}},"$ref":"#/$defs/a","type":"string"}`, "type", ""},
		{`{"type":"object","properties":{"a":{}},"required":["b"]}`, "required", ""},
		{`{"allOf":[{"type":"string"},{"type":"object"}]}`, "allOf", "/allOf/0"},
		{`{"allOf":[{"properties":{"a":{}},"additionalProperties":false},{"properties":{"b":{}}}]}`, "additionalProperties", "/allOf/0"},
		{`{"type":"string","format":"uuid","maxLength":40}`, "maxLength", ""},
		{`{"enum":["a","bb"],"minLength":2}`, "minLength", ""},
		{`{"anyOf":[{"type":"string"}],"type":"string"}`, "type", ""},
		{`{"properties":{"a/b":{"not":{}}}}`, "not", "/properties/a~1b"},
		{`{"type":"array","items":{"$ref":"#/$defs/x"},"$defs":{"x":{"type":"object","minProperties":1}}}`, "minProperties", "/$defs/x"},
	}
	for k := range refused {
		cases = append(cases, struct{ schema, keyword, pointer string }{fmt.Sprintf(`{"anyOf":[{"type":"null"},{%q:{}}]}`, k), k, "/anyOf/1"})
	}
	for _, c := range cases {
		_, err := FromSchema([]byte(c.schema))
		var u *UnsupportedError
		if !errors.As(err, &u) || u.Keyword != c.keyword || u.Pointer != c.pointer {
			t.Errorf("%s: got %v, want keyword %q at %q", c.schema, err, c.keyword, c.pointer)
			continue
		}
		if !strings.Contains(err.Error(), c.keyword) || u.Reason == "" {
			t.Errorf("%s: message %q", c.schema, err)
		}
	}
}

func TestInvalid(t *testing.T) {
	deep := strings.Repeat(`{"type":"array","items":`, MaxDepth+1) + "{}" + strings.Repeat("}", MaxDepth+1)
	var many strings.Builder
	many.WriteString(`{"type":"object","properties":{`)
	for i := range MaxRules + 1 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `"p%d":{"type":"integer"}`, i)
	}
	many.WriteString("}}")
	for _, s := range []string{
		`{"type":`, `{"a":1,"a":2}`, `false`, `{"properties":{"a":false},"required":["a"]}`, `{"type":5}`, `{"type":"int"}`,
		`{"$ref":"#/$defs/missing"}`, `{"type":"string","minLength":-1}`, `{"type":"array","minItems":3,"maxItems":2}`,
		`{"type":"integer","minimum":5,"maximum":4}`, `{"enum":[]}`, `{"type":"string","enum":[1,2]}`, `[]`, `{} {}`,
		`{"prefixItems":[{}],"items":false,"minItems":2}`, `{"type":"string","maxLength":1.5}`, deep, many.String(),
	} {
		_, err := FromSchema([]byte(s))
		var inv *InvalidError
		if !errors.As(err, &inv) {
			t.Errorf("%.80s: got %v, want *InvalidError", s, err)
		}
	}
}
