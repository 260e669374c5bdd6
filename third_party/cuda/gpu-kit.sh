#!/usr/bin/env bash
# Assembles the GPU verification kit (`make gpu-kit`; docs/cuda.md, "The GPU kit"): a
# folder that a GPU host without Go or network can run in one go.
#
#   KIT/bin/hxp.gz         the normal CPU build of hxp (portable -march, see below),
#                          gzipped (run.sh unpacks it); it loads KIT/bin/libggml-cuda.so
#                          once run.sh has built it
#   KIT/bin/*.test.gz      the Go test binaries of the packages whose tests HXP_TEST_GPU
#                          gates, and KIT/gpu-tests.txt: "bin/PKG.test REGEX" per package
#   KIT/ggml/              the ggml sources the CUDA backend build reads (copied from the
#                          github.com/ollama/ollama module, no Go files), VERSION, LICENSE
#   KIT/cuda/              build.sh and CMakeLists.txt (this folder's), bandwidth.cu
#   KIT/run.sh             the steps and the report (kit/run.sh here)
#
# Environment (the Makefile sets them): GO, OLLAMA_DIR (the module folder), GPU_KIT (the
# kit folder, default gpu-kit), and CGO_CFLAGS/CGO_CXXFLAGS for the kit's hxp: the GPU
# host's CPU is not this one, so the Makefile passes -march=x86-64-v3, not -march=native.
# GPU_KIT_MAX_MIB (default 60) is the size the kit must stay under: the device tool
# carries at most 64 MiB.
set -euo pipefail

die() { printf 'gpu-kit.sh: error: %s\n' "$*" >&2; exit 1; }
info() { printf '    %s\n' "$*"; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
GO=${GO:-go}
kit=${GPU_KIT:-gpu-kit}
max_mib=${GPU_KIT_MAX_MIB:-60}
[[ -n "${OLLAMA_DIR:-}" && -d "${OLLAMA_DIR:-}" ]] || die "OLLAMA_DIR='${OLLAMA_DIR:-}' is not the github.com/ollama/ollama module folder: run this through 'make gpu-kit'"
ggml_src=$OLLAMA_DIR/ml/backend/ggml/ggml
[[ -f "$ggml_src/src/ggml-cuda/CMakeLists.txt" ]] || die "$ggml_src has no src/ggml-cuda: this ollama module version carries no CUDA backend"
module_version=$("$GO" list -m -f '{{.Version}}' github.com/ollama/ollama) || die "'$GO list -m github.com/ollama/ollama' failed"
case "$kit" in /*|"") ;; *) kit=$root/$kit ;; esac
[[ "$kit" != "$root" && "$kit" != / ]] || die "GPU_KIT=$kit would replace the repository"

echo "==> assembling $kit"
rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/cuda" "$kit/ggml/src"

echo "==> bin/hxp (CGO_CFLAGS=${CGO_CFLAGS:-})"
version=$(git describe --always --dirty 2>/dev/null || echo dev)
"$GO" build -trimpath -ldflags "-s -w -X main.Version=$version-gpu-kit" -o "$kit/bin/hxp" ./cmd/hxp

echo "==> test binaries of the tests HXP_TEST_GPU gates"
: >"$kit/gpu-tests.txt"
while IFS= read -r dir; do
    pkg=$(basename "$dir")
    tests=$(grep -l 'HXP_TEST_GPU' "$dir"/*_test.go | xargs sed -n 's/^func \(Test[A-Za-z0-9_]*\)(t \*testing\.T).*/\1/p' | sort -u | paste -sd '|' -)
    [[ -n "$tests" ]] || continue
    "$GO" test -c -trimpath -ldflags '-s -w' -o "$kit/bin/$pkg.test" "./$dir"
    echo "bin/$pkg.test ^($tests)\$" >>"$kit/gpu-tests.txt"
    info "bin/$pkg.test: $tests"
done < <(grep -rl --include='*_test.go' 'HXP_TEST_GPU' . | grep -v "^\./$(basename "$kit")/" | xargs -n1 dirname | sed 's|^\./||' | sort -u)
[[ -s "$kit/gpu-tests.txt" ]] || die "no test reads HXP_TEST_GPU: nothing for the kit's gpu-tests step"

echo "==> ggml sources ($module_version)"
# What the CUDA build reads: the top-level src/ files, src/ggml-cuda/, include/, cmake/;
# src/ggml-cpu/ too, for the dry run's CMake configure check (build.sh --glue-check).
cp "$ggml_src/LICENSE" "$kit/ggml/"
cp -R "$ggml_src/include" "$ggml_src/cmake" "$kit/ggml/"
find "$ggml_src/src" -maxdepth 1 -type f ! -name '*.go' -exec cp {} "$kit/ggml/src/" \;
cp -R "$ggml_src/src/ggml-cuda" "$ggml_src/src/ggml-cpu" "$kit/ggml/src/"
find "$kit/ggml" -name '*.go' -delete # the kit must hold no Go package (go test ./...)
chmod -R u+w "$kit/ggml"            # module files are read-only
echo "$module_version" >"$kit/ggml/VERSION"
cp "$OLLAMA_DIR/LICENSE" "$kit/ggml/LICENSE.ollama"

echo "==> scripts"
cp "$here/build.sh" "$here/CMakeLists.txt" "$here/kit/bandwidth.cu" "$kit/cuda/"
cp "$here/kit/run.sh" "$kit/run.sh"
chmod +x "$kit/run.sh" "$kit/cuda/build.sh"
echo "$version, ollama $module_version, built $(date -u +%Y-%m-%dT%H:%MZ)" >"$kit/KIT_VERSION"

# gzip: the binaries are most of the kit and shrink to about a third.
gzip -6 "$kit/bin/hxp" "$kit"/bin/*.test

size=$(du -sk "$kit" | cut -f1)
for p in bin/hxp.gz bin/*.test.gz ggml; do
    info "$(du -sh "$kit"/$p | sed "s|$kit/||")"
done
info "total $((size / 1024)) MiB (limit $max_mib MiB)"
((size <= max_mib * 1024)) || die "the kit is $((size / 1024)) MiB, over $max_mib MiB: the device tool carries at most 64 MiB"
echo "==> done: $kit/run.sh OUT_DIR [--dry-run]"
