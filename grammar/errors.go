package grammar

import "fmt"

// UnsupportedError is a schema keyword (or keyword value) that the converter cannot
// enforce in a grammar. Conversion fails closed with it rather than letting output
// that may violate the schema through. Pointer is the JSON pointer of the schema
// object holding the keyword ("" is the root).
type UnsupportedError struct {
	Keyword string
	Pointer string
	Reason  string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("grammar: schema keyword %q at %q cannot be enforced: %s", e.Keyword, "#"+e.Pointer, e.Reason)
}

// InvalidError is a schema that is not valid JSON Schema where the converter reads it
// (not JSON, a keyword of the wrong type, a dangling $ref), or one that no value
// satisfies, or one over the size limits.
type InvalidError struct {
	Keyword string
	Pointer string
	Reason  string
}

func (e *InvalidError) Error() string {
	if e.Keyword == "" {
		return fmt.Sprintf("grammar: schema at %q: %s", "#"+e.Pointer, e.Reason)
	}
	return fmt.Sprintf("grammar: schema keyword %q at %q: %s", e.Keyword, "#"+e.Pointer, e.Reason)
}

func unsupported(ptr, kw, format string, args ...any) error {
	return &UnsupportedError{Keyword: kw, Pointer: ptr, Reason: fmt.Sprintf(format, args...)}
}

func invalid(ptr, kw, format string, args ...any) error {
	return &InvalidError{Keyword: kw, Pointer: ptr, Reason: fmt.Sprintf(format, args...)}
}
