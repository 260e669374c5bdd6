# HXP build. Every go command goes through these variables so the cgo build cache
# (llama.cpp + ggml take ~2 min cold on 2 cores) is shared between build, test and bench.
SHELL := /bin/bash
GO ?= go
OLLAMA_DIR := $(shell $(GO) list -m -f '{{.Dir}}' github.com/ollama/ollama 2>/dev/null)

# Native ISA without AMX: ggml-cpu would reference AMX kernels the cgo packages do not build.
ARCH_FLAGS ?= -O3 -march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CGO_ENABLED := 1
export CGO_CFLAGS := $(ARCH_FLAGS)
export CGO_CXXFLAGS := $(ARCH_FLAGS)
export CGO_CPPFLAGS := -I$(OLLAMA_DIR)/llama/llama.cpp/include -I$(OLLAMA_DIR)/ml/backend/ggml/ggml/include

BIN := bin/hxp
MODELS := models
CONFIG ?= configs/dev.yaml

.PHONY: all build run test test-short bench clean env deps fmt vet

all: build

deps:
	@test -n "$(OLLAMA_DIR)" || $(GO) mod download github.com/ollama/ollama

build: deps
	$(GO) build -o $(BIN) ./cmd/hxp

# Prints the environment the Makefile uses, for `eval $$(make -s env)` in a shell.
env:
	@echo export CGO_ENABLED=1
	@echo export CGO_CFLAGS=\"$(CGO_CFLAGS)\"
	@echo export CGO_CXXFLAGS=\"$(CGO_CXXFLAGS)\"
	@echo export CGO_CPPFLAGS=\"$(CGO_CPPFLAGS)\"

clean:
	rm -rf bin $(MODELS)/*.gguf
