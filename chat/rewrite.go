package chat

import (
	"fmt"
	"strings"
)

// The Jinja engine (github.com/ardanlabs/jinja v1.8.0) differs from Jinja2 in
// three ways that change real templates' prompts or let a template run without
// bound, and it offers no hook to replace a filter. So ParseTemplate rewrites the
// template source before compiling it, tag by tag, into calls of functions that
// Render provides:
//   - EXPR | tojson(ARGS)  →  __hxp_tojson(EXPR, ARGS): Python's json.dumps
//     (key order kept with indent too, Python floats, sort_keys, ensure_ascii);
//   - for X in ITER  →  for X in __hxp_iter(ITER): iterating none or a number is
//     a TypeError as in Python, and every loop counts against a step budget;
//   - every macro body starts with __hxp_enter() and ends with __hxp_leave(),
//     which bound the macro call depth and the number of calls.
// Text outside tags, comments and {% raw %} blocks is never touched, and the
// rewrite adds no line breaks, so line numbers in errors stay right.

const (
	fnToJSON = "__hxp_tojson"
	fnIter   = "__hxp_iter"
	fnEnter  = "__hxp_enter"
	fnLeave  = "__hxp_leave"
)

// rewriteTemplate applies the rewrites above to every tag of src.
func rewriteTemplate(src string) (string, error) {
	var out strings.Builder
	i := 0
	for i < len(src) {
		j := strings.Index(src[i:], "{")
		if j < 0 {
			break
		}
		j += i
		if j+1 >= len(src) {
			break
		}
		kind := src[j+1]
		if kind != '{' && kind != '%' && kind != '#' {
			out.WriteString(src[i : j+1])
			i = j + 1
			continue
		}
		out.WriteString(src[i:j])
		if kind == '#' {
			end := strings.Index(src[j+2:], "#}")
			if end < 0 {
				return "", fmt.Errorf("comment opened at byte %d is never closed", j)
			}
			end += j + 2 + 2
			out.WriteString(src[j:end])
			i = end
			continue
		}
		closer := "}}"
		if kind == '%' {
			closer = "%}"
		}
		end, err := tagEnd(src, j+2, closer)
		if err != nil {
			return "", err
		}
		tag := parseTag(src[j:end])
		if kind == '%' && tag.keyword() == "raw" {
			k := indexEndRaw(src, end)
			if k < 0 {
				return "", fmt.Errorf("{%% raw %%} at byte %d is never closed", j)
			}
			out.WriteString(src[j:k])
			i = k
			continue
		}
		out.WriteString(tag.rewrite(kind == '%'))
		i = end
	}
	out.WriteString(src[i:])
	return out.String(), nil
}

// tagEnd finds the end of the tag whose body starts at from (after "{{" or
// "{%"), skipping string literals, and returns the index after closer.
func tagEnd(src string, from int, closer string) (int, error) {
	for k := from; k < len(src); k++ {
		switch c := src[k]; {
		case c == '\'' || c == '"':
			n := stringEnd(src, k)
			if n < 0 {
				return 0, fmt.Errorf("string opened at byte %d is never closed", k)
			}
			k = n - 1
		case strings.HasPrefix(src[k:], closer):
			return k + len(closer), nil
		}
	}
	return 0, fmt.Errorf("tag opened at byte %d is never closed (no %q)", from-2, closer)
}

// stringEnd returns the index after the string literal starting at src[k].
func stringEnd(src string, k int) int {
	q := src[k]
	for n := k + 1; n < len(src); n++ {
		switch src[n] {
		case '\\':
			n++
		case q:
			return n + 1
		}
	}
	return -1
}

func indexEndRaw(src string, from int) int {
	for k := from; k < len(src); {
		j := strings.Index(src[k:], "{%")
		if j < 0 {
			return -1
		}
		j += k
		end, err := tagEnd(src, j+2, "%}")
		if err != nil {
			return -1
		}
		if parseTag(src[j:end]).keyword() == "endraw" {
			return j
		}
		k = j + 2
	}
	return -1
}

// tag is one "{{ ... }}" or "{% ... %}" split into its delimiters, whitespace
// control markers ("-", "+") and body.
type tag struct {
	open, body, close string
}

func parseTag(s string) tag {
	t := tag{open: s[:2], close: s[len(s)-2:], body: s[2 : len(s)-2]}
	if b := t.body; len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		t.open += b[:1]
		t.body = b[1:]
	}
	if b := t.body; len(b) > 0 && (b[len(b)-1] == '-' || b[len(b)-1] == '+') {
		t.close = b[len(b)-1:] + t.close
		t.body = b[:len(b)-1]
	}
	return t
}

func (t tag) keyword() string {
	f := strings.Fields(t.body)
	if len(f) == 0 {
		return ""
	}
	name, _, _ := strings.Cut(f[0], "(")
	return name
}

func (t tag) String() string { return t.open + t.body + t.close }

// rewrite returns the tag's text after the rewrites, with any tag inserted
// before or after it. An inserted tag takes the whitespace control of the side
// it stands on, so the text around renders exactly as before.
func (t tag) rewrite(block bool) string {
	t.body = rewriteToJSON(t.body)
	if !block {
		return t.String()
	}
	switch t.keyword() {
	case "for":
		t.body = wrapForIterable(t.body)
	case "macro":
		return t.String() + "{%" + " set __hxp_depth = " + fnEnter + "() " + t.close
	case "endmacro":
		return t.open + " set __hxp_depth = " + fnLeave + "() %}" + t.String()
	}
	return t.String()
}

// token is one lexical item of a Jinja expression.
type token struct {
	text       string
	start, end int
	kind       byte // 'n' name, 's' string, '0' number, 'p' punctuation
}

func tokenize(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			n := stringEnd(s, i)
			if n < 0 {
				n = len(s)
			}
			toks = append(toks, token{s[i:n], i, n, 's'})
			i = n
		case isNameByte(c) && !(c >= '0' && c <= '9'):
			n := i
			for n < len(s) && isNameByte(s[n]) {
				n++
			}
			toks = append(toks, token{s[i:n], i, n, 'n'})
			i = n
		case c >= '0' && c <= '9':
			n := i
			for n < len(s) && (isNameByte(s[n]) || s[n] == '.') {
				n++
			}
			toks = append(toks, token{s[i:n], i, n, '0'})
			i = n
		default:
			toks = append(toks, token{s[i : i+1], i, i + 1, 'p'})
			i++
		}
	}
	return toks
}

func isNameByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// matching returns the index of the bracket that closes (forward) or opens
// (backward) the bracket at toks[i], or -1.
func matching(toks []token, i int) int {
	pairs := map[string]string{"(": ")", "[": "]", "{": "}", ")": "(", "]": "[", "}": "{"}
	want := pairs[toks[i].text]
	step := 1
	if strings.Contains(")]}", toks[i].text) {
		step = -1
	}
	depth := 0
	for k := i; k >= 0 && k < len(toks); k += step {
		if toks[k].kind != 'p' {
			continue
		}
		switch toks[k].text {
		case toks[i].text:
			depth++
		case want:
			depth--
			if depth == 0 {
				return k
			}
		}
	}
	return -1
}

func isClosing(t token) bool { return t.kind == 'p' && strings.Contains(")]}", t.text) }

// operandStart walks back from the "|" at toks[pipe] over the operand a filter
// applies to (names, literals, attribute and item access, calls, earlier
// filters) and returns its first token, or pipe when there is none.
func operandStart(toks []token, pipe int) int {
	j := pipe - 1
	for j >= 0 {
		switch t := toks[j]; {
		case isClosing(t):
			open := matching(toks, j)
			if open < 0 {
				return pipe
			}
			j = open - 1
			if j >= 0 && (toks[j].kind == 'n' && !isKeyword(toks[j].text) || toks[j].kind == 's' || isClosing(toks[j])) {
				continue // a call or subscript of the atom before
			}
		case t.kind == 'n' && !isKeyword(t.text), t.kind == 's', t.kind == '0':
			j--
		default:
			return j + 1
		}
		if j >= 0 && toks[j].kind == 'p' && (toks[j].text == "." || toks[j].text == "|") {
			j--
			continue
		}
		break
	}
	return j + 1
}

func isKeyword(s string) bool {
	switch s {
	case "not", "and", "or", "in", "is", "if", "else":
		return true
	}
	return false
}

// rewriteToJSON turns every "OPERAND | tojson(ARGS)" of expr into
// "__hxp_tojson(OPERAND, ARGS)".
func rewriteToJSON(expr string) string {
	skip := 0
	for range 256 {
		toks := tokenize(expr)
		found := false
		seen := 0
		for i := 0; i+1 < len(toks); i++ {
			if toks[i].text != "|" || toks[i+1].text != "tojson" || toks[i+1].kind != 'n' {
				continue
			}
			if seen < skip {
				seen++
				continue
			}
			start := operandStart(toks, i)
			if start == i {
				skip++
				found = true
				break
			}
			end, args := toks[i+1].end, ""
			if i+2 < len(toks) && toks[i+2].text == "(" {
				closeIdx := matching(toks, i+2)
				if closeIdx < 0 {
					return expr
				}
				end = toks[closeIdx].end
				args = strings.TrimSpace(expr[toks[i+2].end:toks[closeIdx].start])
			}
			call := fnToJSON + "(" + expr[toks[start].start:toks[i].start]
			if args != "" {
				call += ", " + args
			}
			call += ")"
			expr = expr[:toks[start].start] + call + expr[end:]
			found = true
			break
		}
		if !found {
			return expr
		}
	}
	return expr
}

// wrapForIterable turns "for TARGET in ITER [if COND] [recursive]" into
// "for TARGET in __hxp_iter(ITER) ...".
func wrapForIterable(body string) string {
	toks := tokenize(body)
	in := -1
	for i, t := range toks {
		if t.kind == 'n' && t.text == "in" {
			in = i
			break
		}
	}
	if in < 0 || in+1 >= len(toks) {
		return body
	}
	end := len(toks)
	for k := in + 1; k < len(toks); k++ {
		t := toks[k]
		if t.kind == 'p' && strings.Contains("([{", t.text) {
			if m := matching(toks, k); m > k {
				k = m
			}
			continue
		}
		if t.kind == 'n' && (t.text == "if" || t.text == "recursive") {
			end = k
			break
		}
	}
	if end == in+1 {
		return body
	}
	from, to := toks[in+1].start, toks[end-1].end
	return body[:from] + fnIter + "(" + body[from:to] + ")" + body[to:]
}
