package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// CheckJSONLog checks a captured log written by a JSON logger (zerolog): every line must be
// one JSON object, and no object in it, nested ones included, may repeat a key. A repeated key
// is valid JSON that encoding/json accepts silently (the last value wins), and log pipelines
// do the same, so a field that collides with one of the logger's own ("level", "time",
// "message") loses one of the two values. The error names the line and the key.
func CheckJSONLog(log string) error {
	if log == "" {
		return nil
	}
	for i, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if err := checkJSONLine(line); err != nil {
			return fmt.Errorf("log line %d: %w: %s", i+1, err, line)
		}
	}
	return nil
}

// JSONLogLines checks log with CheckJSONLog, failing the test when it does not pass, and
// returns its lines decoded, for assertions on their fields.
func JSONLogLines(t testing.TB, log string) []map[string]any {
	t.Helper()
	if err := CheckJSONLog(log); err != nil {
		t.Fatalf("log is not one JSON object per line without duplicate keys: %v", err)
	}
	var out []map[string]any
	if log == "" {
		return out
	}
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("decode log line %s: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// checkJSONLine checks that line holds exactly one JSON object without repeated keys.
func checkJSONLine(line string) error {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object (starts with %v)", tok)
	}
	if err := checkJSONObject(dec, ""); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// checkJSONObject walks the members of an object whose '{' has been read, up to and including
// its '}'. path is the object's place in the line, for error messages.
func checkJSONObject(dec *json.Decoder, path string) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("not JSON: object key %v is not a string", tok)
		}
		if seen[key] {
			return fmt.Errorf("duplicate key %q", path+key)
		}
		seen[key] = true
		if err := checkJSONValue(dec, path+key+"."); err != nil {
			return err
		}
	}
	return closeJSON(dec)
}

// checkJSONValue walks one value, checking the objects inside it.
func checkJSONValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	switch tok {
	case json.Delim('{'):
		return checkJSONObject(dec, path)
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := checkJSONValue(dec, fmt.Sprintf("%s[%d].", strings.TrimSuffix(path, "."), i)); err != nil {
				return err
			}
		}
		return closeJSON(dec)
	}
	return nil
}

// closeJSON reads the '}' or ']' that ends an object or array.
func closeJSON(dec *json.Decoder) error {
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return nil
}
