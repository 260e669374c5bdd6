package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/service"
)

// The model admin commands talk to a running server's admin API (the admin key of
// auth.admin_key_file) and print what it answers.

func init() {
	register(command{name: "models list", summary: "list a running server's models: state, memory, slots, queue, port", run: func(args []string) error {
		return runModelsList(args, os.Stdout)
	}})
	register(command{name: "models load", summary: "load a model into a running server from a YAML file holding one models: entry", run: func(args []string) error {
		return runModelsLoad(args, os.Stdout)
	}})
	register(command{name: "models unload", summary: "unload a model from a running server (its requests in flight finish first)", run: func(args []string) error {
		return runModelsUnload(args, os.Stdout)
	}})
	register(command{name: "reload", summary: "make a running server re-read its config file (as SIGHUP does)", run: func(args []string) error {
		return runReload(args, os.Stdout)
	}})
}

// adminClient calls a running server's admin API.
type adminClient struct {
	base string
	key  string
	http *http.Client
}

// addAdminFlags declares --server and --admin-key-file; client builds the client
// after the flags are parsed.
func addAdminFlags(fs *flag.FlagSet) (client func() (*adminClient, error)) {
	server := fs.String("server", "http://127.0.0.1:8000", "the server's gateway URL")
	keyFile := fs.String("admin-key-file", "", "file holding the admin key (default $HXP_AUTH_ADMIN_KEY)")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for the answer (an unload waits for the requests in flight)")
	return func() (*adminClient, error) {
		u, err := url.Parse(*server)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("%w: --server %q is not a URL such as http://127.0.0.1:8000", errUsage, *server)
		}
		key := os.Getenv("HXP_AUTH_ADMIN_KEY")
		if *keyFile != "" {
			b, err := os.ReadFile(*keyFile)
			if err != nil {
				return nil, fmt.Errorf("--admin-key-file: %w", err)
			}
			key = strings.TrimSpace(string(b))
		}
		if key == "" {
			return nil, fmt.Errorf("%w: give --admin-key-file FILE (or set HXP_AUTH_ADMIN_KEY): the admin API needs the admin key", errUsage)
		}
		return &adminClient{base: strings.TrimRight(*server, "/"), key: key, http: &http.Client{Timeout: *timeout}}, nil
	}
}

// do sends a request and decodes a 2xx answer into out; any other answer is an error
// carrying the server's message.
func (c *adminClient) do(method, path string, body []byte, out any) error {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s %s: %s:\n%s", method, path, resp.Status, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what the admin API sends: %w", method, path, err)
	}
	return nil
}

// adminClientFor parses the flags of an admin command that takes no argument and
// returns its client.
func adminClientFor(name string, args []string) (*adminClient, error) {
	fs := newFlags(name, "[--server URL] --admin-key-file FILE")
	client := addAdminFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return nil, err
	}
	return client()
}

func runModelsList(args []string, out io.Writer) error {
	c, err := adminClientFor("models list", args)
	if err != nil {
		return err
	}
	var list struct {
		Data []service.Status `json:"data"`
	}
	if err := c.do("GET", "/admin/models", nil, &list); err != nil {
		return err
	}
	writeModelStates(out, list.Data)
	return nil
}

// writeModelStates prints one row per model.
func writeModelStates(out io.Writer, ms []service.Status) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPLANNED\tUSED\tSLOTS\tQUEUED\tPORT\tUNLOAD AFTER")
	for _, m := range ms {
		state := m.State
		if m.State == "loading" {
			state = fmt.Sprintf("loading %.0f%%", 100*m.LoadProgress)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\n", m.Name, state, mib(m.MemoryPlannedBytes), mib(m.MemoryUsedBytes),
			m.SlotsBusy, m.SlotsTotal, m.Queued, portText(m.Port), m.UnloadAfter)
	}
	_ = tw.Flush()
	for _, m := range ms {
		if m.Error != "" {
			fmt.Fprintf(out, "%s: %s\n", m.Name, m.Error)
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func portText(p int) string {
	if p == 0 {
		return "-"
	}
	return fmt.Sprint(p)
}

// parseOneArg parses flags around exactly one positional argument (flags may come
// before or after it) and returns the argument; what is a usage error.
func parseOneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	if err := parseFlags(fs, args, -1); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", fmt.Errorf("%w: give %s", errUsage, what)
	}
	arg := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:], 0); err != nil {
		return "", err
	}
	return arg, nil
}

func runModelsLoad(args []string, out io.Writer) error {
	fs := newFlags("models load", "FILE.yaml [--server URL] --admin-key-file FILE")
	client := addAdminFlags(fs)
	file, err := parseOneArg(fs, args, "one YAML file holding one models: entry (name, path, port, ...)")
	if err != nil {
		return err
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if _, err := config.ParseModel(body); err != nil { // say what is wrong before calling the server
		return fmt.Errorf("%s: %w", file, err)
	}
	c, err := client()
	if err != nil {
		return err
	}
	var st service.Status
	if err := c.do("POST", "/admin/models", body, &st); err != nil {
		return err
	}
	writeModelStates(out, []service.Status{st})
	fmt.Fprintf(out, "loading in the background; `hxp models list` shows its progress\n")
	return nil
}

func runModelsUnload(args []string, out io.Writer) error {
	fs := newFlags("models unload", "NAME [--server URL] --admin-key-file FILE")
	client := addAdminFlags(fs)
	name, err := parseOneArg(fs, args, "the name of one model")
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var st service.Status
	if err := c.do("DELETE", "/admin/models/"+url.PathEscape(name), nil, &st); err != nil {
		return err
	}
	fmt.Fprintf(out, "model %s unloaded (was %s)\n", st.Name, st.State)
	return nil
}

func runReload(args []string, out io.Writer) error {
	c, err := adminClientFor("reload", args)
	if err != nil {
		return err
	}
	var ch config.Changes
	if err := c.do("POST", "/admin/reload", []byte{}, &ch); err != nil {
		return err
	}
	if ch.Empty() {
		fmt.Fprintln(out, "nothing changed")
		return nil
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"added", ch.AddedModels}, {"removed", ch.RemovedModels}, {"reloaded", ch.ChangedModels}, {"needs a restart (unchanged)", ch.NeedsRestart}} {
		if len(l.names) > 0 {
			fmt.Fprintf(out, "%s: %s\n", l.what, strings.Join(l.names, ", "))
		}
	}
	for _, n := range ch.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	for _, l := range []struct {
		what string
		on   bool
	}{{"static keys", ch.Keys}, {"fallbacks", ch.Fallbacks}, {"log level", ch.LogLevel}} {
		if l.on {
			fmt.Fprintf(out, "%s: applied\n", l.what)
		}
	}
	if len(ch.NeedsRestart) > 0 {
		return errors.New("some changes need a restart (listed above); the rest was applied")
	}
	return nil
}
