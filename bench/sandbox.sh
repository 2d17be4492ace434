#!/usr/bin/env bash
# Cold start and warm exec of a clawden sandbox, side by side with bare /bin/true and bubblewrap,
# in one hyperfine run. Needs root (uid range, cgroups), hyperfine and bwrap.
#
#   bash bench/sandbox.sh            # 300 runs each
#   RUNS=1000 bash bench/sandbox.sh
#
# "clawden cold" builds a whole sandbox for each run (cgroups with limits, six namespaces, the
# read-only root, seccomp, Landlock, capabilities dropped), runs /bin/true as its first process,
# and tears it all down; its workspace is a plain directory (the quota volume is mounted once per
# sandbox start, not per command: see docs/sandbox.md). "clawden warm" is an exec into a running
# sandbox: join its cgroups, enter its namespaces, new PID namespace, confine, exec.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${RUNS:-300}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --quiet --release -p clawden-sandbox --bin clawden-sandbox-helper
HELPER="$CARGO_TARGET_DIR/release/clawden-sandbox-helper"

WORK="$(mktemp -d /tmp/clawden-bench.XXXXXX)"
UID_BASE=3900000000
mkdir -p "$WORK/cold" "$WORK/warm"
chown "$UID_BASE:$UID_BASE" "$WORK/cold" "$WORK/warm"

# One cgroup per controller below our own cgroup, as the library does.
cgroup_args() {
    local name="$1" args=() ctrl own
    if [ -f /sys/fs/cgroup/cgroup.controllers ] &&
        grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
        own="$(sed -n 's/^0:://p' /proc/self/cgroup)"
        args+=("--cgroup=:/sys/fs/cgroup${own%/}/clawden-bench/$name")
    else
        for ctrl in memory pids cpu; do
            own="$(awk -F: -v c="$ctrl" '{n=split($2,a,","); for(i=1;i<=n;i++) if(a[i]==c) print $3}' /proc/self/cgroup)"
            args+=("--cgroup=$ctrl:/sys/fs/cgroup/$ctrl${own%/}/clawden-bench/$name")
        done
    fi
    echo "${args[@]}"
}

limits="--memory=536870912 --swap=0 --pids=256 --cpu=1000 --tmp=67108864 --hostname=sandbox --templates=$WORK/templates"
command="--timeout-ms=30000 --cwd=/workspace --nofile=1024 --nproc=256"
cold="--uid=$UID_BASE --gid=$UID_BASE --ids=65536 --workspace=$WORK/cold --quota=0 $(cgroup_args cold) $limits"
warm_cg="$(cgroup_args warm)"
warm="--uid=$UID_BASE --gid=$UID_BASE --ids=65536 --workspace=$WORK/warm --quota=0 $warm_cg $limits"

# Start the warm sandbox; its monitor answers "ready PID USERNS-INODE" and stops at end of input.
coproc MONITOR { exec "$HELPER" __sandbox-init start $warm; }
read -r word pid userns <&"${MONITOR[0]}"
[ "$word" = ready ] || { echo "warm sandbox did not start: $word $pid $userns" >&2; exit 1; }
cleanup() {
    echo stop >&"${MONITOR[1]}" || true
    wait "$MONITOR_PID" 2>/dev/null || true
    rm -rf "$WORK"
    # The sandboxes' cgroups outlive their runs by design; remove the benchmark's.
    for arg in $(cgroup_args cold) $warm_cg; do
        rmdir "${arg#*:}" 2>/dev/null || true
    done
}
trap cleanup EXIT

# Same (raised) priority for all four lines, so that other work on a small machine disturbs
# the comparison less; set NICE=0 to measure at normal priority.
nice -n "${NICE:--10}" hyperfine -N --warmup 20 --runs "$RUNS" \
    -n "bare /bin/true" "/bin/true" \
    -n "bwrap --unshare-all" "bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev /bin/true" \
    -n "clawden cold start + /bin/true" "$HELPER __sandbox-init run $cold $command -- /bin/true" \
    -n "clawden warm exec /bin/true" "$HELPER __sandbox-init exec --pid=$pid --userns=$userns $warm_cg $command -- /bin/true" \
    --export-json "$WORK/results.json" >&2
# Median (p50), mean and the cold/bwrap ratio, from hyperfine's own measurements.
python3 - "$WORK/results.json" <<'PY'
import json, statistics, sys
results = json.load(open(sys.argv[1]))["results"]
ms = lambda v: f"{v * 1000:7.2f}"
print(f"| {'command':<32} | p50 ms  | mean ms | min ms  |")
print(f"|{'-' * 34}|---------|---------|---------|")
p50 = {}
for r in results:
    p50[r["command"]] = statistics.median(r["times"])
    print(f"| {r['command']:<32} | {ms(p50[r['command']])} | {ms(r['mean'])} | {ms(r['min'])} |")
cold, bwrap = p50["clawden cold start + /bin/true"], p50["bwrap --unshare-all"]
print(f"cold start / bwrap (p50): {cold / bwrap:.2f}   (target <= 0.80)")
print(f"warm exec p50: {p50['clawden warm exec /bin/true'] * 1000:.2f} ms   (target < 1 ms)")
PY

# Sealed workspaces (part 2): a 10 MB workspace (10 MiB of random bytes and 200 small files) on a
# 64 MiB quota volume, stopped with its seal (archive, AES-256-GCM stream, fsync, rename, then
# unmount and delete the volume) and cold-started with its unseal (a fresh volume, decrypt and
# unpack); an empty workspace beside it. SEAL_RUNS repetitions of the timed test.
if [ "${SEAL_RUNS:-3}" -gt 0 ]; then
    echo "sealed workspace, release build, ${SEAL_RUNS:-3} runs:" >&2
    for _ in $(seq 1 "${SEAL_RUNS:-3}"); do
        cargo test --quiet --release -p clawden-sandbox --test manager \
            seal_and_unseal_of_a_10_mb_workspace_are_timed -- --nocapture 2>&1 | grep '^NUMBERS' || true
    done
fi
