package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// jsonValue decodes JSON text into a template value, keeping the key order of
// every object (Python dicts keep insertion order, and templates print tool
// schemas with tojson: a sorted map would change the prompt).
func jsonValue(data []byte) (jinja.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return jinja.Undefined(), err
	}
	if _, err := dec.Token(); err == nil {
		return jinja.Undefined(), fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

// maxJSONDepth bounds the nesting of decoded JSON (a stack-safety limit).
const maxJSONDepth = 128

func decodeValue(dec *json.Decoder, depth int) (jinja.Value, error) {
	if depth > maxJSONDepth {
		return jinja.Undefined(), fmt.Errorf("JSON nested deeper than %d levels", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return jinja.Undefined(), err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '[':
			var items []jinja.Value
			for dec.More() {
				item, err := decodeValue(dec, depth+1)
				if err != nil {
					return jinja.Undefined(), err
				}
				items = append(items, item)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Undefined(), err
			}
			return jinja.NewList(items), nil
		case '{':
			d := jinja.NewDict()
			for dec.More() {
				key, err := dec.Token()
				if err != nil {
					return jinja.Undefined(), err
				}
				val, err := decodeValue(dec, depth+1)
				if err != nil {
					return jinja.Undefined(), err
				}
				d.AsDict().Set(key.(string), val)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Undefined(), err
			}
			return d, nil
		}
		return jinja.Undefined(), fmt.Errorf("unexpected %q", t)
	default:
		return jinja.FromGoValue(t), nil
	}
}

// pyJSON encodes like Python's json.dumps, which Hugging Face's tojson filter
// calls: separators ", " and ": " (", " becomes "," with an indent), keys in
// insertion order unless sorted, floats as Python prints them (1.0, 1e+16), and
// non-ASCII text kept as is unless ensureASCII.
type pyJSON struct {
	indent      string // "" without indent
	hasIndent   bool
	itemSep     string
	keySep      string
	sortKeys    bool
	ensureASCII bool
}

// newPyJSON reads tojson's keyword arguments.
func newPyJSON(kwargs map[string]jinja.Value) (*pyJSON, error) {
	p := &pyJSON{itemSep: ", ", keySep: ": "}
	if v, ok := kwargs["indent"]; ok && !v.IsNone() && !v.IsUndefined() {
		p.hasIndent = true
		p.itemSep = ","
		switch {
		case v.IsInt():
			p.indent = strings.Repeat(" ", int(max(0, min(v.AsInt(), 64))))
		case v.IsString():
			p.indent = v.AsString()
		default:
			return nil, fmt.Errorf("tojson: indent must be an integer or a string")
		}
	}
	if v, ok := kwargs["separators"]; ok && !v.IsNone() && !v.IsUndefined() {
		if !v.IsList() || v.AsList().Len() != 2 || !v.AsList().Get(0).IsString() || !v.AsList().Get(1).IsString() {
			return nil, fmt.Errorf("tojson: separators must be two strings")
		}
		p.itemSep, p.keySep = v.AsList().Get(0).AsString(), v.AsList().Get(1).AsString()
	}
	if v, ok := kwargs["sort_keys"]; ok {
		p.sortKeys = v.IsTruthy()
	}
	if v, ok := kwargs["ensure_ascii"]; ok {
		p.ensureASCII = v.IsTruthy()
	}
	return p, nil
}

func (p *pyJSON) encode(b *strings.Builder, v jinja.Value, level int) error {
	if level > maxJSONDepth {
		return fmt.Errorf("tojson: value nested deeper than %d levels", maxJSONDepth)
	}
	switch {
	case v.IsNone() || v.IsUndefined():
		b.WriteString("null")
	case v.IsBool():
		b.WriteString(strconv.FormatBool(v.AsBool()))
	case v.IsInt():
		b.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		f := v.AsFloat()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("tojson: cannot encode %v", f)
		}
		b.WriteString(pyFloat(f))
	case v.IsString():
		p.str(b, v.AsString())
	case v.IsList():
		items := v.AsList().Items
		b.WriteByte('[')
		for i, item := range items {
			if i > 0 {
				b.WriteString(p.itemSep)
			}
			p.newline(b, level+1)
			if err := p.encode(b, item, level+1); err != nil {
				return err
			}
		}
		if len(items) > 0 {
			p.newline(b, level)
		}
		b.WriteByte(']')
	case v.IsDict():
		d := v.AsDict()
		keys := d.OrderedKeys()
		if p.sortKeys {
			sort.Strings(keys)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(p.itemSep)
			}
			p.newline(b, level+1)
			p.str(b, k)
			b.WriteString(p.keySep)
			val, _ := d.Get(k)
			if err := p.encode(b, val, level+1); err != nil {
				return err
			}
		}
		if len(keys) > 0 {
			p.newline(b, level)
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("tojson: cannot encode a %s", v.String())
	}
	return nil
}

func (p *pyJSON) newline(b *strings.Builder, level int) {
	if !p.hasIndent {
		return
	}
	b.WriteByte('\n')
	for range level {
		b.WriteString(p.indent)
	}
}

// str writes a JSON string the way Python does: only '"', '\\' and control
// characters are escaped (and, with ensureASCII, everything above 0x7f as
// \uXXXX with surrogate pairs). Invalid UTF-8 becomes U+FFFD.
func (p *pyJSON) str(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		case r > 0x7e && p.ensureASCII:
			if r >= 0x10000 {
				r -= 0x10000
				fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			} else {
				fmt.Fprintf(b, `\u%04x`, r)
			}
		default:
			if r == utf8.RuneError {
				b.WriteString("\ufffd")
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// pyFloat prints f as Python's repr does: the shortest round-trip digits, in
// positional form with a ".0" for whole numbers when the exponent is in
// [-4, 16), in scientific form ("1e+16", "1.5e-05") otherwise.
func pyFloat(f float64) string {
	sci := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expText, _ := strings.Cut(sci, "e")
	exp, _ := strconv.Atoi(expText)
	if exp < -4 || exp >= 16 {
		return mant + "e" + expText[:1] + fmt.Sprintf("%02d", abs(exp))
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
