#!/usr/bin/env bash
# Generates the Go code of proto/ (messages and gRPC service stubs) under OUT_DIR
# (default: the repository root, which rewrites transport/grpc/hxpv1). protoc comes
# from Debian's protobuf-compiler (scripts/test-deps.sh installs it); the plugins are
# the Go tools pinned in go.mod (protoc-gen-go, protoc-gen-go-grpc), so every machine
# generates the same code. The staleness test (transport/grpc) runs it into a
# temporary directory and compares.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
module=github.com/hxp-ai/hxp

command -v protoc >/dev/null 2>&1 || { echo "gen-proto: protoc not found: apt-get install protobuf-compiler (or bash scripts/test-deps.sh)" >&2; exit 1; }
cd "$root"
go_plugin=$(go tool -n protoc-gen-go)
grpc_plugin=$(go tool -n protoc-gen-go-grpc)
mkdir -p "$out"
protoc -I proto \
	--plugin=protoc-gen-go="$go_plugin" --go_out="$out" --go_opt=module="$module" \
	--plugin=protoc-gen-go-grpc="$grpc_plugin" --go-grpc_out="$out" --go-grpc_opt=module="$module" \
	proto/hxp/v1/inference.proto
