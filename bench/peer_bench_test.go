package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/bench/loadgen"
	"github.com/hxp-ai/hxp/internal/testmodel"
)

// BenchmarkPeer measures HXP against llama.cpp's own server, side by side: `hxp serve`
// (built from this tree, or HXP_BIN) and the llama-server binary LLAMA_SERVER points to
// (../shared/peer/build-llama-server.sh builds it) serve the same generated model
// (bench preset, q8_0) with the same slots, context per slot and threads, and one HTTP
// client drives both alternately (A B, then B A, ...), each round with prompts of its
// own that neither server has seen. Streamed completions at temperature 0, both
// processes on the same cores; reported per cell: generated tokens/s, TTFT p50/p99 and
// ITL p50/p99 of each, and HXP/peer ratios. The shared-prompt cell sends 16 requests at
// once with one 1,500-token system prompt (new each round, so every slot is cold) and
// different 24-token questions: TTFT p50/p99 of each.
//
//	LLAMA_SERVER=$(bash ../shared/peer/build-llama-server.sh) \
//	  go test -run '^$' -bench Peer -benchtime 1x -timeout 60m ./bench/
//
// The default matrix (1 and 16 streams, 128 tokens, 16-token prompts, 2 rounds, and
// the shared-prompt cell) takes a few minutes on 2 cores; PEER_MATRIX=full runs 1, 4
// and 16 streams × 128 and 512 tokens × 16- and 1,000-token prompts, PEER_CELLS picks
// cells of that matrix by name (s16_g128_p16,..., and shared for the shared-prompt
// cell, which runs only when named there or PEER_CELLS is unset), PEER_ROUNDS sets
// the rounds, PEER_THREADS the threads of each server (default: the host's cores),
// PEER_ARGS more llama-server flags (--no-repack where a VM reports AMX it does not
// enable: llama-server built with GGML_NATIVE then dies of SIGILL in its AMX kernels).
// Without LLAMA_SERVER it is skipped.
func BenchmarkPeer(b *testing.B) {
	peerBin := os.Getenv("LLAMA_SERVER")
	if peerBin == "" {
		b.Skip("LLAMA_SERVER is unset: build the peer with ../shared/peer/build-llama-server.sh and point LLAMA_SERVER to the llama-server it prints")
	}
	model := testmodel.Quantized(b, "bench", benchQuant())
	const slots, ctxPerSeq = 16, 2048 // 1,000-token prompts + 512 tokens, and 1,500 + 24 + 8
	threads := runtime.NumCPU()
	if v, err := strconv.Atoi(os.Getenv("PEER_THREADS")); err == nil && v > 0 {
		threads = v // on a machine others load, 1 each spares both the spinning thread pools
	}
	rounds, cells, shared := peerPlan(b)
	hxpPort, peerPort := freePort(b), freePort(b)
	servers := []*peerServer{
		startPeerServer(b, "hxp", hxpBinary(b), hxpPort, "/health/ready",
			[]string{"serve", "--model", "bench=" + model, "--listen", "127.0.0.1:" + strconv.Itoa(hxpPort), "--log-level", "warn"},
			"HXP_MODELS_BENCH_PARALLEL="+strconv.Itoa(slots), "HXP_MODELS_BENCH_CTX_PER_SEQ="+strconv.Itoa(ctxPerSeq),
			"HXP_MODELS_BENCH_CPU_CORES="+strconv.Itoa(threads), "HXP_GRPC_LISTEN=127.0.0.1:"+strconv.Itoa(freePort(b))),
		startPeerServer(b, "peer", peerBin, peerPort, "/health",
			append([]string{"-m", model, "--host", "127.0.0.1", "--port", strconv.Itoa(peerPort), "-np", strconv.Itoa(slots),
				"-c", strconv.Itoa(slots * ctxPerSeq), "-t", strconv.Itoa(threads)}, strings.Fields(os.Getenv("PEER_ARGS"))...)),
	}
	for _, s := range servers { // until the model answers; connections and first-use allocations, unmeasured
		s.warmUp(b)
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| cell | tok/s HXP | tok/s peer | HXP/peer | TTFT p50/p99 HXP (ms) | peer | ITL p50/p99 HXP (ms) | peer |\n|---|---|---|---|---|---|---|---|\n")
	for ci, c := range cells {
		res := alternate(b, servers, rounds, c.streams, func(r int) [][]byte { return completionBodies(ci*1000+r, c, 0) })
		h, p := res[0], res[1]
		ratio := h.TokensPerSecond() / p.TokensPerSecond()
		b.ReportMetric(ratio, c.String()+"_hxp/peer")
		b.ReportMetric(float64(h.TTFT.Percentile(99))/float64(p.TTFT.Percentile(99)), c.String()+"_ttft_p99_hxp/peer")
		fmt.Fprintf(&table, "| %s | %.0f | %.0f | %.2f | %s | %s | %s | %s |\n", c, h.TokensPerSecond(), p.TokensPerSecond(), ratio,
			p5099(h.TTFT), p5099(p.TTFT), p5099(h.ITL), p5099(p.ITL))
	}
	if shared { // a shared system prompt, cold slots: 16 requests at once
		c := peerCell{streams: 16, gen: 8, prompt: 24}
		in0, reused0 := promptCounters(b, servers[0])
		res := alternate(b, servers, rounds, c.streams, func(r int) [][]byte { return completionBodies(1_000_000+r, c, 1500) })
		in1, reused1 := promptCounters(b, servers[0])
		h, p := res[0].TTFT, res[1].TTFT
		b.ReportMetric(float64(h.Percentile(50))/float64(p.Percentile(50)), "shared_ttft_p50_hxp/peer")
		b.ReportMetric(float64(h.Percentile(99))/float64(p.Percentile(99)), "shared_ttft_p99_hxp/peer")
		fmt.Fprintf(&table, "\nShared 1,500-token system prompt, 16 cold requests (24-token questions, 8 tokens): TTFT p50/p99 HXP %s ms, peer %s ms, p50 ratio %.2f; HXP evaluated %.0f of %.0f prompt tokens\n",
			p5099(h), p5099(p), float64(h.Percentile(50))/float64(p.Percentile(50)), (in1-in0)-(reused1-reused0), in1-in0)
	}
	// Printed, not logged: a benchmark's log is cut after a few lines.
	fmt.Printf("%d rounds per cell, %d slots, %d tokens per slot, %d threads each:%s", rounds, slots, ctxPerSeq, threads, table.String())
	b.ReportMetric(0, "ns/op")
}

// peerPlan returns the rounds per cell, the cells and whether to run the shared-prompt
// cell, from PEER_MATRIX, PEER_CELLS and PEER_ROUNDS (see BenchmarkPeer).
func peerPlan(b *testing.B) (rounds int, cells []peerCell, shared bool) {
	var matrix []peerCell // PEER_MATRIX=full
	for _, st := range []int{1, 4, 16} {
		for _, gen := range []int{128, 512} {
			for _, p := range []int{16, 1000} {
				matrix = append(matrix, peerCell{streams: st, gen: gen, prompt: p})
			}
		}
	}
	rounds, cells, shared = 2, []peerCell{{streams: 1, gen: 128, prompt: 16}, {streams: 16, gen: 128, prompt: 16}}, true
	if os.Getenv("PEER_MATRIX") == "full" {
		rounds, cells = 3, matrix
	}
	if only := os.Getenv("PEER_CELLS"); only != "" { // e.g. s16_g128_p16,s16_g128_p1000,shared
		names := strings.Split(only, ",")
		cells = slices.DeleteFunc(slices.Clone(matrix), func(c peerCell) bool { return !slices.Contains(names, c.String()) })
		shared = slices.Contains(names, "shared")
		if len(cells) == 0 && !shared {
			b.Fatalf("PEER_CELLS=%q names no cell (cells are s{1,4,16}_g{128,512}_p{16,1000} and shared)", only)
		}
	}
	if v, err := strconv.Atoi(os.Getenv("PEER_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	return rounds, cells, shared
}

// promptCounters reads HXP's hxp_prompt_tokens_total and hxp_prompt_tokens_reused_total
// (reused: served from a slot's cache or copied from another slot's).
func promptCounters(b *testing.B, s *peerServer) (in, reused float64) {
	b.Helper()
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || !strings.Contains(name, `model="bench"`) {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch {
		case strings.HasPrefix(name, "hxp_prompt_tokens_total{"):
			in = v
		case strings.HasPrefix(name, "hxp_prompt_tokens_reused_total{"):
			reused = v
		}
	}
	return in, reused
}

// alternate runs rounds of the same load on every server, the order reversed every
// other round, and returns each server's merged results.
func alternate(b *testing.B, servers []*peerServer, rounds, streams int, bodies func(round int) [][]byte) []loadgen.Result {
	res := make([]loadgen.Result, len(servers))
	for r := 0; r < rounds; r++ {
		bs := bodies(r)
		for k := range servers {
			i := k
			if r%2 == 1 {
				i = len(servers) - 1 - k
			}
			// The other server's decode threads may still be spinning for work when
			// its run ends (llama-server polls before it sleeps): let them settle so
			// that they do not slow this run's first step.
			time.Sleep(peerSettle)
			res[i].Merge(servers[i].run(b, bs, streams))
		}
	}
	return res
}

// peerSettle is the pause before each server's run (see alternate).
const peerSettle = 500 * time.Millisecond

// peerCell is one load of the side-by-side matrix.
type peerCell struct{ streams, gen, prompt int }

func (c peerCell) String() string { return fmt.Sprintf("s%d_g%d_p%d", c.streams, c.gen, c.prompt) }

// completionBodies returns one streamed completion request per stream of c: a prompt
// of c.prompt token ids (BOS, then ids drawn from seed) after a system part of system
// ids shared by every request of the round, c.gen tokens at temperature 0. Token ids
// are sent as they are, so that both servers evaluate exactly the same tokens.
func completionBodies(seed int, c peerCell, system int) [][]byte {
	r := rand.New(rand.NewPCG(uint64(seed), 17))
	ids := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = 400 + r.IntN(15000) // ordinary pieces of the generated vocabulary
		}
		return out
	}
	sys := ids(system)
	out := make([][]byte, c.streams)
	for i := range out {
		prompt := append(append([]int{1}, sys...), ids(c.prompt-1)...) // 1 is BOS
		out[i], _ = json.Marshal(map[string]any{"model": "bench", "prompt": prompt, "max_tokens": c.gen, "temperature": 0,
			"stream": true, "stream_options": map[string]any{"include_usage": true}})
	}
	return out
}

// p5099 formats the median and 99th percentile in milliseconds.
func p5099(d loadgen.Durations) string {
	return fmt.Sprintf("%.0f/%.0f", msf(d.Percentile(50)), msf(d.Percentile(99)))
}

// peerServer is one server process under test.
type peerServer struct {
	name, base string
}

// run sends bodies from streams concurrent clients, one request each, and fails b
// unless every one succeeds.
func (s *peerServer) run(b *testing.B, bodies [][]byte, streams int) loadgen.Result {
	b.Helper()
	c, err := loadgen.NewClient(loadgen.Config{URL: s.base + "/v1/completions", Bodies: bodies, Concurrency: streams,
		Requests: len(bodies), Timeout: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	res := c.Run(context.Background())
	if res.OK != len(bodies) {
		b.Fatalf("%s: %d of %d requests answered: %v", s.name, res.OK, len(bodies), res.Errors)
	}
	return res
}

// warmUp sends a short completion until one succeeds (a server may say it is healthy
// while its model still loads), for at most 5 minutes.
func (s *peerServer) warmUp(b *testing.B) {
	b.Helper()
	c, err := loadgen.NewClient(loadgen.Config{URL: s.base + "/v1/completions",
		Bodies: completionBodies(-1, peerCell{streams: 1, gen: 8, prompt: 16}, 0), Requests: 1, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Minute); ; {
		res := c.Run(context.Background())
		if res.OK == 1 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: no completion within 5 minutes: %v", s.name, res.Errors)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startPeerServer starts bin with args and env on port, waits until path answers 200
// and stops the process when b ends. Its output goes to a file kept on failure.
func startPeerServer(b *testing.B, name, bin string, port int, path string, args []string, env ...string) *peerServer {
	b.Helper()
	logPath := filepath.Join(b.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = b.TempDir() // whatever it writes (HXP's data directory) stays out of the tree
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	})
	s := &peerServer{name: name, base: "http://127.0.0.1:" + strconv.Itoa(port)}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if resp, err := http.Get(s.base + path); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			b.Fatalf("%s exited before it was ready (%v):\n%s", name, exitErr, tail(out, 2000))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not ready at %s after 5 minutes", name, s.base+path)
		}
	}
}

// hxpBinary returns HXP_BIN, or builds cmd/hxp from this tree into a temporary
// directory (with the caller's cgo flags: run it under `eval "$(make -s env)"`).
func hxpBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("HXP_BIN"); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), "hxp")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/hxp")
	cmd.Dir = ".."
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building hxp: %v\n%s", err, msg)
	}
	return out
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}
