#!/usr/bin/env bash
# Installs the servers that HXP's integration tests start through internal/testenv:
# PostgreSQL 15, Redis and Prometheus (with promtool), and Alertmanager's amtool and systemd's
# systemd-analyze for the deployment checks. Idempotent: it installs only what is
# missing and does nothing when everything is present. Debian 12; needs root (or sudo) for apt.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

missing=()
[[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" ]] || missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# cmake: the GPU kit's dry run configures the kit's ggml tree (third_party/cuda).
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
# protoc: the gRPC code staleness test regenerates transport/grpc/hxpv1 (make proto).
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)

if ((${#missing[@]} == 0)); then
	echo "test-deps: postgresql-15, redis-server, prometheus, prometheus-alertmanager, systemd, cmake and protobuf-compiler already installed"
	exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null 2>&1 || { echo "test-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
	SUDO=(sudo)
fi

echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Package post-install scripts must not start system services: the tests start their own
# servers on free loopback ports. policy-rc.d (exit 101) tells invoke-rc.d to skip them.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
	"${SUDO[@]}" chmod 755 "$policy"
	created_policy=1
fi
cleanup() { if ((created_policy)); then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Check what the tests need is really there now.
for bin in "$PG_BIN/postgres" "$PG_BIN/initdb"; do
	[[ -x $bin ]] || { echo "test-deps: $bin missing after install" >&2; exit 1; }
done
for bin in redis-server prometheus promtool amtool systemd-analyze cmake protoc; do
	command -v "$bin" >/dev/null 2>&1 || { echo "test-deps: $bin missing after install" >&2; exit 1; }
done
id postgres >/dev/null 2>&1 || { echo "test-deps: system user 'postgres' missing" >&2; exit 1; }
echo "test-deps: done"
