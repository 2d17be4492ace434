#!/usr/bin/env bash
# Crypto benchmark: seal/open throughput (1 KiB, 64 KiB), API-key check latency through the
# SQLite store, and master-key rotation of 100 000 user keys, each beside a SHA-256 reference
# measured in the same run. Release build; numbers go to stdout.
#
#   bench/crypto.sh                 # 100 000 user keys
#   CRYPTO_BENCH_USERS=10000 bench/crypto.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --quiet --release --example crypto_bench -p clawden-store
