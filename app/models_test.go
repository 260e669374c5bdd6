package app

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
)

// Models without a restart, through the admin API over real HTTP, on real model
// services of the generated tiny model.

const testAdminKey = "admin-secret-key-123"

// withAdmin configures the admin key and room for models added while serving.
func withAdmin(c *config.Config) { c.Auth.AdminKey = testAdminKey }

func moreCores(o *Options) { o.Validate.HostCores = 8 }

func admin() []string { return bearer(testAdminKey) }

// modelEntry is a models: entry for the tiny model, as a client sends it.
func modelEntry(t testing.TB, name string, port int, extra string) string {
	return fmt.Sprintf("name: %s\npath: %s\nport: %d\ncpu_cores: 1\nparallel: 2\nctx_per_seq: 512\nbatch: 256\n%s",
		name, testmodel.Path(t, "tiny"), port, extra)
}

// states is GET /admin/models by model name.
func states(t testing.TB, gw string) map[string]service.Status {
	t.Helper()
	r := do(t, "GET", gw+"/admin/models", nil, admin()...)
	if r.status != 200 {
		t.Fatalf("GET /admin/models: %d %s", r.status, r.body)
	}
	var list struct {
		Object string
		Data   []service.Status
	}
	r.json(t, &list)
	out := map[string]service.Status{}
	for _, s := range list.Data {
		out[s.Name] = s
	}
	return out
}

// waitState polls GET /admin/models until model is in state (a hang guard).
func waitState(t testing.TB, gw, model, state string) service.Status {
	t.Helper()
	var st service.Status
	waitFor(t, model+" "+state, func() bool {
		st = states(t, gw)[model]
		if st.State == "failed" && state != "failed" {
			t.Fatalf("model %s failed: %s", model, st.Error)
		}
		return st.State == state
	})
	return st
}

// modelIDs lists GET /v1/models.
func modelIDs(t testing.TB, gw string) map[string]string {
	t.Helper()
	r := do(t, "GET", gw+"/v1/models", nil)
	var list struct {
		Data []struct{ ID, Status string }
	}
	r.json(t, &list)
	out := map[string]string{}
	for _, m := range list.Data {
		out[m.ID] = m.Status
	}
	return out
}

// traffic sends greedy chats for model to url until stop is called, and counts the
// answers that are not 200.
type traffic struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	done       chan struct{}
	wg         sync.WaitGroup
}

func startTraffic(t *testing.T, url, model string, clients int, hdr ...string) *traffic {
	tr := &traffic{done: make(chan struct{})}
	for range clients {
		tr.wg.Go(func() {
			for {
				select {
				case <-tr.done:
					return
				default:
				}
				r := post(t, url+"/v1/chat/completions", chatBody(model, 8, nil), hdr...)
				if r.status == 200 {
					tr.ok.Add(1)
				} else {
					tr.failed.Add(1)
					tr.firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", r.status, r.body))
				}
			}
		})
	}
	return tr
}

func (tr *traffic) stop(t *testing.T) {
	t.Helper()
	close(tr.done)
	tr.wg.Wait()
	if n := tr.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests to the other model failed; first: %v", n, n+tr.ok.Load(), tr.firstErr.Load())
	}
	if tr.ok.Load() == 0 {
		t.Error("no request to the other model was answered")
	}
}

// A model loaded and unloaded through the admin API while another model serves a
// steady stream of requests: it joins the router, /v1/models and its own port when
// ready, and leaves them all when removed; not one request to the other model fails.
func TestAddRemoveModelUnderTraffic(t *testing.T) {
	srv := start(t, setup{edit: withAdmin, app: moreCores})
	tr := startTraffic(t, srv.gw, "tiny", 2)

	port := freePort(t)
	r := post(t, srv.gw+"/admin/models", modelEntry(t, "extra", port, "unload_after: 0s\n"), admin()...)
	if r.status != 202 {
		t.Fatalf("POST /admin/models: %d %s", r.status, r.body)
	}
	var st service.Status
	r.json(t, &st)
	if st.Name != "extra" || st.State != "loading" || st.SlotsTotal != 2 || st.Port != port || st.MemoryPlannedBytes <= 0 {
		t.Errorf("POST /admin/models answered %+v", st)
	}
	st = waitState(t, srv.gw, "extra", "ready")
	if st.MemoryUsedBytes <= 0 || st.LoadProgress != 1 {
		t.Errorf("ready model: %+v, want memory used and progress 1", st)
	}
	waitFor(t, "extra in /v1/models", func() bool { return modelIDs(t, srv.gw)["extra"] == "ready" })
	for _, url := range []string{srv.gw, fmt.Sprintf("http://127.0.0.1:%d", port)} {
		if r := post(t, url+"/v1/chat/completions", chatBody("extra", 4, nil)); r.status != 200 {
			t.Fatalf("chat with the added model at %s: %d %s", url, r.status, r.body)
		}
	}
	var details DetailsResponse
	do(t, "GET", srv.gw+"/health/details", nil).json(t, &details)
	found := false
	for _, m := range details.Models {
		found = found || m.ID == "extra" && m.State == "ready" && m.LoadProgress == 1
	}
	if !found {
		t.Errorf("/health/details does not show extra ready: %+v", details.Models)
	}

	r = do(t, "DELETE", srv.gw+"/admin/models/extra", nil, admin()...)
	if r.status != 200 {
		t.Fatalf("DELETE /admin/models/extra: %d %s", r.status, r.body)
	}
	if _, ok := states(t, srv.gw)["extra"]; ok {
		t.Error("GET /admin/models still lists the removed model")
	}
	if _, ok := modelIDs(t, srv.gw)["extra"]; ok {
		t.Error("/v1/models still lists the removed model")
	}
	post(t, srv.gw+"/v1/chat/completions", chatBody("extra", 4, nil)).wantErr(t, 404, "invalid_request_error", "model_not_found")
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port)); err == nil {
		t.Error("the removed model's own port still answers")
	}
	if _, ok := metric(t, srv.Registry(), "hxp_model_up", map[string]string{"model": "extra"}); ok {
		t.Error("hxp_model_up still has a series for the removed model")
	}
	ok, _ := srv.obs.Ready()
	if !ok {
		t.Error("/health/ready is not ready after the removal (the removed model's check stayed?)")
	}
	tr.stop(t)
}

// Removing a model with a request in flight lets the request finish: new requests
// are refused at once (404 on the gateway), the DELETE answers once the request is
// done, and the answer is complete.
func TestRemoveModelFinishesInFlight(t *testing.T) {
	gate := make(chan struct{})
	var gated atomic.Bool
	hook := func() {
		if gated.Load() {
			<-gate
		}
	}
	srv := start(t, setup{edit: withAdmin, app: moreCores, service: service.Options{StepHook: hook}})
	release := sync.OnceFunc(func() { gated.Store(false); close(gate) })
	t.Cleanup(release) // a failing test must not leave the scheduler stuck
	if r := post(t, srv.gw+"/admin/models", modelEntry(t, "extra", 0, ""), admin()...); r.status != 202 {
		t.Fatalf("POST /admin/models: %d %s", r.status, r.body)
	}
	waitState(t, srv.gw, "extra", "ready")
	waitFor(t, "extra routed", func() bool { return modelIDs(t, srv.gw)["extra"] == "ready" })

	gated.Store(true)
	answer := make(chan response, 1)
	go func() { answer <- post(t, srv.gw+"/v1/chat/completions", chatBody("extra", 6, nil)) }()
	waitFor(t, "the request in flight", func() bool { return states(t, srv.gw)["extra"].InFlight > 0 })
	removed := make(chan response, 1)
	go func() { removed <- do(t, "DELETE", srv.gw+"/admin/models/extra", nil, admin()...) }()
	waitState(t, srv.gw, "extra", "draining")
	post(t, srv.gw+"/v1/chat/completions", chatBody("extra", 4, nil)).wantErr(t, 404, "invalid_request_error", "model_not_found")
	select {
	case r := <-removed:
		t.Fatalf("DELETE answered %d before the request in flight finished: %s", r.status, r.body)
	default:
	}
	release()
	r := <-answer
	if r.status != 200 {
		t.Fatalf("the request in flight: %d %s", r.status, r.body)
	}
	var cc struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		}
	}
	r.json(t, &cc)
	if len(cc.Choices) != 1 || cc.Choices[0].FinishReason != "length" {
		t.Errorf("the request in flight was cut: %s", r.body)
	}
	if r := <-removed; r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if _, ok := states(t, srv.gw)["extra"]; ok {
		t.Error("the model is still listed after DELETE")
	}
}

// Entries that cannot load are refused before anything is loaded: a model that does
// not fit the free memory with the planner's need-vs-have table (507), a bad field by
// name (400), a name already served (409); and the admin routes need the admin key.
func TestAddModelRefused(t *testing.T) {
	small := func(o *Options) {
		moreCores(o)
		o.Devices = func() ([]gpu.Device, uint64, error) {
			return []gpu.Device{{Name: "test host", Kind: gpu.KindCPU, TotalBytes: 1 << 20, FreeBytes: 1 << 20, Cores: 8}}, 0, nil
		}
	}
	srv := start(t, setup{edit: withAdmin, app: small})
	before := states(t, srv.gw)

	r := post(t, srv.gw+"/admin/models", modelEntry(t, "big", 0, ""), admin()...)
	e := r.apiErr(t)
	if r.status != 507 || e.Code == nil || *e.Code != "insufficient_memory" || !strings.Contains(e.Message, "big") ||
		!strings.Contains(e.Message, "test host") {
		t.Errorf("a model larger than the free memory: %d %s", r.status, r.body)
	}
	r = post(t, srv.gw+"/admin/models", modelEntry(t, "bad", 0, "unload_after: -1s\n"), admin()...)
	if e := r.wantErr(t, 400, "invalid_request_error", "invalid_config"); e.Param == nil || *e.Param != "models[1].unload_after" {
		t.Errorf("bad parallel: param %v: %s", e.Param, r.body)
	}
	r = post(t, srv.gw+"/admin/models", modelEntry(t, "odd", 0, "paralel: 2\n"), admin()...)
	if e := r.wantErr(t, 400, "invalid_request_error", ""); !strings.Contains(e.Message, "paralel") {
		t.Errorf("unknown field: %s", r.body)
	}
	r = post(t, srv.gw+"/admin/models", modelEntry(t, "tiny", 0, ""), admin()...)
	r.wantErr(t, 409, "invalid_request_error", "model_exists")
	do(t, "GET", srv.gw+"/admin/models", nil, bearer("not-the-admin-key")...).wantErr(t, 401, "authentication_error", "invalid_api_key")
	do(t, "DELETE", srv.gw+"/admin/models/nope", nil, admin()...).wantErr(t, 404, "invalid_request_error", "model_not_found")

	after := states(t, srv.gw)
	if len(after) != len(before) || after["tiny"].State != "ready" {
		t.Errorf("refused entries changed the models: %v, before %v", after, before)
	}
}

// A model with unload_after is freed after that long without requests and stays
// listed as unloaded (the server stays ready); its next request loads it again and is
// answered. With a load_wait shorter than the load, that request gets 503 with
// Retry-After, and the load goes on.
func TestIdleUnloadAndLoadOnDemand(t *testing.T) {
	srv := start(t, setup{edit: withAdmin, app: moreCores})
	for _, tc := range []struct {
		name, wait string
		status     int
	}{{"sleepy", "30s", 200}, {"impatient", "1ns", 503}} {
		t.Run(tc.name, func(t *testing.T) {
			entry := modelEntry(t, tc.name, 0, fmt.Sprintf("unload_after: 100ms\nload_wait: %s\n", tc.wait))
			if r := post(t, srv.gw+"/admin/models", entry, admin()...); r.status != 202 {
				t.Fatalf("POST /admin/models: %d %s", r.status, r.body)
			}
			waitState(t, srv.gw, tc.name, "ready")
			waitFor(t, tc.name+" routed", func() bool { return modelIDs(t, srv.gw)[tc.name] != "" })
			st := waitState(t, srv.gw, tc.name, "unloaded")
			if st.MemoryUsedBytes != 0 {
				t.Errorf("unloaded model uses %d bytes", st.MemoryUsedBytes)
			}
			if got := modelIDs(t, srv.gw)[tc.name]; got != "unloaded" {
				t.Errorf("/v1/models lists %s as %q, want unloaded", tc.name, got)
			}
			// Listing the models is not a request for this one: it stays unloaded.
			if st := states(t, srv.gw)[tc.name]; st.State != "unloaded" {
				t.Errorf("after GET /v1/models %s is %s, want unloaded", tc.name, st.State)
			}
			srv.obs.health.RunOnce(testCtx(t))
			if ok, rep := srv.obs.Ready(); !ok {
				t.Errorf("an idle unloaded model made the server not ready: %+v", rep)
			}
			r := post(t, srv.gw+"/v1/chat/completions", chatBody(tc.name, 4, nil))
			if r.status != tc.status {
				t.Fatalf("first request after the unload: %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == 503 {
				r.wantErr(t, 503, "service_unavailable_error", "model_not_ready")
				if r.header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				waitState(t, srv.gw, tc.name, "ready")
				if r := post(t, srv.gw+"/v1/chat/completions", chatBody(tc.name, 4, nil)); r.status != 200 {
					t.Fatalf("request once loaded: %d %s", r.status, r.body)
				}
			}
		})
	}
}

// fakeHost is a test host whose device, once its capacity is set, has that many
// bytes past the planner's reserve; like gpu.Discover, its free memory is net of the
// resident models (each counted by its planned memory).
type fakeHost struct {
	capacity atomic.Int64
	app      atomic.Pointer[App]
}

// devices is Options.Devices.
func (h *fakeHost) devices() ([]gpu.Device, uint64, error) {
	free := uint64(1 << 40)
	if room := h.capacity.Load(); room > 0 {
		for _, s := range h.app.Load().Group().Services() {
			if st := s.State(); st == service.StateReady || st == service.StateLoading || st == service.StateDraining {
				room -= s.PlannedBytes()
			}
		}
		free = gpu.DefaultDeviceReserve + uint64(max(room, 0))
	}
	return []gpu.Device{{Name: "test host", Kind: gpu.KindCPU, TotalBytes: 1 << 40, FreeBytes: free, Cores: 8}}, 0, nil
}

// A model unloaded for idleness is planned against the free memory before a request
// loads it again: while another model is resident and both do not fit, the request
// gets 503 with Retry-After and a message that says the model does not fit now, and
// nothing is loaded; once the other model is removed, the next request loads it.
func TestLoadOnDemandPlanned(t *testing.T) {
	var host fakeHost
	srv := start(t, setup{edit: withAdmin, app: func(o *Options) { moreCores(o); o.Devices = host.devices }})
	host.app.Store(srv.App)
	if r := post(t, srv.gw+"/admin/models", modelEntry(t, "sleepy", 0, "unload_after: 100ms\nload_wait: 30s\n"), admin()...); r.status != 202 {
		t.Fatalf("POST /admin/models: %d %s", r.status, r.body)
	}
	waitState(t, srv.gw, "sleepy", "ready")
	waitFor(t, "sleepy routed", func() bool { return modelIDs(t, srv.gw)["sleepy"] != "" })
	// Room for sleepy and half again: not beside tiny (resident, at least its file).
	need := waitState(t, srv.gw, "sleepy", "unloaded").MemoryPlannedBytes
	host.capacity.Store(need + need/2)

	r := post(t, srv.gw+"/v1/chat/completions", chatBody("sleepy", 4, nil))
	if e := r.wantErr(t, 503, "service_unavailable_error", "model_does_not_fit"); !strings.Contains(e.Message, "does not fit the free memory now") ||
		!strings.Contains(e.Message, "test host") {
		t.Errorf("the message does not say why: %s", e.Message)
	}
	if got := r.header.Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After %q, want 30", got)
	}
	if st := states(t, srv.gw)["sleepy"]; st.State != "unloaded" || st.MemoryUsedBytes != 0 {
		t.Errorf("a refused load on demand loaded the model: %+v", st)
	}

	if r := do(t, "DELETE", srv.gw+"/admin/models/tiny", nil, admin()...); r.status != 200 {
		t.Fatalf("DELETE tiny: %d %s", r.status, r.body)
	}
	if r := post(t, srv.gw+"/v1/chat/completions", chatBody("sleepy", 4, nil)); r.status != 200 {
		t.Fatalf("request once the other model was removed: %d %s", r.status, r.body)
	}
}

// A reload that changes a model's entry switches it over while a client sends it a
// steady stream of requests, through the gateway and on the model's own port: the
// new instance loads beside the old one and replaces it; not one request fails, and
// the new setting is in effect afterwards (GET /admin/models). The first change adds
// the own port (bound beside the gateway route), the second changes parallel on the
// same port.
func TestReloadChangedModelSwitchesOver(t *testing.T) {
	keys := map[string]string{"dave": "dave-secret-4"}
	srv, rs := startReloadable(t, keys, nil)
	port := freePort(t)
	withEntry := func(fields string, parallel int) string {
		text := strings.Replace(rs.configText(t, keys, ""), "{name: tiny, ", "{name: tiny, "+fields, 1)
		return strings.Replace(text, "parallel: 2,", fmt.Sprintf("parallel: %d,", parallel), 1)
	}
	own := fmt.Sprintf("http://127.0.0.1:%d", port)
	gw := startTraffic(t, srv.gw, "tiny", 2, bearer("dave-secret-4")...)
	for i, step := range []struct {
		fields   string
		parallel int
		want     string
	}{
		{fmt.Sprintf("port: %d, ", port), 2, "port"},
		{fmt.Sprintf("port: %d, ", port), 3, "parallel"},
	} {
		var onPort *traffic
		if i > 0 {
			onPort = startTraffic(t, own, "tiny", 1, bearer("dave-secret-4")...)
		}
		rs.write(t, withEntry(step.fields, step.parallel))
		r, ch := reload(t, srv)
		if r.status != 200 || !slices.Equal(ch.ChangedModels, []string{"tiny"}) || len(ch.OutageModels) != 0 {
			t.Fatalf("reload changing %s: %d %s", step.want, r.status, r.body)
		}
		waitFor(t, "the new entry serving", func() bool {
			return srv.Group().Get("tiny").Config().Port == port && srv.Group().Get("tiny").Ready() == nil
		})
		if i > 0 {
			waitFor(t, "parallel 3 in effect", func() bool { return states(t, srv.gw)["tiny"].SlotsTotal == 3 })
			onPort.stop(t)
		}
	}
	gw.stop(t)
	if st := states(t, srv.gw); len(st) != 1 || st["tiny"].State != "ready" || st["tiny"].Port != port || st["tiny"].SlotsTotal != 3 {
		t.Errorf("models after the switch-overs: %+v", st)
	}
	if r := post(t, own+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer("dave-secret-4")...); r.status != 200 {
		t.Errorf("the model's own port after the switch-over: %d %s", r.status, r.body)
	}
}

// A changed entry that does not fit beside the running instance, but fits in its
// place, is unloaded, then loaded with the new entry, and the reload's answer says so
// (outage_models and a note): the brief outage is never silent.
func TestReloadChangedModelOutage(t *testing.T) {
	var host fakeHost
	keys := map[string]string{"dave": "dave-secret-4"}
	srv, rs := startReloadable(t, keys, nil, func(o *Options) { o.Devices = host.devices })
	host.app.Store(srv.App)
	// Room for twice the running instance (planned at its file size: the config's
	// models load unplanned here): its parallel-3 entry (weights, KV cache and
	// compute buffer) fits in its place, not beside it.
	host.capacity.Store(2 * waitState(t, srv.gw, "tiny", "ready").MemoryPlannedBytes)

	rs.write(t, strings.Replace(rs.configText(t, keys, ""), "parallel: 2,", "parallel: 3,", 1))
	r, ch := reload(t, srv)
	if r.status != 200 || !slices.Equal(ch.OutageModels, []string{"tiny"}) || len(ch.Notes) != 1 || !strings.Contains(ch.Notes[0], "needs a brief outage") {
		t.Fatalf("reload with a change that does not fit beside the old instance: %d %s", r.status, r.body)
	}
	waitFor(t, "parallel 3 in effect", func() bool { st := states(t, srv.gw)["tiny"]; return st.State == "ready" && st.SlotsTotal == 3 })
}

// reloadSetup starts a server from a config file that reload re-reads.
type reloadSetup struct {
	dir, file string
	port      int
}

func (rs reloadSetup) write(t *testing.T, body string) {
	t.Helper()
	if err := os.WriteFile(rs.file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// configText is the reload tests' config file: the tiny model, static keys by id and
// secret, and extra YAML.
func (rs reloadSetup) configText(t *testing.T, keys map[string]string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\ngrpc: {listen: \"127.0.0.1:0\"}\npostgres: {spool_path: %s}\nretrieval: {data_dir: %s}\n",
		rs.port, filepath.Join(rs.dir, "spool"), filepath.Join(rs.dir, "data"))
	fmt.Fprintf(&b, "auth:\n  admin_key_file: %s\n  keys:\n", filepath.Join(rs.dir, "admin.key"))
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		h := tenancy.HashKey(keys[id])
		fmt.Fprintf(&b, "    - {id: %s, sha256: %x}\n", id, h[:])
	}
	fmt.Fprintf(&b, "models:\n  - {name: tiny, path: %s, cpu_cores: 1, parallel: 2, ctx_per_seq: 512, batch: 256}\n", testmodel.Path(t, "tiny"))
	b.WriteString(extra)
	return b.String()
}

func startReloadable(t *testing.T, keys map[string]string, setLevel func(string), opts ...func(*Options)) (*server, reloadSetup) {
	rs := reloadSetup{dir: t.TempDir(), port: freePort(t)}
	rs.file = filepath.Join(rs.dir, "hxp.yaml")
	if err := os.WriteFile(filepath.Join(rs.dir, "admin.key"), []byte(testAdminKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs.write(t, rs.configText(t, keys, ""))
	load := func() (*config.Config, error) { return config.Load(rs.file, config.Options{HostCores: 8}) }
	first, err := load()
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, setup{
		edit: func(c *config.Config) { *c = *first },
		app: func(o *Options) {
			moreCores(o)
			o.Reload, o.SetLogLevel = load, setLevel
			for _, f := range opts {
				f(o)
			}
		},
	})
	return srv, rs
}

func reload(t *testing.T, srv *server) (response, config.Changes) {
	t.Helper()
	r := post(t, srv.gw+"/admin/reload", nil, admin()...)
	var ch config.Changes
	if r.status == 200 {
		r.json(t, &ch)
	}
	return r, ch
}

// A reload applies the file's keys: a key added authenticates, a key removed gets 401,
// while requests go on; a broken file changes nothing; models come and go; fields
// that cannot change live are reported as needing a restart.
func TestReload(t *testing.T) {
	var level atomic.Value
	srv, rs := startReloadable(t, map[string]string{"alice": "alice-secret-1", "dave": "dave-secret-4"}, func(l string) { level.Store(l) })
	chat := func(key string) int {
		return post(t, srv.gw+"/v1/chat/completions", chatBody("tiny", 2, nil), bearer(key)...).status
	}
	if chat("alice-secret-1") != 200 || chat("bob-secret-22") != 401 {
		t.Fatal("keys before the reload")
	}
	if r, ch := reload(t, srv); r.status != 200 || !ch.Empty() {
		t.Fatalf("reload of the same file: %d %s", r.status, r.body)
	}

	// dave's key stays through every reload: none of its requests may fail.
	tr := startTraffic(t, srv.gw, "tiny", 1, bearer("dave-secret-4")...)
	keys := map[string]string{"bob": "bob-secret-22", "dave": "dave-secret-4"}
	rs.write(t, rs.configText(t, keys, ""))
	r, ch := reload(t, srv)
	if r.status != 200 || !ch.Keys || len(ch.NeedsRestart) != 0 {
		t.Fatalf("reload with new keys: %d %s", r.status, r.body)
	}
	if chat("bob-secret-22") != 200 || chat("alice-secret-1") != 401 {
		t.Error("after the reload: want bob's key to authenticate and alice's to get 401")
	}

	rs.write(t, rs.configText(t, map[string]string{"carol": "carol-secret-3", "dave": "dave-secret-4"}, "routing: {retries: -7}\n"))
	r, _ = reload(t, srv)
	if e := r.wantErr(t, 400, "invalid_request_error", "invalid_config"); e.Param == nil || *e.Param != "routing.retries" {
		t.Errorf("broken file: param %v: %s", e.Param, r.body)
	}
	rs.write(t, "models: [\n")
	r, _ = reload(t, srv)
	r.wantErr(t, 400, "invalid_request_error", "invalid_config")
	if chat("bob-secret-22") != 200 || chat("carol-secret-3") != 401 {
		t.Error("a refused reload changed the keys")
	}

	other := freePort(t)
	rs.write(t, strings.Replace(rs.configText(t, keys,
		fmt.Sprintf("  - {name: second, path: %s, cpu_cores: 1, parallel: 2, ctx_per_seq: 512, batch: 256}\n", testmodel.Path(t, "tiny"))),
		fmt.Sprintf("listen: 127.0.0.1:%d", rs.port), fmt.Sprintf("listen: 127.0.0.1:%d", other), 1))
	r, ch = reload(t, srv)
	if r.status != 200 || len(ch.AddedModels) != 1 || ch.AddedModels[0] != "second" || len(ch.NeedsRestart) != 1 || ch.NeedsRestart[0] != "listen" {
		t.Fatalf("reload adding a model and changing listen: %d %s", r.status, r.body)
	}
	waitState(t, srv.gw, "second", "ready")
	if !strings.Contains(srv.logs.String(), `"needs_restart":["listen"]`) {
		t.Error("the field that needs a restart is not in the log")
	}

	rs.write(t, rs.configText(t, keys, ""))
	r, ch = reload(t, srv)
	if r.status != 200 || len(ch.RemovedModels) != 1 || ch.RemovedModels[0] != "second" {
		t.Fatalf("reload removing a model: %d %s", r.status, r.body)
	}
	if _, ok := states(t, srv.gw)["second"]; ok {
		t.Error("the removed model is still listed")
	}
	if chat("bob-secret-22") != 200 {
		t.Error("tiny stopped answering")
	}
	rs.write(t, "log: {level: debug}\n"+rs.configText(t, keys, ""))
	if r, ch = reload(t, srv); r.status != 200 || !ch.LogLevel || level.Load() != "debug" {
		t.Errorf("reload changing log.level: %d %s, level set to %v", r.status, r.body, level.Load())
	}
	var list struct{ Data []json.RawMessage }
	do(t, "GET", srv.gw+"/admin/models", nil, admin()...).json(t, &list)
	if len(list.Data) != 1 {
		t.Errorf("models after the reloads: %d, want 1", len(list.Data))
	}
	tr.stop(t)
}
