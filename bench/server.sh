#!/usr/bin/env bash
# Benchmark (not a test): server start to ready, idle memory, and requests per second for
# GET /api/v1/me with a session cookie, beside GET /healthz (no auth, no database) as the
# reference, on this machine. Loopback only; every load run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/clawden-target}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 2; }
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/clawden"
WORK="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {  # $1 data dir; sets PID, ADDR, READY_MS
    local p; p="$(port)"
    local t0; t0=$(date +%s%N)
    "$BIN" --data-dir "$1" serve --listen "127.0.0.1:$p" > "$WORK/out" 2>/dev/null &
    PID=$!
    for _ in $(seq 1 2000); do grep -q '^listening on' "$WORK/out" 2>/dev/null && break; sleep 0.001; done
    READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    ADDR="127.0.0.1:$p"
}

echo "== start to ready (5 runs: first start creates the database and keys, then restarts)"
DATA="$WORK/data"
for i in 1 2 3 4 5; do
    start "$DATA"
    echo "run $i: ${READY_MS} ms"
    kill "$PID"; wait "$PID" 2>/dev/null || true
done

start "$DATA"
sleep 1
echo "== idle RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
curl -s -c "$WORK/jar" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"violet-kettle-sings"}' "http://$ADDR/api/v1/auth/signup" > /dev/null
COOKIE="$(awk '/clawden_session/ {print $6"="$7}' "$WORK/jar")"
echo "== RSS after one sign-up: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
echo "== reference: GET /healthz ($CONNS connections, $DURATION)"
wrk -t2 -c"$CONNS" -d"$DURATION" "http://$ADDR/healthz" | grep -E 'Requests/sec|Latency'
echo "== GET /api/v1/me with a session cookie ($CONNS connections, $DURATION)"
wrk -t2 -c"$CONNS" -d"$DURATION" -H "Cookie: $COOKIE" "http://$ADDR/api/v1/me" | grep -E 'Requests/sec|Latency'
echo "== RSS after load: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
