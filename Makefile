# HXP build. Every go command goes through these variables so the cgo build cache
# (llama.cpp + ggml take ~2 min cold on 2 cores) is shared between build, test and bench.
SHELL := /bin/bash
GO ?= go
# llama.cpp's headers come from the ollama module's sources (see ARCHITECTURE.md). `go mod
# download` fetches the module on a fresh machine and prints where it is; on later runs it
# only reads the module cache.
OLLAMA_DIR := $(shell $(GO) mod download -json github.com/ollama/ollama 2>/dev/null | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$$/\1/p')
ifeq ($(OLLAMA_DIR),)
$(error cannot locate the github.com/ollama/ollama module (llama.cpp sources): run `go mod download` and check the Go proxy settings)
endif

# Native ISA without AMX: ggml-cpu would reference AMX kernels the cgo packages do not build.
ARCH_FLAGS ?= -O3 -march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CGO_ENABLED := 1
# Third-party C sources (go-nvml's deprecated NVML symbols, ggml's repack) warn loudly
# on a first build; the warnings are upstream's and not actionable here.
QUIET_FLAGS := -Wno-deprecated-declarations -Wno-stringop-overflow
export CGO_CFLAGS := $(ARCH_FLAGS) $(QUIET_FLAGS)
export CGO_CXXFLAGS := $(ARCH_FLAGS) $(QUIET_FLAGS)
# ggml's internal headers (src, src/ggml-cpu) are for engine's kernels (kernels.cpp,
# fattn.cpp, qmatmul.cpp), which plug into the CPU backend and must share its structures.
GGML_DIR := $(OLLAMA_DIR)/ml/backend/ggml/ggml
export CGO_CPPFLAGS := -I$(OLLAMA_DIR)/llama/llama.cpp/include -I$(GGML_DIR)/include -I$(GGML_DIR)/src -I$(GGML_DIR)/src/ggml-cpu

BIN := bin/hxp
MODELS := models
CONFIG ?= configs/dev.yaml

.PHONY: all build run test test-short bench bench-peer clean env deps fmt vet

all: build

deps:
	@test -f $(OLLAMA_DIR)/llama/llama.cpp/include/llama.h || { echo "llama.h missing under $(OLLAMA_DIR)" >&2; exit 1; }

build: deps
	$(GO) build -o $(BIN) ./cmd/hxp

# --- run / test / bench (server) ----------------------------------------------------------
DEMO_MODEL := $(MODELS)/demo.gguf
# A count, not a duration: Go 1.26's fuzz coordinator can fail a target with "context
# deadline exceeded" when a duration runs out while a worker is mid-input (golang/go#75804,
# fixed in Go 1.27), which made `make test` fail without any failing input. 200,000 inputs
# take 5-10 s per target on a 2-core VM.
FUZZTIME ?= 200000x
BENCH ?= .
BENCHTIME ?= 3x
BENCH_PKGS ?= ./bench/ ./transport/rest/

# Serves configs/dev.yaml on :8000, generating the demo model on first use.
run: build
	@test -f $(DEMO_MODEL) || { mkdir -p $(MODELS) && $(BIN) models gen --preset demo --out $(DEMO_MODEL); }
	@echo
	@echo "HXP is starting on http://localhost:8000 (Ctrl-C stops it gracefully). In another shell:"
	@echo
	@echo "  curl -s http://localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"max_tokens\":32}'"
	@echo
	$(BIN) serve --config $(CONFIG)

# Installs the integration-test servers when missing, runs every test (the GPU kit's
# dry run included: third_party/cuda), the race detector on the concurrent packages,
# then fuzzes the request decoders briefly.
RACE_PKGS ?= ./sched/ ./service/ ./health/ ./limits/... ./config/ ./chat/ ./internal/testenv/ ./infer/... ./openai/ ./anthropic/ ./responses/... ./route/ ./tenancy/ ./transport/... \
	./app/ ./internal/breaker/ ./connectors/postgres/ ./connectors/redis/ ./discovery/ ./vector/... ./retrieval/... ./bench/loadgen/ ./backup/
FUZZ_TARGETS ?= FuzzDecodeChatRequest FuzzDecodeCompletionRequest FuzzDecodeEmbeddingRequest FuzzPeekModel
test: deps
	@if [ -f scripts/test-deps.sh ]; then bash scripts/test-deps.sh; fi
	$(GO) test ./...
	$(GO) test -race $(RACE_PKGS)
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) ./gguf/
	@for f in $(FUZZ_TARGETS); do \
		echo "$(GO) test -run '^$$' -fuzz '^'$$f'$$' -fuzztime $(FUZZTIME) ./openai/"; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./openai/ || exit 1; \
	done

# Unit and integration tests without the slow ones (no fuzzing, -short).
test-short: deps
	$(GO) test -short ./...

# `make bench BENCH=SchedulerVsBare` runs one benchmark; see bench/README.md.
bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) $(BENCH_PKGS)

# HXP and llama.cpp's own server side by side on the same model (bench/README.md).
# The peer is built once from ../shared/peer (about 12 minutes on 2 cores). On CPUs
# whose AMX kernels fault in the peer, pass PEER_ARGS=--no-repack.
bench-peer: deps
	LLAMA_SERVER=$$(bash ../shared/peer/build-llama-server.sh) $(GO) test -run '^$$' -bench Peer -benchtime 1x -timeout 60m ./bench/

# Prints the environment the Makefile uses, for `eval $$(make -s env)` in a shell.
env:
	@echo export CGO_ENABLED=1
	@echo export CGO_CFLAGS=\"$(CGO_CFLAGS)\"
	@echo export CGO_CXXFLAGS=\"$(CGO_CXXFLAGS)\"
	@echo export CGO_CPPFLAGS=\"$(CGO_CPPFLAGS)\"

clean:
	rm -rf bin $(MODELS)/*.gguf

# Regenerates the gRPC API's Go code (transport/grpc/hxpv1) from proto/ with protoc
# (Debian's protobuf-compiler) and the plugins pinned as tools in go.mod; commit the
# result (a test in transport/grpc fails while it is stale).
.PHONY: proto
proto:
	bash scripts/gen-proto.sh

# Regenerates the GraphQL executor (transport/graphql/generated) from
# transport/graphql/schema.graphql and gqlgen.yml with gqlgen, pinned as a tool in
# go.mod; commit the result (TestGeneratedCodeIsFresh fails while it is stale). Every
# type is bound to package openai, so the empty root models gqlgen writes are removed.
.PHONY: graphql
graphql:
	cd transport/graphql && $(GO) tool gqlgen generate && rm -f models_gen.go

# --- CUDA backend (docs/cuda.md) ---------------------------------------------------------
# `make cuda` builds bin/libggml-cuda.so (and bin/libhxp-ggml-base.so.0, which it links to)
# with CMake and nvcc from the ollama module's ggml sources, then bin/hxp as usual: hxp
# loads the library at run time, so bin/hxp needs no CUDA and no extra link flags.
# `make build GGML_CUDA=1` does the same. CI never runs these targets.
CUDA_ARCHS ?= 80;86;89;90
CUDA_IMAGE ?= hxp:cuda

.PHONY: cuda cuda-lib docker-cuda

cuda-lib: deps
	CUDA_ARCHS='$(CUDA_ARCHS)' GO='$(GO)' bash third_party/cuda/build.sh

cuda: cuda-lib build

ifeq ($(GGML_CUDA),1)
build: cuda-lib
endif

docker-cuda:
	docker build -f Dockerfile.cuda --build-arg CUDA_ARCHS='$(CUDA_ARCHS)' -t $(CUDA_IMAGE) .

# --- GPU verification kit (docs/cuda.md, "The GPU kit") ---------------------------------
# `make gpu-kit` writes $(GPU_KIT)/ (git-ignored, under 64 MiB) for a GPU host without Go
# or network: bin/hxp built for any x86-64-v3 CPU (not -march=native: the GPU host's CPU
# is another), the GPU-gated test binaries, the ggml sources and scripts that build
# libggml-cuda.so there, and run.sh. `make gpu-kit-dry-run` runs its steps here without
# CUDA (third_party/cuda's TestGPUKitDryRun does the same and checks the report).
GPU_KIT ?= gpu-kit
GPU_KIT_ARCH_FLAGS ?= -O3 -march=x86-64-v3

.PHONY: gpu-kit gpu-kit-dry-run

gpu-kit: deps
	GO='$(GO)' OLLAMA_DIR='$(OLLAMA_DIR)' GPU_KIT='$(GPU_KIT)' \
	CGO_CFLAGS='$(GPU_KIT_ARCH_FLAGS) $(QUIET_FLAGS)' CGO_CXXFLAGS='$(GPU_KIT_ARCH_FLAGS) $(QUIET_FLAGS)' \
	bash third_party/cuda/gpu-kit.sh

gpu-kit-dry-run: gpu-kit
	@out=$$(mktemp -d /tmp/hxp-gpu-kit-out.XXXXXX); $(GPU_KIT)/run.sh $$out --dry-run; rc=$$?; \
	cat $$out/report.md; echo "report and log: $$out"; exit $$rc
