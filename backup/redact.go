package backup

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hxp-ai/hxp/config"
)

// Redacted replaces every secret value in a backed-up configuration.
const Redacted = "[redacted]"

// secretFields are field names whose values are secrets or hashes of secrets, wherever
// they appear. Besides them, every *_file field is left out (key and certificate files,
// and any other file the host has but the archive does not), and the password of every
// URL or connection string.
var secretFields = map[string]bool{
	"sha256": true, "password": true, "secret": true, "token": true,
	"api_key": true, "api_keys": true, "admin_key": true, "node_key": true, "key": true,
}

// dsnPassword finds the password of a key=value connection string.
var dsnPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// RedactConfig renders the effective configuration as YAML with every secret left out,
// and lists the redacted fields by path (e.g. "auth.admin_key_file",
// "postgres.url"). Fields that never reach YAML (keys read from files or the
// environment) are not rendered at all.
func RedactConfig(cfg *config.Config) ([]byte, []string, error) {
	var doc yaml.Node
	if err := doc.Encode(cfg); err != nil {
		return nil, nil, fmt.Errorf("backup: encode config: %w", err)
	}
	var paths []string
	redactNode(&doc, "", &paths)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: encode config: %w", err)
	}
	return out, paths, nil
}

// redactNode walks a YAML tree, replacing secret values and recording their paths.
func redactNode(n *yaml.Node, path string, paths *[]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			redactNode(c, path, paths)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			redactNode(c, path+"["+strconv.Itoa(i)+"]", paths)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			p := key
			if path != "" {
				p = path + "." + key
			}
			if secretField(key) {
				if !emptyNode(val) {
					*val = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: Redacted}
					*paths = append(*paths, p)
				}
				continue
			}
			redactNode(val, p, paths)
		}
	case yaml.ScalarNode:
		if v, ok := redactPassword(n.Value); ok {
			n.Value = v
			*paths = append(*paths, path)
		}
	}
}

// secretField reports whether a field's value is left out whole.
func secretField(key string) bool {
	k := strings.ToLower(key)
	return secretFields[k] || strings.HasSuffix(k, "_file")
}

// emptyNode reports whether a value is empty (nothing to hide).
func emptyNode(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value == "" || n.Tag == "!!null"
	case yaml.SequenceNode, yaml.MappingNode:
		return len(n.Content) == 0
	}
	return false
}

// redactPassword replaces the password of a URL (user:password@, or a password query
// parameter) or of a key=value connection string; ok is false when there is none.
func redactPassword(s string) (string, bool) {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		changed := false
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
			changed = true
		}
		q := u.Query()
		for k := range q {
			if lk := strings.ToLower(k); lk == "password" || lk == "sslpassword" {
				q.Set(k, Redacted)
				changed = true
			}
		}
		if !changed {
			return s, false
		}
		u.RawQuery = q.Encode()
		out, err := url.PathUnescape(u.String())
		if err != nil {
			out = u.String()
		}
		return out, true
	}
	if dsnPassword.MatchString(s) {
		return dsnPassword.ReplaceAllString(s, "${1}="+Redacted), true
	}
	return s, false
}
