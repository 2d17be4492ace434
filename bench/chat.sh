#!/usr/bin/env bash
# Benchmark (not a test): latency clawden adds to a chat turn over a direct call to the same
# local fake provider (p50/p99 at concurrency 1 and 32), and turns per second. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/clawden-target}"
cargo run --release --quiet -p clawden-server --example chat_bench
