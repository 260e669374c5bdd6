package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/service"
)

// Shutdown lets a stream in flight finish, then frees the model and stops listening.
func TestGracefulShutdownCompletesStream(t *testing.T) {
	srv := start(t, setup{models: []string{"grace"}, service: service.Options{StepHook: func() { time.Sleep(3 * time.Millisecond) }}})
	app, gw, own := srv.App, srv.gw, srv.own
	if r := do(t, "GET", own+"/health", nil); r.status != 200 {
		t.Fatalf("model listener: %d", r.status)
	}
	const maxTokens = 100
	b, _ := json.Marshal(chatBody("grace", maxTokens, map[string]any{"stream": true, "stream_options": map[string]any{"include_usage": true}}))
	resp, err := http.Post(gw+"/v1/chat/completions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	var body bytes.Buffer
	first, err := rd.ReadString('\n') // the first event has arrived: the stream is in flight
	if err != nil {
		t.Fatal(err)
	}
	body.WriteString(first)

	done := make(chan error, 1)
	go func() { done <- app.Shutdown(30 * time.Second) }()
	waitFor(t, "the gateway to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(gw, "http://"), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if _, err := body.ReadFrom(rd); err != nil {
		t.Fatalf("stream broken by shutdown: %v", err)
	}
	text, finish, usage := chatStream(t, body.Bytes())
	if finish != "length" || usage == nil || usage.CompletionTokens != maxTokens || text == "" {
		t.Errorf("stream ended with finish %q usage %+v", finish, usage)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if st := app.Group().Get("grace").State(); st != service.StateClosed {
		t.Errorf("model state after shutdown: %s", st)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(own, "http://"), time.Second); err == nil {
		t.Error("model listener still accepts after shutdown")
	}
}

// A stream that outlives the grace period is ended with an error event, and the
// shutdown still completes.
func TestShutdownGraceExpires(t *testing.T) {
	srv := start(t, setup{models: []string{"grace"}, service: service.Options{StepHook: func() { time.Sleep(20 * time.Millisecond) }}})
	app, gw := srv.App, srv.gw
	b, _ := json.Marshal(chatBody("grace", 400, map[string]any{"stream": true}))
	resp, err := http.Post(gw+"/v1/chat/completions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	shutdownErr := app.Shutdown(100 * time.Millisecond)
	if shutdownErr == nil {
		t.Error("shutdown over grace reported clean")
	}
	var rest bytes.Buffer
	rest.ReadFrom(rd)
	if !strings.Contains(rest.String(), `"code":"shutting_down"`) || !strings.HasSuffix(rest.String(), "data: [DONE]\n\n") {
		t.Errorf("cut stream did not end with a shutting_down error event and [DONE]: ...%s", tail(rest.String(), 300))
	}
	// A stream that fails after its 200 header counts with its error's status.
	failed := map[string]string{"model": "grace", "status": "503"}
	waitFor(t, "the cut stream to be counted", func() bool { return counter(t, app.Registry(), "hxp_requests_total", failed) == 1 })
	if got := counter(t, app.Registry(), "hxp_requests_total", map[string]string{"model": "grace", "status": "200"}); got != 0 {
		t.Errorf("the cut stream also counted as 200: %v", got)
	}
	if st := app.Group().Get("grace").State(); st != service.StateClosed {
		t.Errorf("model state after shutdown: %s", st)
	}
}

func TestAppRejectsTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := modelConfig(t, "x")
	cfg := &config.Config{Listen: ln.Addr().String(), Models: []config.Model{m}}
	cfg.ApplyDefaults(1)
	app, err := New(cfg, service.NewGroup(cfg.Models, testLog(), service.Options{}), Options{Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("start on a taken port: %v", err)
	}
}
