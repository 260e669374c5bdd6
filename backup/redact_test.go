package backup

import (
	"slices"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/config"
)

func TestRedactConfig(t *testing.T) {
	cases := []struct {
		name    string
		cfg     config.Config
		secrets []string // must not appear in the output
		paths   []string // the redacted fields
		keep    []string // must still appear
	}{
		{"nothing secret", config.Config{Listen: ":8000", Postgres: config.Postgres{URL: "postgres://hxp@db:5432/hxp"}},
			nil, nil, []string{"postgres://hxp@db:5432/hxp", ":8000"}},
		{"URL password", config.Config{Postgres: config.Postgres{URL: "postgres://hxp:s3cret@db/hxp?sslmode=require"}},
			[]string{"s3cret"}, []string{"postgres.url"}, []string{"hxp:[redacted]@db/hxp", "sslmode=require"}},
		{"URL password parameter", config.Config{Postgres: config.Postgres{URL: "postgres://db/hxp?password=s3cret"}},
			[]string{"s3cret"}, []string{"postgres.url"}, []string{"password=[redacted]"}},
		{"key=value connection string", config.Config{Postgres: config.Postgres{URL: "host=db user=hxp password='s3 cret' dbname=hxp"}},
			[]string{"s3 cret"}, []string{"postgres.url"}, []string{"dbname=hxp"}},
		{"redis URL", config.Config{Redis: config.Redis{URL: "rediss://:t0ken@cache:6380/0"}},
			[]string{"t0ken"}, []string{"redis.url"}, []string{"cache:6380"}},
		{"upstream URL", config.Config{Upstreams: []config.Upstream{{Model: "m", URL: "https://u:pw9@node1:8000"}}},
			[]string{"pw9"}, []string{"upstreams[0].url"}, []string{"node1:8000"}},
		{"key files and static key hashes", config.Config{Auth: config.Auth{APIKeysFile: "/etc/hxp/keys",
			APIKeys: []string{"sk-plain"}, KeyAuth: config.KeyAuth{AdminKeyFile: "/etc/hxp/admin", AdminKey: "adm-plain",
				NodeKeyFile: "/etc/hxp/node", Keys: []config.StaticKey{{ID: "ci", SHA256: strings.Repeat("ab", 32), RPM: 5}}}}},
			[]string{"/etc/hxp", "sk-plain", "adm-plain", "abab"},
			[]string{"auth.api_keys_file", "auth.keys[0].sha256", "auth.admin_key_file", "auth.node_key_file"},
			[]string{"id: ci", "rpm: 5"}},
		{"TLS key and certificate files", config.Config{Server: config.Server{TLS: config.TLS{CertFile: "/tls/c.pem", KeyFile: "/tls/k.pem"}}},
			[]string{"/tls/"}, []string{"server.tls.cert_file", "server.tls.key_file"}, nil},
		{"model files stay, template files go", config.Config{Models: []config.Model{{Name: "phi", Path: "/models/phi.gguf",
			ChatTemplateFile: "/t/phi.jinja"}}},
			[]string{"/t/phi.jinja"}, []string{"models[0].chat_template_file"}, []string{"/models/phi.gguf"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, paths, err := RedactConfig(&tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.secrets {
				if strings.Contains(string(out), s) {
					t.Errorf("output holds %q:\n%s", s, out)
				}
			}
			for _, s := range tc.keep {
				if !strings.Contains(string(out), s) {
					t.Errorf("output lost %q:\n%s", s, out)
				}
			}
			slices.Sort(paths)
			want := slices.Clone(tc.paths)
			slices.Sort(want)
			if !slices.Equal(paths, want) {
				t.Errorf("redacted %v, want %v", paths, want)
			}
		})
	}
}
