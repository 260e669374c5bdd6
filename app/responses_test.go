package app

import (
	"testing"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/internal/testenv"
)

// Stored responses live in PostgreSQL when postgres.url is set: a response created on
// one server is read and continued on a server started afterwards (a restart), by the
// key that created it only; and on the real model a Responses request at temperature
// 0 answers the same text as the same conversation through chat completions.
func TestStoredResponsesSurviveARestart(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	edit := func(c *config.Config) {
		c.Postgres.URL = pg.URL()
		c.Auth.Keys = []config.StaticKey{staticKey("team-a", "resp-secret-aaaa", nil, 0, 0), staticKey("team-b", "resp-secret-bbbb", nil, 0, 0)}
	}
	a, b := bearer("resp-secret-aaaa"), bearer("resp-secret-bbbb")
	first := start(t, setup{edit: edit})
	created := post(t, first.gw+"/v1/responses", map[string]any{"model": "tiny", "input": "Tell me about the sea",
		"max_output_tokens": 8, "temperature": 0}, a...)
	if created.status != 200 {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	var resp struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Output []struct {
			Type    string `json:"type"`
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
		Usage struct {
			InputTokens int `json:"input_tokens"`
		} `json:"usage"`
	}
	created.json(t, &resp)
	text := ""
	for _, o := range resp.Output {
		for _, c := range o.Content {
			text += c.Text
		}
	}
	if resp.ID == "" || text == "" {
		t.Fatalf("created: %s", created.body)
	}
	// The same conversation through chat completions gives the same text.
	chat := post(t, first.gw+"/v1/chat/completions", map[string]any{"model": "tiny", "max_tokens": 8, "temperature": 0,
		"messages": []map[string]string{{"role": "user", "content": "Tell me about the sea"}}}, a...)
	var cc struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	chat.json(t, &cc)
	if len(cc.Choices) != 1 || cc.Choices[0].Message.Content != text {
		t.Errorf("chat completions answered %q, Responses %q", chat.body, text)
	}
	first.Shutdown(5e9)

	second := start(t, setup{edit: edit})
	if got := do(t, "GET", second.gw+"/v1/responses/"+resp.ID, nil, a...); got.status != 200 {
		t.Fatalf("after a restart, the creating key reads its response: %d %s", got.status, got.body)
	}
	for _, path := range []string{"/v1/responses/" + resp.ID, "/v1/responses/" + resp.ID + "/input_items"} {
		if got := do(t, "GET", second.gw+path, nil, b...); got.status != 404 {
			t.Errorf("another key reads %s: %d %s", path, got.status, got.body)
		}
	}
	next := post(t, second.gw+"/v1/responses", map[string]any{"model": "tiny", "input": "And then?", "max_output_tokens": 4,
		"temperature": 0, "previous_response_id": resp.ID}, a...)
	var cont struct {
		Usage struct {
			InputTokens int `json:"input_tokens"`
		} `json:"usage"`
	}
	next.json(t, &cont)
	if next.status != 200 || cont.Usage.InputTokens <= resp.Usage.InputTokens {
		t.Errorf("continuing after a restart: %d, input tokens %d (the first turn had %d): %s", next.status,
			cont.Usage.InputTokens, resp.Usage.InputTokens, next.body)
	}
	if got := post(t, second.gw+"/v1/responses", map[string]any{"model": "tiny", "input": "x", "previous_response_id": resp.ID}, b...); got.status != 404 {
		t.Errorf("another key continues the conversation: %d %s", got.status, got.body)
	}
}
