# Shared by the bench scripts (sourced, not run): build, certificates, a topology with the
# load's users, and siplab-frontend R1 on a loopback slot, stopped on exit.
#
# The front end only serves users its topology lists (R1 answers 404 to anyone else), so the
# scripts give it the reference lab plus USERS class A users user0..user<N-1>@contoso.test
# (--topology); the generator issues their certificates in memory from the same CA.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
# To measure another build of the front end (a candidate fix, say) against the same load:
# FRONTEND=/path/to/siplab-frontend SIPLAB=/path/to/siplab LAB_TOML=/its/deploy/lab.toml
# NO_BUILD=1.
FRONTEND="${FRONTEND:-$BIN/siplab-frontend}"
SIPLAB="${SIPLAB:-$BIN/siplab}"
LAB_TOML="${LAB_TOML:-$ROOT/deploy/lab.toml}"
SLOT="${SLOT:-250}"
# R1 in the single-process profile: 10.10.1.10 -> 127.1.<slot>.10, port 5061 (deploy/lab.toml).
FE_ADDR="127.1.$SLOT.10:5061"
FE_NAME="fe01.contoso.test"
# The A1i client placement (10.10.1.101) of the same slot: the clients' LAN address.
CLIENT_IP="127.1.$SLOT.101"
# Per-message info logs would measure the logger: warnings only, and the node's start-up
# ("node up", which says it listens). RUST_LOG=info to see every message anyway.
FE_LOG="${RUST_LOG:-warn,siplab_node=info}"
# PIN=1 puts the front end on core 0 and the generator on core 1, so neither takes CPU from
# the other (the proxy then has one core); unset, both share both cores.
PIN="${PIN:-0}"

WORK=""
FE_PID=""

cleanup() {
    if [[ -n "$FE_PID" ]] && kill -0 "$FE_PID" 2>/dev/null; then
        kill "$FE_PID" 2>/dev/null || true
        wait "$FE_PID" 2>/dev/null || true
    fi
    if [[ -n "$WORK" && -z "${KEEP:-}" ]]; then
        rm -rf "$WORK"
    fi
}

build() {
    if [[ -n "${NO_BUILD:-}" ]]; then
        return 0
    fi
    echo "building (release) ..." >&2
    (cd "$ROOT" && cargo build --release -q -p siplab-frontend -p siplab-load -p siplab)
}

# A temporary directory with the lab's certificates and a topology with $1 load users.
prepare() {
    local users="$1"
    WORK="$(mktemp -d -t siplab-bench.XXXXXX)"
    trap cleanup EXIT
    "$SIPLAB" --topology "$LAB_TOML" certs --dir "$WORK/certs" >&2
    {
        cat "$LAB_TOML"
        awk -v n="$users" 'BEGIN {
            for (i = 0; i < n; i++)
                printf "\n[[user]]\naor = \"user%d@contoso.test\"\nclass = \"A\"\nhome = \"R1\"\n", i
        }'
    } > "$WORK/lab.toml"
}

# The command prefix that runs a program on core $1 when PIN=1 (taskset execs it, so the
# pid stays the program's).
pin() {
    if [[ "$PIN" == 1 ]]; then
        echo "taskset -c $1"
    fi
}

# Starts R1 in the background and waits until it listens.
start_frontend() {
    ulimit -n "$(ulimit -Hn)"
    # Not through a shell function: $! must be the front end itself, for --pid and the kill.
    RUST_LOG="$FE_LOG" $(pin 0) "$FRONTEND" --topology "$WORK/lab.toml" \
        --node R1 --slot "$SLOT" --certs "$WORK/certs" > /dev/null 2> "$WORK/frontend.log" &
    FE_PID=$!
    for _ in $(seq 100); do
        if grep -q "node up" "$WORK/frontend.log" 2>/dev/null; then
            echo "siplab-frontend R1 (pid $FE_PID) listens on $FE_ADDR" >&2
            return 0
        fi
        if ! kill -0 "$FE_PID" 2>/dev/null; then
            cat "$WORK/frontend.log" >&2
            echo "siplab-frontend did not start" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "siplab-frontend did not come up within 10 s" >&2
    return 1
}

# siplab-load against R1, with its pid for the CPU and memory figures.
load() {
    $(pin 1) "$BIN/siplab-load" --proxy "$FE_ADDR" --server-name "$FE_NAME" \
        --certs "$WORK/certs" --bind "$CLIENT_IP" --pid "$FE_PID" "$@"
}

# One step: the summary of a run's measured step as a JSON object.
step_json() {
    jq -c 'select(.phase == "step") | {
        offered: .offered_rate, achieved: .achieved_rate, sent,
        failed: ([.failures[]] | add // 0),
        p50: .latency_ms.p50, p99: .latency_ms.p99,
        cpu_us: .proxy.cpu_us_per_unit, cores: .proxy.cores,
        kernel_us: .proxy.kernel_us_per_unit,
        gen_cores: .generator.cores, bound: .generator.bound, why: .generator.why }'
}
