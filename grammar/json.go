package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// node is a parsed JSON value that keeps the order of object members (a schema's
// property order is the order the grammar emits them in).
type node struct {
	kind byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' boolean, 'z' null
	keys []string
	vals map[string]*node
	arr  []*node
	str  string
	num  json.Number
	b    bool
}

func parseJSON(data []byte) (*node, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	n, err := decodeNode(d, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the schema")
	}
	return n, nil
}

func decodeNode(d *json.Decoder, depth int) (*node, error) {
	if depth > MaxDepth*4 {
		return nil, fmt.Errorf("nested deeper than %d", MaxDepth*4)
	}
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case json.Delim:
		if t == '[' {
			n := &node{kind: 'a'}
			for d.More() {
				v, err := decodeNode(d, depth+1)
				if err != nil {
					return nil, err
				}
				n.arr = append(n.arr, v)
			}
			_, err := d.Token()
			return n, err
		}
		n := &node{kind: 'o', vals: map[string]*node{}}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return nil, err
			}
			key := k.(string)
			if _, dup := n.vals[key]; dup {
				return nil, fmt.Errorf("duplicate key %q", key)
			}
			v, err := decodeNode(d, depth+1)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, key)
			n.vals[key] = v
		}
		_, err := d.Token()
		return n, err
	case string:
		return &node{kind: 's', str: t}, nil
	case json.Number:
		return &node{kind: 'n', num: t}, nil
	case bool:
		return &node{kind: 'b', b: t}, nil
	default:
		return &node{kind: 'z'}, nil
	}
}

// get returns member key of an object node, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != 'o' {
		return nil
	}
	return n.vals[key]
}

// encode writes n as compact JSON (the form enum and const values are emitted in).
func (n *node) encode(w *strings.Builder) {
	switch n.kind {
	case 'o':
		w.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(jsonString(k))
			w.WriteByte(':')
			n.vals[k].encode(w)
		}
		w.WriteByte('}')
	case 'a':
		w.WriteByte('[')
		for i, v := range n.arr {
			if i > 0 {
				w.WriteByte(',')
			}
			v.encode(w)
		}
		w.WriteByte(']')
	case 's':
		w.WriteString(jsonString(n.str))
	case 'n':
		w.WriteString(n.num.String())
	case 'b':
		if n.b {
			w.WriteString("true")
		} else {
			w.WriteString("false")
		}
	default:
		w.WriteString("null")
	}
}

// jsonString is s as a JSON string literal, without HTML escaping.
func jsonString(s string) string {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}

// kindName is the JSON Schema type name of a value's kind.
func (n *node) typeName() string {
	switch n.kind {
	case 'o':
		return "object"
	case 'a':
		return "array"
	case 's':
		return "string"
	case 'n':
		if isIntegral(n.num) {
			return "integer"
		}
		return "number"
	case 'b':
		return "boolean"
	}
	return "null"
}

// pointerToken escapes a key for a JSON pointer.
func pointerToken(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
