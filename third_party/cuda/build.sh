#!/usr/bin/env bash
# Builds ggml's CUDA backend as a loadable library for HXP:
#   bin/libggml-cuda.so        the backend (hxp loads it with ggml_backend_load)
#   bin/libhxp-ggml-base.so.0  the ggml core that libggml-cuda.so links to (found via $ORIGIN)
#   bin/libggml-cuda.buildinfo what it was built from (module version, CUDA, architectures)
# from the ggml sources inside the Go module github.com/ollama/ollama, the same sources
# that cgo compiles into bin/hxp. Normally run through `make cuda`; see docs/cuda.md.
#
# Environment:
#   CUDA_ARCHS          CUDA architectures, ';' or ',' separated (default 80;86;89;90;
#                       H100/H200 = 90, A100 = 80, L4/L40/RTX 40xx = 89; "native" = this host's GPUs)
#   CUDACXX             nvcc to use (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc)
#   CUDA_STATIC_CUDART  1 (default): link cudart statically; 0: use libcudart.so at run time
#   JOBS                parallel compile jobs (default: number of CPUs)
#   GO                  go command (default: go)
#   HXP_CUDA_BUILD_DIR  CMake build folder (default: third_party/cuda/build, git-ignored)
#   HXP_CUDA_OUT_DIR    where the libraries go (default: bin, next to bin/hxp)
#   HXP_GGML_DIR        a copied ggml tree (src/, include/, cmake/) to build from instead
#                       of the Go module's; then Go is not needed (the GPU kit, docs/cuda.md)
#   HXP_GGML_VERSION    the ollama module version that tree came from (for the build folder
#                       and .buildinfo; with HXP_GGML_DIR)
#
# Options:
#   --clean       remove the CMake build folder first (a full rebuild: tens of minutes)
#   --glue-check  build a loadable CPU backend instead of CUDA (needs no nvcc) to check
#                 this glue on any machine; leaves it in the build folder, not in bin/
#   --configure-only  stop after the CMake configure step (checks the tools and the tree)
#   -h, --help    this text
set -euo pipefail

die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
step_no=0
step() { step_no=$((step_no + 1)); printf '==> [%d/5] %s\n' "$step_no" "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'build.sh: warning: %s\n' "$*" >&2; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

clean=0
backend=cuda
configure_only=0
for arg in "$@"; do
    case "$arg" in
        --clean) clean=1 ;;
        --glue-check) backend=cpu ;;
        --configure-only) configure_only=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -f "$here/CMakeLists.txt" ]] || die "CMakeLists.txt (the build glue) is missing beside $0"
# With HXP_GGML_DIR (the GPU kit) the ggml tree is given and neither Go nor the
# repository is needed; otherwise the tree comes from the Go module of this repository.
HXP_GGML_DIR=${HXP_GGML_DIR:-}
if [[ -z "$HXP_GGML_DIR" ]]; then
    root=$(cd "$here/../.." && pwd)
    cd "$root"
    [[ -f go.mod ]] || die "cannot find the HXP repository root (no go.mod in $root); set HXP_GGML_DIR to build from a copied ggml tree"
else
    root=$(cd "$here/.." && pwd)
fi

GO=${GO:-go}
CUDA_ARCHS=${CUDA_ARCHS:-80;86;89;90}
CUDA_STATIC_CUDART=${CUDA_STATIC_CUDART:-1}
JOBS=${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
build_root=${HXP_CUDA_BUILD_DIR:-$here/build}
out_dir=${HXP_CUDA_OUT_DIR:-$root/bin}
base_name=hxp-ggml-base   # must match HXP_GGML_BASE_NAME's default in CMakeLists.txt
min_cmake=3.21

version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

# ---------------------------------------------------------------------------------------
step "checking the tools"

if [[ -z "$HXP_GGML_DIR" ]]; then
    command -v "$GO" >/dev/null 2>&1 || die "'$GO' not found: install Go (see go.mod for the version) or set GO=/path/to/go"
fi

command -v cmake >/dev/null 2>&1 || die "cmake not found: install CMake >= $min_cmake (apt-get install cmake, or pip install cmake)"
cmake_version=$(cmake --version | sed -n '1s/^cmake version \([0-9][0-9.]*\).*/\1/p')
[[ -n "$cmake_version" ]] || die "cannot read the CMake version from 'cmake --version'"
version_ge "$cmake_version" "$min_cmake" || die "CMake $cmake_version is too old: $min_cmake or newer is needed (pip install cmake gives a current one)"
info "cmake $cmake_version"

cxx=${CXX:-$(command -v c++ || command -v g++ || true)}
[[ -n "$cxx" ]] || die "no C++ compiler found: install g++ (apt-get install g++) or set CXX"
info "c++ $cxx"

case "$CUDA_ARCHS" in
    *[!0-9a-z\;,\ -]*) die "CUDA_ARCHS='$CUDA_ARCHS' has characters other than digits, letters, '-', ',' and ';' (example: CUDA_ARCHS=80,90)" ;;
esac
archs=$(printf '%s' "$CUDA_ARCHS" | tr ', ' ';;' | tr -s ';' | sed -e 's/^;//' -e 's/;$//')
[[ -n "$archs" ]] || die "CUDA_ARCHS is empty (example: CUDA_ARCHS=90 for H100/H200)"

nvcc="" cuda_version=""
if [[ "$backend" == cuda ]]; then
    nvcc=${CUDACXX:-$(command -v nvcc || true)}
    if [[ -z "$nvcc" && -x /usr/local/cuda/bin/nvcc ]]; then
        nvcc=/usr/local/cuda/bin/nvcc
    fi
    if [[ -z "$nvcc" || ! -x "$nvcc" ]]; then
        die "nvcc (the CUDA compiler) not found${CUDACXX:+ at CUDACXX=$CUDACXX}.
    install the CUDA toolkit 12.x: https://developer.nvidia.com/cuda-downloads
    (or build in an nvidia/cuda:12.x-devel image: make docker-cuda), then put its bin/
    folder on PATH or set CUDACXX=/path/to/nvcc. CMake >= $min_cmake and g++ are needed too.
    HXP itself builds and runs without CUDA: plain 'make build' is the CPU build."
    fi
    cuda_version=$("$nvcc" --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n1)
    [[ -n "$cuda_version" ]] || die "cannot read the CUDA version from '$nvcc --version'"
    version_ge "$cuda_version" 12.0 || die "CUDA $cuda_version found at $nvcc; this build needs the CUDA toolkit 12.x or newer (https://developer.nvidia.com/cuda-downloads)"
    info "nvcc $nvcc (CUDA $cuda_version)"
    if [[ "$archs" == *native* ]]; then
        version_ge "$cmake_version" 3.24 || die "CUDA_ARCHS=native needs CMake >= 3.24 (found $cmake_version); name the architectures instead, e.g. CUDA_ARCHS=90"
    fi
    info "CUDA architectures: $archs"
fi

# ---------------------------------------------------------------------------------------
step "locating ggml in the github.com/ollama/ollama module"

if [[ -n "$HXP_GGML_DIR" ]]; then
    ggml_dir=$(cd "$HXP_GGML_DIR" 2>/dev/null && pwd) || die "HXP_GGML_DIR=$HXP_GGML_DIR is not a folder"
    module_version=${HXP_GGML_VERSION:-unknown}
    [[ "$module_version" =~ ^[A-Za-z0-9._+-]+$ ]] || die "HXP_GGML_VERSION='$module_version' is not a module version (example: v0.17.4)"
else
module_field() { "$GO" list -m -f "$1" github.com/ollama/ollama 2>/dev/null || true; }
module_dir=$(module_field '{{.Dir}}')
if [[ -z "$module_dir" ]]; then
    info "module not in the module cache yet: go mod download github.com/ollama/ollama"
    "$GO" mod download github.com/ollama/ollama || die "'$GO mod download github.com/ollama/ollama' failed"
    module_dir=$(module_field '{{.Dir}}')
fi
module_version=$(module_field '{{.Version}}')
[[ -n "$module_dir" && -n "$module_version" ]] || die "'$GO list -m github.com/ollama/ollama' found no module: is it still required in go.mod?"
ggml_dir=$module_dir/ml/backend/ggml/ggml
fi
[[ -f "$ggml_dir/src/CMakeLists.txt" ]] || die "$ggml_dir/src/CMakeLists.txt not found: github.com/ollama/ollama $module_version does not carry ggml where this script expects it"
if [[ "$backend" == cuda ]]; then
    [[ -f "$ggml_dir/src/ggml-cuda/CMakeLists.txt" ]] || die "$ggml_dir/src/ggml-cuda/CMakeLists.txt not found: this module version has no CUDA backend sources"
fi
info "github.com/ollama/ollama $module_version"
info "ggml: $ggml_dir"

# ---------------------------------------------------------------------------------------
step "configuring (CMake)"

# One folder per module version (and backend), so a version bump never reuses objects
# built from other sources.
build_dir=$build_root/ollama-$module_version-$backend
if [[ $clean == 1 && -d "$build_dir" ]]; then
    info "--clean: removing $build_dir"
    rm -rf "$build_dir"
fi
# A CMake cache made in another place (a copied tree, a Docker context) cannot be reused.
if [[ -f "$build_dir/CMakeCache.txt" ]]; then
    cached=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$build_dir/CMakeCache.txt")
    if [[ "$cached" != "$build_dir" ]]; then
        info "stale CMake cache (made in $cached): starting this build folder afresh"
        rm -rf "$build_dir"
    fi
fi
mkdir -p "$build_dir"

cmake_args=(
    -S "$here"
    -B "$build_dir"
    -DCMAKE_BUILD_TYPE=Release
    -DHXP_GGML_DIR="$ggml_dir"
    -DHXP_GGML_BASE_NAME="$base_name"
    -DGGML_BACKEND_DL=ON
)
if [[ "$backend" == cuda ]]; then
    cmake_args+=(
        -DGGML_CUDA=ON
        -DGGML_CPU=OFF
        -DCMAKE_CUDA_COMPILER="$nvcc"
        -DCMAKE_CUDA_ARCHITECTURES="$archs"
    )
    if [[ "$CUDA_STATIC_CUDART" == 0 ]]; then
        cmake_args+=(-DHXP_CUDA_STATIC_CUDART=OFF)
    else
        cmake_args+=(-DHXP_CUDA_STATIC_CUDART=ON)
    fi
else
    cmake_args+=(-DGGML_CUDA=OFF -DGGML_CPU=ON)
fi
# Ninja when there is one and the folder is new (CMake refuses to switch generators).
if [[ ! -f "$build_dir/CMakeCache.txt" ]] && command -v ninja >/dev/null 2>&1; then
    cmake_args+=(-G Ninja)
fi
cmake "${cmake_args[@]}" || die "CMake configure failed (see the messages above; $build_dir/CMakeFiles/CMakeError.log has details)"
if [[ $configure_only == 1 ]]; then
    printf '==> --configure-only: configured %s in %s (nothing compiled)\n' "ggml-$backend" "$build_dir"
    exit 0
fi

# ---------------------------------------------------------------------------------------
target=ggml-$backend
if [[ "$backend" == cuda ]]; then
    step "compiling $target with $JOBS jobs (a first build takes a long time: every kernel for every architecture)"
else
    step "compiling $target with $JOBS jobs (glue check)"
fi
cmake --build "$build_dir" --target "$target" --parallel "$JOBS" || die "building $target failed (see the compiler messages above)"

lib=$build_dir/lib/lib$target.so
base=$build_dir/lib/lib$base_name.so.0
[[ -f "$lib" ]] || die "the build finished but $lib is missing"
[[ -f "$base" ]] || die "the build finished but $base is missing"

# The library must be a loadable ggml backend that finds its ggml-base beside itself.
if command -v readelf >/dev/null 2>&1; then
    dyn=$(readelf -d "$lib")
    grep -q "Shared library: \[lib$base_name.so.0\]" <<<"$dyn" || die "$lib does not link lib$base_name.so.0"
    # shellcheck disable=SC2016 # a literal $ORIGIN is what we look for
    grep -Eq '(RUNPATH|RPATH).*\[\$ORIGIN\]' <<<"$dyn" || die "$lib has no \$ORIGIN run path: it would not find lib$base_name.so.0 beside it"
    exported=$(readelf --dyn-syms -W "$lib" | awk '$7 != "UND" {print $8}')
    grep -qx ggml_backend_init <<<"$exported" \
        || die "$lib does not export ggml_backend_init: it was not built as a loadable backend (GGML_BACKEND_DL)"
    info "checked: exports ggml_backend_init, links lib$base_name.so.0 through \$ORIGIN"
else
    warn "readelf not found: skipping the checks of the built library"
fi

# ---------------------------------------------------------------------------------------
if [[ "$backend" == cpu ]]; then
    step "glue check done (nothing copied to $out_dir)"
    info "loadable CPU backend: $lib"
    info "its ggml-base:        $base"
    exit 0
fi

step "installing into $out_dir"
mkdir -p "$out_dir"
install_file() { # atomic: a running hxp keeps the file it mapped
    local src=$1 dst=$2
    cp -L "$src" "$dst.tmp.$$"
    chmod 0755 "$dst.tmp.$$"
    mv -f "$dst.tmp.$$" "$dst"
    info "$dst"
}
install_file "$lib" "$out_dir/libggml-cuda.so"
install_file "$base" "$out_dir/lib$base_name.so.0"
static_cudart=unknown
if command -v readelf >/dev/null 2>&1; then
    if readelf -d "$lib" | grep -q 'Shared library: \[libcudart\.so'; then static_cudart=0; else static_cudart=1; fi
fi
cat >"$out_dir/libggml-cuda.buildinfo.tmp.$$" <<EOF
# written by third_party/cuda/build.sh; hxp must be built from the same module version
module=github.com/ollama/ollama $module_version
cuda=$cuda_version
cuda_architectures=$archs
static_cudart=$static_cudart
ggml_base=lib$base_name.so.0
EOF
mv -f "$out_dir/libggml-cuda.buildinfo.tmp.$$" "$out_dir/libggml-cuda.buildinfo"
info "$out_dir/libggml-cuda.buildinfo"

if command -v ldd >/dev/null 2>&1; then
    missing=$(ldd "$out_dir/libggml-cuda.so" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ' || true)
    if [[ -n "$missing" ]]; then
        info "not found on this host at run time: $missing"
        info "(libcuda.so.1 comes with the NVIDIA driver, the others with the CUDA runtime libraries)"
    fi
fi
printf '==> done: bin/hxp loads %s at start-up (HXP_BACKEND_LIB overrides the path; docs/cuda.md)\n' "$out_dir/libggml-cuda.so"
