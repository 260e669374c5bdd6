package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options says what the host looks like for validation.
type Options struct {
	// HostCores is the number of CPU cores models may use; 0 means this host's.
	HostCores int
	// SkipFiles skips the checks that model files and key files exist (checking a
	// config for another machine).
	SkipFiles bool
	// Environ is the environment to apply (KEY=VALUE); nil means none.
	Environ []string
	// Override, when set, changes the config after the environment and before
	// defaults and validation (command-line flags, which win over both).
	Override func(*Config)
}

func (o Options) cores() int {
	if o.HostCores > 0 {
		return o.HostCores
	}
	return runtime.NumCPU()
}

// Load reads the YAML file at path, then applies the environment, defaults and
// validation. The returned error lists every problem found.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data, opts)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse is Load on YAML text.
func Parse(data []byte, opts Options) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("yaml: more than one document; put everything in one")
	}
	return Finish(c, opts)
}

// Finish applies the environment, defaults and validation to a Config built in code
// (for example from `hxp serve --model NAME=PATH`).
func Finish(c *Config, opts Options) (*Config, error) {
	var problems Problems
	problems = append(problems, ApplyEnv(c, opts.Environ)...)
	if opts.Override != nil {
		opts.Override(c)
	}
	if !opts.SkipFiles {
		problems = append(problems, c.readKeyFile()...)
		problems = append(problems, c.readSecretFiles()...)
	}
	c.ApplyDefaults(opts.cores())
	problems = append(problems, c.Validate(opts)...)
	if len(problems) > 0 {
		return nil, problems
	}
	return c, nil
}

// readSecretFiles reads the admin and node keys from their files unless the
// environment set them.
func (c *Config) readSecretFiles() Problems {
	var ps Problems
	for _, f := range []struct {
		path, file string
		dst        *string
	}{{"auth.admin_key_file", c.Auth.AdminKeyFile, &c.Auth.AdminKey}, {"auth.node_key_file", c.Auth.NodeKeyFile, &c.Auth.NodeKey}} {
		if f.file == "" || *f.dst != "" {
			continue
		}
		k, err := readSecretFile(f.file)
		if err != nil {
			ps = append(ps, Problem{Path: f.path, Msg: fmt.Sprintf("%q: %v", f.file, err)})
			continue
		}
		*f.dst = k
	}
	return ps
}

// readKeyFile adds the keys of Auth.APIKeysFile to Auth.APIKeys.
func (c *Config) readKeyFile() Problems {
	if c.Auth.APIKeysFile == "" {
		return nil
	}
	f, err := os.Open(c.Auth.APIKeysFile)
	if err != nil {
		return Problems{{Path: "auth.api_keys_file", Msg: fmt.Sprintf("%q: %v", c.Auth.APIKeysFile, unwrapPathErr(err))}}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c.Auth.APIKeys = append(c.Auth.APIKeys, line)
	}
	if err := sc.Err(); err != nil {
		return Problems{{Path: "auth.api_keys_file", Msg: fmt.Sprintf("read %q: %v", c.Auth.APIKeysFile, err)}}
	}
	return nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Problem is one validation failure: the field path and what is wrong with it.
type Problem struct {
	Path string // e.g. "models[1].cpu_cores" or "HXP_LISTEN"
	Msg  string // e.g. "64 exceeds this host's 2 cores"
}

func (p Problem) String() string { return p.Path + ": " + p.Msg }

// Problems is every validation failure of a config; it is the error Load returns.
type Problems []Problem

// Error lists the problems, one per line.
func (ps Problems) Error() string {
	var b strings.Builder
	if len(ps) > 1 {
		fmt.Fprintf(&b, "%d problems:", len(ps))
	}
	for i, p := range ps {
		if len(ps) > 1 {
			b.WriteString("\n  ")
		} else if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(p.String())
	}
	return b.String()
}
