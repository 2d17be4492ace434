#!/usr/bin/env bash
# Benchmark (not a test): what the agent loop adds to a tool call, beside a direct call to the
# provider and a direct exec in the sandbox. Needs root and the sandbox's kernel features.
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/clawden-target}"
cargo bench --quiet -p clawden --bench agent_tools
