#!/usr/bin/env bash
# Loads job images onto every node of a Docker Swarm without a registry: `docker save` on the source engine piped
# into `docker load` on each node, over the nodes' Docker sockets (tcp://, unix://) or SSH (ssh://user@host, which
# the docker CLI tunnels). Swarm makes each node run its own copy of an image, so every node that may run jobs needs
# every runner image; check the result with `POST /jobs/init` (it reports per node which images are present).
#
# Usage: scripts/load-images.sh [--from HOST] --node HOST [--node HOST ...] IMAGE...
#   HOST    a Docker host as DOCKER_HOST takes it: unix:///var/run/docker.sock, tcp://10.0.0.12:2375, ssh://admin@worker-1
#   --from  the engine that has the images (default: DOCKER_HOST or the local socket)
# A node that already holds an image with the same id is skipped. Exit status 1 if any load failed.
set -euo pipefail

from=()
nodes=()
images=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --from) from=(-H "$2"); shift 2 ;;
        --node) nodes+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        -*) echo "load-images.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) images+=("$1"); shift ;;
    esac
done
[[ ${#nodes[@]} -gt 0 && ${#images[@]} -gt 0 ]] || { echo "load-images.sh: give at least one --node and one image (see --help)" >&2; exit 2; }

declare -A source_id
for image in "${images[@]}"; do
    source_id[$image]="$(docker "${from[@]}" image inspect -f '{{.Id}}' "$image" 2>/dev/null)" \
        || { echo "load-images.sh: $image is not on the source engine" >&2; exit 1; }
done

failed=0
for node in "${nodes[@]}"; do
    missing=()
    for image in "${images[@]}"; do
        have="$(docker -H "$node" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
        if [[ "$have" == "${source_id[$image]}" ]]; then
            echo "$node: $image already present"
        else
            missing+=("$image")
        fi
    done
    [[ ${#missing[@]} -gt 0 ]] || continue
    started=$SECONDS
    if docker "${from[@]}" save "${missing[@]}" | docker -H "$node" load -q >/dev/null; then
        echo "$node: loaded ${missing[*]} in $((SECONDS - started)) s"
    else
        echo "$node: loading ${missing[*]} failed" >&2
        failed=1
    fi
done
exit $failed
