package app

import (
	"strings"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/hxp-ai/hxp/config"
)

// An Anthropic request answered by a remote node keeps what Messages needs from the
// hop: top_k reaches the node (top_k 1 at temperature 1 answers the greedy text, which
// sampling without it does not), and a stop sequence ends the answer with stop_reason
// stop_sequence and the matched string, collected and streamed.
func TestAnthropicStopAndTopKThroughARemoteNode(t *testing.T) {
	const nodeKey = "node-key-of-the-remote-test"
	node := start(t, setup{edit: func(c *config.Config) { c.Auth.Required, c.Auth.NodeKey = true, nodeKey }})
	gw := start(t, setup{models: []string{}, edit: func(c *config.Config) {
		c.Auth.NodeKey, c.Auth.APIKeys = nodeKey, []string{"client-key-of-the-remote-test"}
		c.Upstreams = []config.Upstream{{Model: "tiny", URL: node.gw}}
	}})
	c := sdk.NewClient(option.WithBaseURL(gw.gw+"/"), option.WithAPIKey("client-key-of-the-remote-test"), option.WithMaxRetries(0))
	ctx := testCtx(t)
	// The SDK has no temperature or top_k fields: they are set on the body.
	temp := func(v float64) option.RequestOption { return option.WithJSONSet("temperature", v) }
	question := func(stops ...string) sdk.MessageNewParams {
		return sdk.MessageNewParams{Model: "tiny", MaxTokens: 24, StopSequences: stops,
			Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Count to twenty."))}}
	}
	ask := func(p sdk.MessageNewParams, opts ...option.RequestOption) *sdk.Message {
		t.Helper()
		m, err := c.Messages.New(ctx, p, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	textOf := func(m *sdk.Message) string {
		if len(m.Content) == 0 {
			return ""
		}
		return m.Content[0].Text
	}

	greedy := textOf(ask(question(), temp(0)))
	if len(greedy) < 8 {
		t.Fatalf("greedy answer %q is too short to test with", greedy)
	}
	if got := textOf(ask(question(), temp(1), option.WithJSONSet("top_k", 1))); got != greedy {
		t.Errorf("top_k 1 at temperature 1 answered %q, the greedy answer is %q: top_k did not reach the node", got, greedy)
	}
	sampled := 0
	for range 3 {
		if textOf(ask(question(), temp(1))) != greedy {
			sampled++
		}
	}
	if sampled == 0 {
		t.Fatal("temperature 1 without top_k answered the greedy text three times: the top_k check proves nothing")
	}

	stop := greedy[len(greedy)/2 : len(greedy)/2+2]
	want := greedy[:strings.Index(greedy, stop)]
	params := question("\x7fnever", stop)
	if m := ask(params, temp(0)); m.StopReason != sdk.StopReasonStopSequence || m.StopSequence != stop || textOf(m) != want {
		t.Errorf("stop %q: %q, stop_reason %q, stop_sequence %q; want %q", stop, textOf(m), m.StopReason, m.StopSequence, want)
	}
	st := c.Messages.NewStreaming(ctx, params, temp(0))
	var acc sdk.Message
	for st.Next() {
		if err := acc.Accumulate(st.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil || acc.StopReason != sdk.StopReasonStopSequence || acc.StopSequence != stop || textOf(&acc) != want {
		t.Errorf("streamed with stop %q: %q, stop_reason %q, stop_sequence %q (err %v); want %q", stop, textOf(&acc),
			acc.StopReason, acc.StopSequence, err, want)
	}
}
