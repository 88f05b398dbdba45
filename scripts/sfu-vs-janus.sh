#!/usr/bin/env bash
# calls-sfu side by side with Janus (Debian's `janus`, videoroom plugin) under the same load:
# 2 speakers and N receivers, aiortc peers at their default payload types (scripts/sfu-vs-janus/load.py),
# SFU CPU read from /proc, runs alternating (Janus, ours, Janus, ours, ...) so both see the same machine.
#
# Everything runs in a network namespace of the harness's own with a veth pair (Janus ignores loopback
# candidates): both ends live in the namespace, so no traffic crosses the host's FORWARD chain.
#
# Usage (as root): scripts/sfu-vs-janus.sh [N ...]       default N = 10 50
#   RUNS=2 (pairs per N)  SECONDS_PER_RUN=20  SFU_BIN=target/release/calls-sfu (built if missing)
#   SIDES="janus ours" (which SFUs, in this order per pair)
#   PERF_OURS=FILE        `perf record` (call graphs, DWARF) of calls-sfu during its last run, into FILE
# Installs `janus` with apt and aiortc into target/sfu-vs-janus-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-2}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10 50)
SIDES=${SIDES:-"janus ours"}
SFU_BIN=${SFU_BIN:-$ROOT/target/release/calls-sfu}
VENV=$ROOT/target/sfu-vs-janus-venv
NS=sfuvj$$
IP_SFU=10.77.0.1
SECRET=side-by-side-secret-side-by-side-0123456
WORK=$(mktemp -d)

[ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 1; }
command -v janus >/dev/null || { apt-get install -y --no-install-recommends janus >/dev/null; }
if ! "$VENV/bin/python" -c 'import aiortc, websockets, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet aiortc==1.16.0 websockets numpy
fi
[[ "$SIDES" != *ours* ]] || [ -x "$SFU_BIN" ] || cargo build --release -p calls-sfu --bin calls-sfu

cleanup() {
    touch "$WORK/window"  # releases a profiler still waiting for a window that never came
    for pidfile in "$WORK"/*.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 1
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up
in_ns ip link add v0 type veth peer name v1
in_ns ip addr add $IP_SFU/24 dev v0
in_ns ip addr add 10.77.0.2/24 dev v1
in_ns ip link set v0 up
in_ns ip link set v1 up

# Janus: only the videoroom plugin and the WebSocket transport, candidates on the veth address only.
mkdir -p "$WORK/janus/conf" "$WORK/janus/plugins" "$WORK/janus/transports"
LIB=/usr/lib/x86_64-linux-gnu/janus
ln -s $LIB/plugins/libjanus_videoroom.so "$WORK/janus/plugins/"
ln -s $LIB/transports/libjanus_websockets.so "$WORK/janus/transports/"
cat > "$WORK/janus/conf/janus.jcfg" <<EOF
general: {
    configs_folder = "$WORK/janus/conf"
    plugins_folder = "$WORK/janus/plugins"
    transports_folder = "$WORK/janus/transports"
    events_folder = "$WORK/janus/none"
    loggers_folder = "$WORK/janus/none"
    debug_level = 2
    session_timeout = 120
}
media: {
    rtp_port_range = "20000-40000"
}
nat: {
    ice_enforce_list = "$IP_SFU"
}
EOF
cat > "$WORK/janus/conf/janus.plugin.videoroom.jcfg" <<EOF
general: {
}
EOF
cat > "$WORK/janus/conf/janus.transport.websockets.jcfg" <<EOF
general: {
    json = "plain"
    ws = true
    ws_port = 8188
    ws_ip = "$IP_SFU"
    wss = false
}
admin: {
    admin_ws = false
    admin_wss = false
}
EOF

wait_port() {
    for _ in $(seq 150); do
        in_ns bash -c "exec 3<>/dev/tcp/$IP_SFU/$1" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

start_janus() {
    # `ip netns exec` execs the program, so $! is the SFU's own pid (a shell function would fork).
    ip netns exec "$NS" janus -F "$WORK/janus/conf" -C "$WORK/janus/conf/janus.jcfg" -o >"$WORK/janus.log" 2>&1 &
    echo $! > "$WORK/janus.pid"
    wait_port 8188 && return 0
    echo "janus did not start:" >&2; tail -20 "$WORK/janus.log" >&2; exit 1
}

start_ours() {
    ip netns exec "$NS" env SFU_AUTH_TOKEN_SECRET=$SECRET SFU_HTTP_LISTEN_ADDRESS=$IP_SFU:8045 \
        SFU_ICE_HOST_ADDRESSES=$IP_SFU SFU_LIMITS_MAX_PARTICIPANTS_PER_CALL=2000 \
        "$SFU_BIN" serve >"$WORK/ours.log" 2>&1 &
    echo $! > "$WORK/ours.pid"
    wait_port 8045 && return 0
    echo "calls-sfu did not start:" >&2; tail -20 "$WORK/ours.log" >&2; exit 1
}

stop() {
    local pid
    pid=$(cat "$WORK/$1.pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$WORK/$1.pid"
}

# One run: a fresh SFU process, the load, one JSON line appended to $WORK/results.
run_one() {
    local sfu=$1 n=$2 last=$3 url pid perf_pid=
    if [ "$sfu" = janus ]; then start_janus; url=ws://$IP_SFU:8188/; else start_ours; url=ws://$IP_SFU:8045/ws; fi
    pid=$(cat "$WORK/$sfu.pid")
    rm -f "$WORK/window"
    if [ "$sfu" = ours ] && [ "$last" = 1 ] && [ -n "${PERF_OURS:-}" ]; then
        # Profile the measured window only (not the joins): wait for load.py to say it starts.
        ( while [ ! -f "$WORK/window" ]; do sleep 0.2; done
          exec perf record -F 499 --call-graph dwarf,16384 -p "$pid" -o "$PERF_OURS" -- sleep "$SECONDS_PER_RUN" ) >/dev/null 2>&1 &
        perf_pid=$!
    fi
    in_ns "$VENV/bin/python" "$ROOT/scripts/sfu-vs-janus/load.py" --sfu "$sfu" --url "$url" \
        --pid "$pid" --receivers "$n" --seconds "$SECONDS_PER_RUN" --secret "$SECRET" \
        --window-file "$WORK/window" | tee -a "$WORK/results"
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    stop "$sfu"
}

for n in "${SIZES[@]}"; do
    for run in $(seq "$RUNS"); do
        last=$([ "$run" = "$RUNS" ] && echo 1 || echo 0)
        for sfu in $SIDES; do run_one "$sfu" "$n" "$last"; done
    done
done

# The table: one row per N, both runs of each side by side.
"$VENV/bin/python" - "$WORK/results" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
print()
print("| N receivers | Janus CPU-µs/packet | calls-sfu CPU-µs/packet | calls-sfu / Janus | RSS MiB Janus; calls-sfu | loss Janus; calls-sfu | load average |")
print("|---|---|---|---|---|---|---|")
for n in sorted({r["receivers"] for r in rows}):
    j = [r for r in rows if r["receivers"] == n and r["sfu"] == "janus"]
    o = [r for r in rows if r["receivers"] == n and r["sfu"] == "ours"]
    fmt = lambda rs, k: " / ".join(str(r[k]) for r in rs)
    mean = lambda rs: sum(r["cpu_us_per_packet"] for r in rs) / len(rs)
    ratio = mean(o) / mean(j) if j and o else float("nan")
    loads = " ".join(f"{r['load_average']:.1f}" for r in j + o)
    print(f"| {n} | {fmt(j, 'cpu_us_per_packet')} | {fmt(o, 'cpu_us_per_packet')} | {ratio:.2f} | "
          f"{fmt(j, 'rss_mib')}; {fmt(o, 'rss_mib')} | {fmt(j, 'loss')}; {fmt(o, 'loss')} | {loads} |")
EOF
