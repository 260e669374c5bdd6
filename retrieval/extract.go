package retrieval

import (
	"bytes"
	"encoding/json"
	"mime"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/hxp-ai/hxp/infer"
)

// The text formats a file may have.
const (
	TypePlain    = "text/plain"
	TypeMarkdown = "text/markdown"
	TypeJSON     = "application/json"
	TypeHTML     = "text/html"
)

// byExtension maps file name extensions to the formats.
var byExtension = map[string]string{
	".txt": TypePlain, ".text": TypePlain, ".md": TypeMarkdown, ".markdown": TypeMarkdown,
	".json": TypeJSON, ".html": TypeHTML, ".htm": TypeHTML,
}

// contentType decides an upload's format from its file name's extension, else from
// the part's declared type; anything else is a 400 naming the type.
func contentType(filename, declared string) (string, error) {
	ext := strings.ToLower(filepath.Ext(filename))
	if t, ok := byExtension[ext]; ok {
		return t, nil
	}
	mt, _, _ := mime.ParseMediaType(declared)
	switch mt {
	case TypePlain, TypeMarkdown, TypeJSON, TypeHTML:
		return mt, nil
	}
	what := mt
	if ext != "" {
		what = ext
	}
	if what == "" || what == "application/octet-stream" {
		what = "a file without a text extension"
	}
	return "", infer.Invalid("file", "unsupported file type %q: upload plain text (.txt), Markdown (.md), JSON (.json) or HTML (.html, .htm)", what)
}

// checkContent refuses content that is not text of its format.
func checkContent(typ string, b []byte) error {
	if !utf8.Valid(b) {
		return infer.Invalid("file", "the file is not UTF-8 text")
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return infer.Invalid("file", "the file contains NUL bytes: it is not text")
	}
	if typ == TypeJSON && !json.Valid(b) {
		return infer.Invalid("file", "the file is not valid JSON")
	}
	return nil
}

// extract returns a file's text: HTML without its markup, scripts and styles; the
// other formats as they are.
func extract(typ string, b []byte) string {
	if typ != TypeHTML {
		return string(b)
	}
	var out strings.Builder
	z := html.NewTokenizer(bytes.NewReader(b))
	skip := 0 // inside <script> or <style>
	for {
		switch z.Next() {
		case html.ErrorToken: // io.EOF, or the end of what parses
			return strings.TrimSpace(out.String())
		case html.StartTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style":
				skip++
			case "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article":
				out.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if n := string(name); (n == "script" || n == "style") && skip > 0 {
				skip--
			}
		case html.TextToken:
			if skip == 0 {
				if t := strings.TrimSpace(string(z.Text())); t != "" { // entities decoded
					if s := out.String(); s != "" && !strings.HasSuffix(s, "\n") {
						out.WriteByte(' ')
					}
					out.WriteString(t)
				}
			}
		}
	}
}
