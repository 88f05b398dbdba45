#!/usr/bin/env bash
# Installs the Debian packages the build, the images and the tests need. Idempotent and quick when
# everything is already there, so both README commands and CI call it unconditionally.
set -euo pipefail

packages=(
  # build: whisper/opus C code, bindgen, FFmpeg bindings
  cmake clang libclang-dev pkg-config
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev
  # tests: real speech, ffprobe/ffmpeg, base image for the job containers
  espeak-ng sox ffmpeg debootstrap chromium
  # SFU interop tests: a real Firefox ESR on the demo page, and aiortc (pip, into a venv the test makes)
  firefox-esr python3 python3-venv
  # the recorder draws participants' names with FFmpeg drawtext (its image installs the same font)
  fonts-dejavu-core
  # TLS/TURN tests: a real coturn (TURN relay) and nginx (TLS-terminating reverse proxy, docs/deploy.md)
  coturn nginx
  # the Mattermost compatibility test builds a small Go client of its own (standard library only)
  golang-go
  # tools the scripts use
  curl ca-certificates jq
  # transcriber/ct2/fetch.sh unpacks the ctranslate2 wheel
  unzip
)

missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "error: a running Docker Engine is needed (docker info failed)" >&2
  exit 1
fi
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
  echo "warning: neither docker-compose nor 'docker compose' found; the stack command needs one" >&2
fi
