#!/usr/bin/env bash
# Builds the calls-* Docker images locally, without any registry.
#
# 1. Ensures a Debian bookworm base image: uses ${BASE} (default debian:bookworm-slim) when it is present or
#    can be pulled; otherwise builds calls-base:bookworm once with debootstrap + `docker import` (cached).
# 2. Builds one image per binary that already exists in the cargo target dir (this script does not run
#    cargo unless --cargo is given: CI builds once and then calls this script).
#
# Usage: images/build.sh [--target-dir DIR] [--profile debug|release] [--cargo] [IMAGE...]
#   IMAGE is any of: sfu offloader test-job recorder transcriber coturn (default: all whose binary exists,
#   and coturn, which is Debian's package and needs no binary)
# Env: CARGO_TARGET_DIR, PROFILE, BASE, MIRROR (apt mirror for debootstrap), TAG (default latest),
#      FORCE_BASE=1 (rebuild the debootstrap base even when it exists),
#      CALLS_TRANSCRIBER_MODELS (model cache, default ~/.cache/calls-transcriber/models),
#      TRANSCRIBER_MODELS (whisper models baked into the transcriber image, default "ct2-base base": a `ct2-NAME`
#      model is a directory of CTranslate2 files), CALLS_CT2_DIR (the CTranslate2 libraries the transcriber
#      loads, default $CARGO_TARGET_DIR/ctranslate2, filled by transcriber/ct2/fetch.sh).
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
profile="${PROFILE:-debug}"
tag="${TAG:-latest}"
run_cargo=0
wanted=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --target-dir) target_dir="$2"; shift 2 ;;
        --profile) profile="$2"; shift 2 ;;
        --cargo) run_cargo=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        sfu|offloader|test-job|recorder|transcriber|coturn) wanted+=("$1"); shift ;;
        *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$profile" in
    debug|dev) profile_dir=debug; cargo_profile=dev ;;
    release) profile_dir=release; cargo_profile=release ;;
    *) profile_dir="$profile"; cargo_profile="$profile" ;;
esac
bin_dir="$target_dir/$profile_dir"

log() { echo "build.sh: $*" >&2; }
cleanup_dirs=()
trap 'rm -rf "${cleanup_dirs[@]}"' EXIT
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The apt mirror for debootstrap: $MIRROR, else the first Debian (not -security) URI the host's apt uses.
apt_mirror() {
    if [[ -n "${MIRROR:-}" ]]; then echo "$MIRROR"; return; fi
    local m
    m="$( { grep -hsE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; break}}';
            grep -hsE '^\s*URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'; } \
          | grep -E '/debian/?$' | grep -v security | sed -n 1p || true)"
    echo "${m:-http://deb.debian.org/debian}"
}

ensure_base() {
    local base="${BASE:-debian:bookworm-slim}"
    if image_exists "$base"; then echo "$base"; return; fi
    # A registry that is unreachable fails within a second; do not retry.
    if timeout 60 docker pull "$base" >/dev/null 2>&1; then echo "$base"; return; fi
    local fallback=calls-base:bookworm
    if image_exists "$fallback" && [[ "${FORCE_BASE:-0}" != 1 ]]; then
        log "$base cannot be pulled; using cached $fallback"
        echo "$fallback"; return
    fi
    command -v debootstrap >/dev/null || { log "$base cannot be pulled and debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    local mirror rootfs
    mirror="$(apt_mirror)"
    rootfs="$(mktemp -d /var/tmp/calls-base.XXXXXX)"
    cleanup_dirs+=("$rootfs")
    log "$base cannot be pulled; building $fallback with debootstrap from $mirror (a few minutes, once)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
    # Trim the rootfs like the slim images do: no docs, man pages or apt caches.
    mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
    printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n' \
        > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" > "$rootfs/etc/apt/sources.list"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/99-no-recommends"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" --numeric-owner -c . | docker import --change 'CMD ["/bin/bash"]' - "$fallback" >/dev/null
    rm -rf "$rootfs"
    log "built $fallback"
    echo "$fallback"
}

# The Debian packages that provide the shared libraries BINARY links directly (apt pulls in the
# rest), minus those every bookworm base has. Empty when readelf/dpkg are unavailable.
runtime_packages() {
    local binary="$1" soname path pkgs=()
    command -v readelf >/dev/null && command -v dpkg >/dev/null || return 0
    for soname in $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        # awk reads to the end (no early `exit`): with pipefail, ldconfig killed by SIGPIPE would
        # end the whole script once its output outgrows the pipe buffer.
        path="$(ldconfig -p | awk -v s="$soname" '!found && $1 == s && /x86-64|x86_64|aarch64/ {print $NF; found = 1}')"
        [[ -n "$path" ]] || { log "warning: $binary needs $soname, which this host does not have"; continue; }
        pkgs+=("$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null | sed -n 1p)")
    done
    printf '%s\n' "${pkgs[@]}" | sed -n 's/^\([^:]*\):.*/\1/p' | grep -vxE 'libc6|libgcc-s1' | sort -u | tr '\n' ' ' || true
}

# The files baked into the transcriber image: each model of $TRANSCRIBER_MODELS and the VAD model, from the
# model cache that `calls-transcriber models fetch` fills.
transcriber_model_files() {
    local dir="${CALLS_TRANSCRIBER_MODELS:-$HOME/.cache/calls-transcriber/models}" m f
    for m in ${TRANSCRIBER_MODELS:-ct2-base base} silero-vad; do
        f="$dir/ggml-$m.bin"
        [[ $m == ct2-* ]] && f="$dir/$m"
        [[ -e "$f" ]] || { log "missing $f (run: calls-transcriber models fetch $m)"; return 1; }
        echo "$f"
    done
}

# up_to_date NAME INPUT: true (and says so) when calls-NAME:$tag was built from INPUT (its `calls.build.input` label).
up_to_date() {
    local current
    current="$(docker image inspect -f '{{index .Config.Labels "calls.build.input"}}' "calls-$1:$tag" 2>/dev/null || true)"
    [[ "$current" == "$2" ]] || return 1
    log "calls-$1:$tag is up to date"
}

# build_from NAME INPUT CTX [DOCKER BUILD ARGS...]: builds calls-NAME:$tag on $base from the context CTX (removed
# afterwards), labelled with INPUT, and drops the image it replaced (kept if a container still uses it).
build_from() {
    local name="$1" input="$2" ctx="$3" previous
    shift 3
    previous="$(docker image inspect -f '{{.Id}}' "calls-$name:$tag" 2>/dev/null || true)"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" "$@" --label "calls.build.input=$input" -t "calls-$name:$tag" "$ctx" 2> >(grep -vE 'DEPRECATED|BuildKit is currently disabled|environment-variable|^$' >&2) >/dev/null
    rm -rf "$ctx"
    if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "calls-$name:$tag")" ]]; then
        docker rmi "$previous" >/dev/null 2>&1 || true
    fi
}

# The CTranslate2 engine's libraries (libcalls_ct2.so, the wheel's libctranslate2 and libgomp), which the
# transcriber loads from $CALLS_CT2_LIB_DIR.
ct2_lib_files() {
    local dir="${CALLS_CT2_DIR:-$target_dir/ctranslate2}/lib"
    [[ -f "$dir/libcalls_ct2.so" ]] || { log "missing $dir/libcalls_ct2.so (cargo build -p calls-transcriber builds it)"; return 1; }
    find "$dir" -maxdepth 1 -name '*.so*' -type f | sort
}

# build_image NAME BINARY DOCKERFILE: a context holding only the Dockerfile and the binary (and, for the
# transcriber, its models).
build_image() {
    local name="$1" binary="$2" dockerfile="$3" ctx input packages models=() libs=()
    packages="$(runtime_packages "$bin_dir/$binary")"
    if [[ "$name" == transcriber ]]; then
        local listed
        listed="$(transcriber_model_files)"
        mapfile -t models <<< "$listed"
        listed="$(ct2_lib_files)"
        mapfile -t libs <<< "$listed"
    fi
    # Skip the build when the image was made from this very binary, Dockerfile, base and models (hashed by
    # name and size: a model file is large and never rewritten in place).
    input="$(cat "$bin_dir/$binary" "$here/$dockerfile" <(docker image inspect -f '{{.Id}}' "$base"; echo "$packages"; for f in "${models[@]}" "${libs[@]}"; do find "$f" -type f -exec stat -c '%n %s %Y' {} +; done) | sha256sum | cut -c1-32)"
    up_to_date "$name" "$input" && return
    ctx="$(mktemp -d)"
    cleanup_dirs+=("$ctx")
    cp "$here/$dockerfile" "$ctx/Dockerfile"
    cp "$bin_dir/$binary" "$ctx/$binary"
    mkdir -p "$ctx/models" "$ctx/ctranslate2"
    for f in "${models[@]}"; do cp -r "$f" "$ctx/models/"; done
    for f in "${libs[@]}"; do cp "$f" "$ctx/ctranslate2/"; done
    log "building calls-$name:$tag from $bin_dir/$binary${packages:+ with $packages}"
    # An empty list leaves the Dockerfile's default (the recorder's lists its FFmpeg libraries).
    build_from "$name" "$input" "$ctx" ${packages:+--build-arg "RUNTIME_PACKAGES=$packages"}
}

# build_package_image NAME: an image of Debian packages only (coturn): rebuilt when its Dockerfile or the base
# changes.
build_package_image() {
    local name="$1" input ctx
    input="$(cat "$here/$name.Dockerfile" <(docker image inspect -f '{{.Id}}' "$base") | sha256sum | cut -c1-32)"
    up_to_date "$name" "$input" && return
    ctx="$(mktemp -d)"
    cleanup_dirs+=("$ctx")
    cp "$here/$name.Dockerfile" "$ctx/Dockerfile"
    log "building calls-$name:$tag (Debian's $name)"
    build_from "$name" "$input" "$ctx"
}

declare -A binary_of=( [sfu]=calls-sfu [offloader]=calls-offloader [test-job]=calls-test-job [recorder]=calls-recorder [transcriber]=calls-transcriber )
declare -A package_of=( [sfu]=calls-sfu [offloader]=calls-offloader [test-job]=calls-e2e [recorder]=calls-recorder [transcriber]=calls-transcriber )
explicit=1
if [[ ${#wanted[@]} -eq 0 ]]; then wanted=(sfu offloader test-job recorder transcriber coturn); explicit=0; fi

if [[ $run_cargo == 1 ]]; then
    args=()
    for n in "${wanted[@]}"; do [[ $n == coturn ]] || args+=(-p "${package_of[$n]}" --bin "${binary_of[$n]}"); done
    [[ ${#args[@]} -eq 0 ]] || CARGO_TARGET_DIR="$target_dir" cargo build --profile "$cargo_profile" "${args[@]}"
fi

base="$(ensure_base)"
built=()
for n in "${wanted[@]}"; do
    if [[ $n == coturn ]]; then
        build_package_image coturn
        built+=("calls-coturn:$tag")
        continue
    fi
    b="${binary_of[$n]}"
    if [[ ! -x "$bin_dir/$b" ]]; then
        if [[ $explicit == 1 ]]; then log "missing $bin_dir/$b (build it first, or pass --cargo)"; exit 1; fi
        log "skipping calls-$n: $bin_dir/$b not built"
        continue
    fi
    if [[ $n == transcriber && $explicit == 0 ]] && ! transcriber_model_files >/dev/null; then
        log "skipping calls-transcriber: its models are not in the cache"
        continue
    fi
    build_image "$n" "$b" "$n.Dockerfile"
    built+=("calls-$n:$tag")
done
log "base $base; ready: ${built[*]:-nothing}"
