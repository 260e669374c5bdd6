// Package bench holds HXP's benchmarks: the scheduler against a bare llama_decode
// loop (the ceiling) at several concurrencies, the effect of chunked prefill on
// running streams, HXP side by side with llama.cpp's own server (BenchmarkPeer), and
// (in cmd/hxp) the HTTP load generator. Results and the
// commands that produce them are in README.md beside this file.
//
// Every benchmark reports ratios measured in the same run, interleaving the variants
// it compares, because the machines it runs on are shared and noisy.
package bench
