#!/usr/bin/env bash
# The multi-node check of the offloader's swarm mode, on one machine: three Docker-in-Docker nodes (an image built
# from Debian's docker.io on the local base image, privileged, on a private Docker network) form a swarm, the job image
# is loaded onto each with scripts/load-images.sh, a real calls-offloader (on this host, talking to node 1, the
# manager) runs 6 jobs with jobs.max_concurrent = 6, and the task list shows on which node each ran and how it ended.
# Then three long jobs are stopped through the API (on the manager's node and on others), and the offloader is
# killed with SIGKILL while three more run and restarted after they ended. Exits non-zero unless the
# jobs ran on more than one node and every job ended in its expected state.
#
# Usage: scripts/swarm-multinode.sh            (needs calls-offloader and calls-test-job built in $CARGO_TARGET_DIR/debug)
# Env:   CARGO_TARGET_DIR (default ./target), KEEP=1 leaves the nodes running for a look around.
# Everything it creates is named calls-swarm-mn-* and removed at the end.
#
# Nodes run `--privileged`. Where the host withholds a capability from the engine (a VM sandbox without
# CAP_SYS_RESOURCE, where every privileged container fails with "unable to apply caps"), they run instead with every
# other capability, unconfined seccomp and AppArmor, every device allowed and the cgroup hierarchy writable, which is
# what dockerd inside needs; each node's containers then go under their own cgroup parent.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
prefix=calls-swarm-mn
net="$prefix-net"
node_image="$prefix-node:local"
job_image=calls-test-job:latest
admin_secret="multinode-admin-secret-0123456789abcdef"
workdir="$(mktemp -d /tmp/$prefix.XXXXXX)"
offloader_pid=""

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
cleanup() {
    [[ -n "$offloader_pid" ]] && kill "$offloader_pid" 2>/dev/null && wait "$offloader_pid" 2>/dev/null || true
    if [[ "${KEEP:-0}" != 1 ]]; then
        for i in 1 2 3; do docker rm -f -v "$prefix-node$i" >/dev/null 2>&1 || true; done
        for d in /sys/fs/cgroup/*/"$prefix"-node*; do [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
        docker network rm "$net" >/dev/null 2>&1 || true
        rm -rf "$workdir"
    else
        log "KEEP=1: nodes left running; sockets under $workdir"
    fi
}
trap cleanup EXIT

[[ -x "$target/debug/calls-offloader" ]] || { echo "missing $target/debug/calls-offloader (cargo build -p calls-offloader)" >&2; exit 1; }

# 1. The job image and the local Debian base (images/build.sh makes both; the base without a registry).
./images/build.sh --target-dir "$target" test-job
base="$(docker image inspect debian:bookworm-slim >/dev/null 2>&1 && echo debian:bookworm-slim || echo calls-base:bookworm)"

# 2. The node image: Debian's docker.io on that base.
ctx="$workdir/node-image"
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends docker.io iptables ca-certificates procps \
    && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/docker
# The socket goes to a directory the host mounts, so the host's docker CLI reaches each node without TCP.
ENTRYPOINT ["dockerd", "--host=unix:///run/node/docker.sock", "--storage-driver=overlay2"]
DOCKERFILE
if ! docker image inspect "$node_image" >/dev/null 2>&1; then
    log "building $node_image from $base"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" -t "$node_image" "$ctx" >/dev/null
fi

# 3. Three privileged nodes on a private network.
if docker run --rm --privileged "$base" true >/dev/null 2>&1; then
    node_flags=(--privileged)
else
    log "privileged containers cannot start on this host (a capability is withheld): using an explicit capability set"
    node_flags=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined --security-opt apparmor=unconfined
        --device-cgroup-rule 'a *:* rwm' --sysctl net.ipv4.ip_forward=1 -v /sys/fs/cgroup:/sys/fs/cgroup:rw)
fi
docker network create --driver bridge "$net" >/dev/null
gateway="$(docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$net")"
for i in 1 2 3; do
    mkdir -p "$workdir/node$i"
    docker run -d "${node_flags[@]}" --name "$prefix-node$i" --hostname "node$i" --network "$net" \
        -v "$workdir/node$i:/run/node" "$node_image" --cgroup-parent="/$prefix-node$i" >/dev/null
done
node_host() { echo "unix://$workdir/node$1/docker.sock"; }
for i in 1 2 3; do
    for _ in $(seq 1 120); do docker -H "$(node_host "$i")" info >/dev/null 2>&1 && break; sleep 0.5; done
    docker -H "$(node_host "$i")" info >/dev/null || { docker logs "$prefix-node$i" | tail -20 >&2; exit 1; }
done
log "3 nodes up"

# 4. A swarm: node1 manages, node2 and node3 join as workers.
ip1="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$prefix-node1")"
docker -H "$(node_host 1)" swarm init --advertise-addr "$ip1" >/dev/null
token="$(docker -H "$(node_host 1)" swarm join-token -q worker)"
for i in 2 3; do docker -H "$(node_host "$i")" swarm join --token "$token" "$ip1:2377" >/dev/null; done
docker -H "$(node_host 1)" node ls

# 5. The job image onto every node, without a registry.
load_started=$SECONDS
./scripts/load-images.sh --node "$(node_host 1)" --node "$(node_host 2)" --node "$(node_host 3)" "$job_image"
log "images loaded in $((SECONDS - load_started)) s"

# 6. The offloader on this host: swarm mode against node1, reachable from the nodes at the network's gateway.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("'"$gateway"'", 0)); print(s.getsockname()[1])')"
base_url="http://$gateway:$port"
mkdir -p "$workdir/store"
start_offloader() {
env -i PATH="$PATH" RUST_LOG=info DOCKER_HOST="$(node_host 1)" \
    OFFLOADER_DOCKER_MODE=swarm OFFLOADER_API_LISTEN_ADDRESS="$gateway:$port" OFFLOADER_API_ADMIN_SECRET="$admin_secret" \
    OFFLOADER_STORE_DATA_DIR="$workdir/store" OFFLOADER_JOBS_MAX_CONCURRENT=6 OFFLOADER_JOBS_OFFLOADER_URL="$base_url" \
    OFFLOADER_JOBS_STOP_GRACE_PERIOD=3s OFFLOADER_RUNNERS_RECORDING_IMAGE="$job_image" \
    OFFLOADER_RUNNERS_TRANSCRIBING_IMAGE="$job_image" OFFLOADER_RUNNERS_RECORDING_MEMORY_MB=256 \
    OFFLOADER_RUNNERS_RECORDING_CPUS=0.5 OFFLOADER_DOCKER_SWARM_CONSTRAINTS="node.platform.os==linux" \
    "$target/debug/calls-offloader" >>"$workdir/offloader.log" 2>&1 &
offloader_pid=$!
for _ in $(seq 1 100); do curl -fs "$base_url/healthz" >/dev/null && break; sleep 0.2; done
curl -fs "$base_url/healthz" >/dev/null || { cat "$workdir/offloader.log" >&2; exit 1; }
}
start_offloader

api() { curl -fsS -H "Authorization: Bearer $auth" -H 'Content-Type: application/json' "$@"; }
auth="$admin_secret"
api -X POST "$base_url/register" -d '{"clientID":"multinode","authKey":"multinode-key-0123456789abcdefghij"}' >/dev/null
auth="$(curl -fsS -X POST "$base_url/login" -H 'Content-Type: application/json' \
    -d '{"clientID":"multinode","authKey":"multinode-key-0123456789abcdefghij"}' | jq -r ".token // .bearerToken")"

# Polls job $1 until it reaches a final state (at most $2 tries, half a second apart); prints the last state seen.
wait_final() {
    local state=""
    for _ in $(seq 1 "$2"); do
        state="$(api "$base_url/jobs/$1" | jq -r .state)"
        [[ "$state" == succeeded || "$state" == failed || "$state" == cancelled ]] && break
        sleep 0.5
    done
    echo "$state"
}
# Submits three recording jobs that sleep $1 seconds; prints their ids, one a line.
submit_sleepers() {
    for _ in 1 2 3; do
        api -X POST "$base_url/jobs" -d "{\"type\":\"recording\",\"input_data\":{\"behaviour\":\"sleep\",\"sleep_seconds\":$1}}" | jq -r .id
    done
}
# Waits (up to a minute) until job $1 runs; prints the node its task runs on.
node_of_running() {
    for _ in $(seq 1 120); do [[ "$(api "$base_url/jobs/$1" | jq -r .state)" == running ]] && break; sleep 0.5; done
    docker -H "$(node_host 1)" service ps --format '{{.Node}}' "calls-recording-$1" | head -1
}

echo "--- POST /jobs/init (which node has which image)"
api -X POST "$base_url/jobs/init" -d '{}' | jq -c '.nodes[] | {node, present, missing}'

# 7. Six jobs at once: five sleep 8 s and succeed, one fails with exit code 3 after the same sleep.
declare -A expected
for i in 1 2 3 4 5 6; do
    if [[ $i == 6 ]]; then
        input='{"behaviour":"sleep","sleep_seconds":8,"final_exit_code":3}'; want=failed
    else
        input='{"behaviour":"sleep","sleep_seconds":8}'; want=succeeded
    fi
    id="$(api -X POST "$base_url/jobs" -d "{\"type\":\"recording\",\"input_data\":$input}" | jq -r .id)"
    expected[$id]=$want
done
log "6 jobs submitted"

# While they run: the task list, from the manager (succeeded services are removed once they end).
for _ in $(seq 1 120); do
    running="$(docker -H "$(node_host 1)" service ls --filter label=calls.client_id=multinode -q | wc -l)"
    states="$(for id in "${!expected[@]}"; do api "$base_url/jobs/$id" | jq -r .state; done | sort | uniq -c | tr '\n' ' ')"
    [[ "$states" == *"6 running"* ]] && break
    sleep 0.5
done
echo "--- docker service ls | grep calls"
docker -H "$(node_host 1)" service ls | grep calls || true
echo "--- task list (docker service ps)"
tasks="$(for s in $(docker -H "$(node_host 1)" service ls --filter label=calls.client_id=multinode --format '{{.Name}}'); do
    docker -H "$(node_host 1)" service ps --no-trunc --format '{{.Name}}\t{{.Node}}\t{{.CurrentState}}' "$s"; done)"
echo "$tasks"
nodes_used="$(echo "$tasks" | awk -F'\t' 'NF>1 {print $2}' | sort -u | wc -l)"

echo "--- final states"
ok=1
for id in "${!expected[@]}"; do
    state="$(wait_final "$id" 240)"
    job="$(api "$base_url/jobs/$id")"
    latency=$(( $(jq .started_at <<<"$job") - $(jq .created_at <<<"$job") ))
    echo "$latency" >> "$workdir/latencies"
    printf '%s %-9s (expected %-9s) exit %s, created→running %s ms%s\n' "$id" "$state" "${expected[$id]}" \
        "$(jq -r .exit_code <<<"$job")" "$latency" "$(jq -r 'if .failure_reason then ": " + (.failure_reason | split("\n")[0]) else "" end' <<<"$job")"
    [[ "$state" == "${expected[$id]}" ]] || ok=0
done
echo "--- services left (the failed job's, kept for jobs.failed_job_retention; its tasks: one, not re-run)"
for s in $(docker -H "$(node_host 1)" service ls --filter label=calls.client_id=multinode --format '{{.Name}}'); do
    docker -H "$(node_host 1)" service ls --filter "name=$s" --format '{{.Name}} {{.Mode}} {{.Replicas}}'
    docker -H "$(node_host 1)" service ps --no-trunc --format '  {{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' "$s"
    [[ "$(docker -H "$(node_host 1)" service ps -q "$s" | wc -l)" == 1 ]] || { echo "  more than one task: the job was re-run" >&2; ok=0; }
done
if grep -q panicked "$workdir/offloader.log"; then echo "the offloader panicked" >&2; ok=0; fi

# 8. Stops: three long jobs, stopped through the API once running. On node1 (the manager the offloader talks to) the
# offloader signals the container (SIGTERM, grace, SIGKILL) and keeps exit code and log; elsewhere it reads the log so
# far, removes the service and Swarm stops the container with the same grace period: the exit code and the lines
# printed after the stop are lost (docs/offloader.md).
echo "--- stops (POST /jobs/{id}/stop while running)"
mapfile -t stop_ids < <(submit_sleepers 60)
declare -A stop_node
for id in "${stop_ids[@]}"; do stop_node[$id]="$(node_of_running "$id")"; done
sleep 2  # the jobs install their SIGTERM handler right after they start
for id in "${stop_ids[@]}"; do api -X POST "$base_url/jobs/$id/stop" >/dev/null; done
for id in "${stop_ids[@]}"; do
    state="$(wait_final "$id" 120)"
    job="$(api "$base_url/jobs/$id")"
    job_log="$(api "$base_url/jobs/$id/logs")"
    sigterm="$(grep -c 'received SIGTERM' <<<"$job_log" || true)"
    printf '%s on %s: %s, exit %s, log lines kept %s, log has "received SIGTERM": %s\n' "$id" "${stop_node[$id]}" \
        "$state" "$(jq -r .exit_code <<<"$job")" "$(grep -c . <<<"$job_log" || true)" "$([[ $sigterm -gt 0 ]] && echo yes || echo no)"
    [[ "$state" == cancelled ]] || ok=0
done

# 9. kill -9 while jobs run on every node: three jobs of 10 s; the offloader is killed once they run, they end
# while it is down, and the restarted offloader (same store) reconciles them from the services' task states.
echo "--- kill -9 and restart while jobs run"
mapfile -t crash_ids < <(submit_sleepers 10)
declare -A crash_node
for id in "${crash_ids[@]}"; do crash_node[$id]="$(node_of_running "$id")"; done
kill -9 "$offloader_pid"; wait "$offloader_pid" 2>/dev/null || true
log "offloader killed; waiting for the jobs to end while it is down"
for _ in $(seq 1 60); do
    done_count=0
    for id in "${crash_ids[@]}"; do
        state="$(docker -H "$(node_host 1)" service ps --format '{{.CurrentState}}' "calls-recording-$id" | head -1)"
        [[ "$state" == Complete* ]] && done_count=$((done_count + 1))
    done
    [[ $done_count == 3 ]] && break
    sleep 0.5
done
start_offloader
log "offloader restarted"
for id in "${crash_ids[@]}"; do
    state="$(wait_final "$id" 60)"
    left="$(docker -H "$(node_host 1)" service ls -q --filter "name=calls-recording-$id" | wc -l)"
    printf '%s on %s: %s after the restart, exit %s, its service left: %s\n' "$id" "${crash_node[$id]}" "$state" \
        "$(api "$base_url/jobs/$id" | jq -r .exit_code)" "$left"
    [[ "$state" == succeeded && "$left" == 0 ]] || ok=0
done

echo "--- created→running over the 6 jobs (ms, sorted): $(sort -n "$workdir/latencies" | tr '\n' ' ')"
echo "--- result: $running services at once on $nodes_used nodes; all ended as expected: $([[ $ok == 1 ]] && echo yes || echo no)"
[[ $ok == 1 && $nodes_used -gt 1 ]]
