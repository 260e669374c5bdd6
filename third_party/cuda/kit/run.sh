#!/usr/bin/env bash
# HXP GPU verification kit (docs/cuda.md, "The GPU kit"). Built by `make gpu-kit`; runs
# on a GPU host that has nvcc, CMake and a C++ compiler but no Go and no network:
#
#   gpu-kit/run.sh OUT_DIR [--dry-run]
#
# Writes OUT_DIR/report.md (the figures, rewritten after every step, so it holds
# whatever finished) and OUT_DIR/run.log (every command's output). Steps: the machine,
# the CUDA backend build (timed), hxp version, the GPU-gated Go tests, the copy
# bandwidth, the test models (generated here by bin/hxp, during the build), the memory
# plan of the four seed-shaped models against what loading them together measures,
# NVML telemetry read by HXP against nvidia-smi, hxp bench through hxp serve at 1 to 64
# streams, and the bare decode loop on the same model. Each step has its own time limit
# (timeout) and the whole run its budget (HXP_KIT_BUDGET seconds, default 540).
#
# --dry-run (any machine, no GPU): small models, and the steps that need CUDA say
# "skipped: no CUDA"; everything else runs, so the kit and its report are checked.
#
# Environment: HXP_KIT_BUDGET (seconds, default 540), HXP_KIT_WORK (scratch folder for
# models and builds, default a new folder under /tmp), CUDA_ARCHS (default 90).
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

out="" dry=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "run.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
        *) [[ -z "$out" ]] || { echo "run.sh: one OUT_DIR only (got '$out' and '$arg')" >&2; exit 2; }; out=$arg ;;
    esac
done
[[ -n "$out" ]] || { echo "run.sh: OUT_DIR is required (usage: run.sh OUT_DIR [--dry-run])" >&2; exit 2; }

kit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
work=${HXP_KIT_WORK:-$(mktemp -d /tmp/hxp-gpu-kit.XXXXXX)}
mkdir -p "$work/sections" "$work/models" || exit 1
budget=${HXP_KIT_BUDGET:-540}
[[ "$budget" =~ ^[0-9]+$ ]] || { echo "run.sh: HXP_KIT_BUDGET='$budget' is not a number of seconds" >&2; exit 2; }
reserve=10 # seconds kept for the final report
report=$out/report.md
log=$out/run.log
: >"$log"
started=$SECONDS
export kit work dry hxp="$kit/bin/hxp" models="$work/models" sections="$work/sections"
export CUDA_ARCHS=${CUDA_ARCHS:-90}

say() { printf '%s %s\n' "$(date +%T)" "$*" >>"$log"; }

# --- the step runner ---------------------------------------------------------------------
# A step is a function run under `timeout` in its own bash (so that it and everything
# it started end at its limit). It writes its Markdown to "$sections/$name.md" and
# exits 0 (ok), 3 (skipped: the reason is the first line of "$sections/$name.skip") or
# anything else (failed).
steps=()
declare -A status seconds

limit_for() { # LIMIT -> the limit clipped to what is left of the budget
    local left=$((budget - (SECONDS - started) - reserve))
    ((left < $1)) && echo "$left" || echo "$1"
}

record() { # NAME RC LIMIT T0
    local name=$1 rc=$2 limit=$3
    seconds[$name]=$((SECONDS - $4))
    case $rc in
        0) status[$name]=ok ;;
        3) status[$name]="skipped: $(head -n1 "$sections/$name.skip" 2>/dev/null || echo 'no reason given')" ;;
        124|137) status[$name]="timed out after ${limit}s" ;;
        *) status[$name]="failed (exit $rc; see run.log)" ;;
    esac
    say "<== $name: ${status[$name]} (${seconds[$name]}s)"
    write_report
}

run_step() { # NAME LIMIT FUNCTION
    local name=$1 limit fn=$3 t0=$SECONDS rc
    limit=$(limit_for "$2")
    steps+=("$name")
    if ((limit < 5)); then
        status[$name]="not run: the ${budget}s budget was spent"; seconds[$name]=0
        write_report; return
    fi
    say "==> $name (limit ${limit}s)"
    timeout -k 5 "$limit" bash -c "$fn" >>"$log" 2>&1
    rc=$?
    record "$name" "$rc" "$limit" "$t0"
}

# run_async starts a step in the background (the models, during the build); wait_step
# collects it where it belongs in the report.
declare -A async_pid async_t0 async_limit
run_async() { # NAME LIMIT FUNCTION
    local name=$1 limit fn=$3
    limit=$(limit_for "$2")
    say "==> $name in the background (limit ${limit}s)"
    async_t0[$name]=$SECONDS
    async_limit[$name]=$limit
    timeout -k 5 "$limit" nice -n 10 bash -c "$fn" >>"$log" 2>&1 &
    async_pid[$name]=$!
}
wait_step() { # NAME
    local name=$1 rc
    steps+=("$name")
    wait "${async_pid[$name]}"
    rc=$?
    record "$name" "$rc" "${async_limit[$name]}" "${async_t0[$name]}"
}

write_report() {
    {
        echo "# HXP GPU kit report"
        echo
        if ((dry)); then echo "Mode: **dry run** (no CUDA: small models, CUDA steps skipped)."; else echo "Mode: GPU run."; fi
        echo "Written $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), $((SECONDS - started))s into a ${budget}s budget; kit: $(cat "$kit/KIT_VERSION" 2>/dev/null)."
        echo
        echo "| step | status | seconds |"
        echo "| --- | --- | ---: |"
        local s
        for s in "${steps[@]}"; do echo "| $s | ${status[$s]:-running} | ${seconds[$s]:-} |"; done
        for s in "${steps[@]}"; do
            if [[ -s "$sections/$s.md" ]]; then
                echo
                echo "## $s"
                echo
                cat "$sections/$s.md"
            fi
        done
    } >"$report.tmp" && mv -f "$report.tmp" "$report"
}

# --- helpers the steps use ---------------------------------------------------------------
skip() { # REASON: record why the step is skipped and exit 3
    echo "$*" >"$sections/$STEP.skip"
    exit 3
}
no_cuda() { ((dry)) && skip "no CUDA (dry run)${1:+; $1}"; return 0; }
section() { cat >>"$sections/$STEP.md"; }
code() { { echo '```'; cat; echo '```'; } | section; }

# http_get PORT PATH: the body of a 200 answer on stdout (bash's /dev/tcp: no curl needed).
http_get() {
    local resp
    exec 5<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&5
    resp=$(cat <&5)
    exec 5<&- 5>&-
    [[ "${resp%%$'\r'*}" == *" 200 "* ]] || return 1
    printf '%s\n' "${resp#*$'\r\n\r\n'}"
}
export -f skip no_cuda section code http_get say
export log

# --- the steps -------------------------------------------------------------------------
step_machine() {
    STEP=machine
    {
        for c in "nvidia-smi -L" "nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm --format=csv" \
            "nvcc --version" "cmake --version" "ninja --version" "c++ --version" "nproc" "free -g" "uname -srm"; do
            echo "\$ $c"
            if command -v "${c%% *}" >/dev/null 2>&1; then $c 2>&1 | grep -v '^$' | head -n 6; else echo "(not found)"; fi
        done
    } | code
}

step_build() {
    STEP=build
    local v
    v=$(cat "$kit/ggml/VERSION")
    if ((dry)); then
        if command -v cmake >/dev/null 2>&1; then
            HXP_GGML_DIR=$kit/ggml HXP_GGML_VERSION=$v HXP_CUDA_BUILD_DIR=$work/cuda-build \
                bash "$kit/cuda/build.sh" --glue-check --configure-only || exit 1
            skip "no CUDA (dry run); the kit's ggml tree configured with CMake (CPU glue check, nothing compiled)"
        fi
        skip "no CUDA (dry run); cmake not found, so the kit's ggml tree was not configured"
    fi
    if [[ -f "$kit/bin/libggml-cuda.so" ]]; then
        echo "bin/libggml-cuda.so was already in the kit: not rebuilt" | section
    else
        local t0=$SECONDS
        HXP_GGML_DIR=$kit/ggml HXP_GGML_VERSION=$v HXP_CUDA_BUILD_DIR=$work/cuda-build HXP_CUDA_OUT_DIR=$kit/bin \
            JOBS=$(nproc) bash "$kit/cuda/build.sh" || exit 1
        echo "libggml-cuda.so built in $((SECONDS - t0)) s with $(nproc) jobs (CUDA_ARCHS=$CUDA_ARCHS)" | section
    fi
    {
        cat "$kit/bin/libggml-cuda.buildinfo"
        ls -l "$kit/bin/libggml-cuda.so" "$kit/bin/libhxp-ggml-base.so.0"
        ldd "$kit/bin/libggml-cuda.so"
    } 2>&1 | code
}

step_version() {
    STEP=version
    local v
    v=$("$hxp" version 2>&1)
    local rc=$?
    code <<<"$v"
    ((rc == 0)) || exit 1
    no_cuda "hxp version ran, CPU only"
    grep -q '^device: .*, gpu,' <<<"$v" || { echo "**no CUDA device listed**" | section; exit 1; }
}

step_gpu_tests() {
    STEP=gpu-tests
    local bin regex rc=0 ran=""
    while read -r bin regex; do
        [[ -n "$bin" ]] || continue
        echo "\$ HXP_TEST_GPU=$((dry ? 0 : 1)) $bin -test.v -test.run '$regex'" | section
        if ((dry)); then
            (cd "$work" && "$kit/$bin" -test.v -test.run "$regex") 2>&1 | tail -n 20 | code || rc=1
        else
            (cd "$work" && HXP_TEST_GPU=1 "$kit/$bin" -test.v -test.run "$regex") 2>&1 | tail -n 20 | code
            rc=$((rc | PIPESTATUS[0]))
        fi
        ran+=" $bin"
    done <"$kit/gpu-tests.txt"
    [[ -n "$ran" ]] || { echo "no test is gated by HXP_TEST_GPU" | section; exit 1; }
    ((rc == 0)) || exit 1
    no_cuda "the test binaries ran and skipped their GPU tests"
}

step_bandwidth() {
    STEP=bandwidth
    no_cuda
    nvcc -O2 -arch="sm_${CUDA_ARCHS%%;*}" -o "$work/bandwidth" "$kit/cuda/bandwidth.cu" || exit 1
    "$work/bandwidth" | tee "$work/bandwidth.txt" | code
    grep -q '^copy_bandwidth_gbps=' "$work/bandwidth.txt" || exit 1
}

# gen NAME PRESET [flags]: one model into $models/NAME.gguf, with its time in the table.
gen() {
    local name=$1 preset=$2 t0=$SECONDS
    shift 2
    "$hxp" models gen --preset "$preset" --out "$models/$name.gguf" "$@" || return 1
    echo "| $name | $preset $* | $(du -h "$models/$name.gguf" | cut -f1) | $((SECONDS - t0)) |" | section
}
export -f gen

step_models() {
    STEP=models
    printf '| model | preset and flags | size | seconds |\n| --- | --- | ---: | ---: |\n' | section
    if ((dry)); then
        for n in phi3 mixtral hermes openchat bench; do gen "$n" tiny --seed "${#n}" || exit 1; done
        echo -e "\nDry run: every model is the tiny preset." | section
        return
    fi
    # Phi-3-mini at full size (tokens/s); the others with fewer layers: the plan against
    # the measured memory needs their shape, not their size.
    gen phi3 phi3 --quant q4_0 || exit 1
    gen mixtral mixtral --layers 2 --quant q4_0 || exit 1
    gen hermes mistral --layers 8 --quant q4_0 || exit 1
    gen openchat mistral --layers 8 --seed 7 --quant q4_0 || exit 1
    gen bench bench --quant q8_0 || exit 1
}

# model_yaml NAME PARALLEL CTX LIMIT_GB CORES [KV]: one models: entry (served by the
# gateway only: no port of its own).
model_yaml() {
    cat <<EOF
  - name: $1
    path: $models/$1.gguf
    memory_limit_gb: $4
    cpu_cores: $5
    parallel: $2
    ctx_per_seq: $3
    batch: 512
    gpu_layers: -1
    flash_attention: true
    kv_type: ${6:-f16}
    queue_size: 256
EOF
}
export -f model_yaml

step_plan_check() {
    STEP=plan-check
    {
        printf 'listen: "127.0.0.1:18100"\nlog:\n  level: warn\n  format: console\nmodels:\n'
        # The seed config's slots and contexts (configs/hxp-enterprise.yaml); limits fit
        # the generated sizes, and the cores are shared out (config check: their sum
        # must not exceed the host's). The dry run keeps them small, and on a host with
        # fewer than 4 cores loads only as many models as it has cores.
        local cores=$(($(nproc) >= 8 ? $(nproc) / 4 : 1)) m
        if ((dry)); then
            for m in mixtral hermes openchat phi3; do
                (($(nproc) >= 4)) || [[ $m == mixtral || $m == phi3 ]] || continue
                model_yaml "$m" 2 256 1 1
            done
        else
            model_yaml mixtral 8 8192 90 "$cores" q8_0
            model_yaml hermes 8 4096 15 "$cores"
            model_yaml openchat 8 4096 15 "$cores"
            model_yaml phi3 8 4096 24 "$cores"
        fi
    } >"$work/four.yaml"
    "$hxp" plan-check --config "$work/four.yaml" --gen-tokens 4 >"$work/plan-check.md"
    local rc=$?
    section <"$work/plan-check.md"
    ((rc == 0)) || exit 1
    no_cuda "the plan and the loads ran on the CPU"
}

step_serve_bench() {
    STEP=serve-bench
    local port=18200 streams="1 4 16 64" parallel=64 ctx=512 cores=4
    ((dry)) && streams="1 4" parallel=4 ctx=256 cores=1
    {
        printf 'listen: "127.0.0.1:%d"\nlog:\n  level: info\n  format: console\nmodels:\n' "$port"
        model_yaml phi3 "$parallel" "$ctx" 40 "$cores"
    } >"$work/phi3.yaml"
    "$hxp" serve --config "$work/phi3.yaml" >"$work/serve.log" 2>&1 &
    local pid=$!
    trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
    local i
    for ((i = 0; i < 240; i++)); do
        http_get "$port" /health/ready >/dev/null && break
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/serve.log" | code; exit 1; }
        sleep 0.5
    done
    http_get "$port" /health/ready >/dev/null || { echo "hxp serve was not ready after 120 s" | section; tail -n 30 "$work/serve.log" | code; exit 1; }
    grep -E 'memory plan|offloaded|CUDA0|model ready' "$work/serve.log" | cut -c1-300 | head -n 12 | code

    # NVML telemetry: HXP's /metrics (its NVML collector) against nvidia-smi, read together.
    local metrics smi
    metrics=$(http_get "$port" /metrics | grep '^hxp_gpu_')
    smi=$(nvidia-smi --query-gpu=memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw --format=csv,noheader,nounits 2>/dev/null | head -n1)
    {
        echo "### NVML telemetry: HXP (/metrics) and nvidia-smi, read together"
        echo
        echo "| reading | HXP | nvidia-smi |"
        echo "| --- | ---: | ---: |"
        IFS=', ' read -r su st sg stc sp <<<"${smi:-- - - - -}"
        # The value is the last field (the name label may hold spaces); "-" when absent.
        mval() { awk -v m="$1" 'index($0, m"{") == 1 {v = $NF} END {print (v == "" ? "-" : v)}' <<<"$metrics"; }
        mib() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.0f", v / 1048576 }'; }
        echo "| memory used (MiB) | $(mib "$(mval hxp_gpu_memory_used_bytes)") | $su |"
        echo "| memory total (MiB) | $(mib "$(mval hxp_gpu_memory_total_bytes)") | $st |"
        echo "| utilization (%) | $(awk -v v="$(mval hxp_gpu_utilization_ratio)" 'BEGIN { if (v == "-") print "-"; else printf "%.0f", v * 100 }') | $sg |"
        echo "| temperature (C) | $(mval hxp_gpu_temperature_celsius) | $stc |"
        echo "| power (W) | $(mval hxp_gpu_power_watts) | $sp |"
        echo
        [[ -n "$smi" ]] || echo "nvidia-smi: not found (the HXP column is the CPU fallback's reading)"
        echo
        echo "### hxp bench (completions, 64 tokens per request, streamed) through hxp serve"
        echo
        echo "| streams | requests ok | tok/s | TTFT p50 | ITL p50 | ITL p99 |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
    } | section
    "$hxp" bench --url "http://127.0.0.1:$port" --endpoint completions --model phi3 --requests 1 --max-tokens 8 >/dev/null || exit 1
    local n rc=0
    for n in $streams; do
        "$hxp" bench --url "http://127.0.0.1:$port" --endpoint completions --model phi3 \
            --concurrency "$n" --requests $((2 * n)) --max-tokens 64 --timeout 60s >"$work/bench-$n.txt" || rc=1
        cat "$work/bench-$n.txt"
        awk -v n="$n" '
            /^requests/ { ok = $4 }
            $1 == "ttft" { ttft = $3 }
            $1 == "itl" { itl50 = $3; itl99 = $7 }
            $1 == "tokens" { gsub(/[(]/, "", $3); tps = $3 }
            END { printf "| %s | %s | %s | %s | %s | %s |\n", n, ok, tps, ttft, itl50, itl99 }' "$work/bench-$n.txt" | section
    done
    ((rc == 0)) || exit 1
    no_cuda "hxp serve and hxp bench ran on the CPU"
}

step_bare() {
    STEP=bare-decode
    local bw="" streams=1,4,16,64 rounds=2 tokens=64 ctx=256 threads=0
    ((dry)) && streams=1,4 rounds=1 tokens=16 ctx=128 threads=1
    [[ -f "$work/bandwidth.txt" ]] && bw=$(sed -n 's/^copy_bandwidth_gbps=//p' "$work/bandwidth.txt")
    "$hxp" bench-decode --model "$models/phi3.gguf" --streams "$streams" --rounds "$rounds" --tokens "$tokens" \
        --ctx "$ctx" --threads "$threads" ${bw:+--bandwidth "$bw"} >"$work/bare.md" || exit 1
    section <"$work/bare.md"
    echo -e "\nThe bench model (bench/ benchmarks' shape):\n" | section
    "$hxp" bench-decode --model "$models/bench.gguf" --streams 1,16 --rounds 1 --tokens "$tokens" --ctx "$ctx" \
        --threads "$threads" ${bw:+--bandwidth "$bw"} | section
    ((PIPESTATUS[0] == 0)) || exit 1
    no_cuda "the bare loop ran on the CPU"
}
export -f step_machine step_build step_version step_gpu_tests step_bandwidth step_models step_plan_check step_serve_bench step_bare

say "HXP GPU kit: out=$out work=$work budget=${budget}s dry=$dry"
# The kit carries its binaries gzipped (gpu-kit.sh); unpack them once.
for gz in "$kit"/bin/*.gz; do
    [[ -e "$gz" && ! -x "${gz%.gz}" ]] || continue
    gzip -dc "$gz" >"${gz%.gz}.tmp" && chmod +x "${gz%.gz}.tmp" && mv -f "${gz%.gz}.tmp" "${gz%.gz}" \
        || { echo "run.sh: cannot unpack $gz" >&2; exit 1; }
done
write_report
run_step machine 20 step_machine
run_async models 360 step_models
run_step build 360 step_build
run_step version 30 step_version
run_step gpu-tests 60 step_gpu_tests
run_step bandwidth 40 step_bandwidth
wait_step models
if [[ "${status[models]}" == ok ]]; then
    run_step plan-check 120 step_plan_check
    run_step serve-bench 150 step_serve_bench
    run_step bare-decode 90 step_bare
else
    for s in plan-check serve-bench bare-decode; do steps+=("$s"); status[$s]="not run: the models step did not finish"; done
fi
write_report
say "done in $((SECONDS - started))s; report: $report"
failed=0
for s in "${steps[@]}"; do
    case "${status[$s]}" in ok|skipped*) ;; *) failed=1 ;; esac
done
exit "$failed"
