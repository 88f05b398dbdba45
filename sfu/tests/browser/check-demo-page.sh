#!/usr/bin/env bash
# Manual check of the demo page (sfu/static/index.html) in a real browser; not part of CI because
# it needs Chromium (`apt-get install -y --no-install-recommends chromium`) and Node >= 20.
#
# It starts calls-sfu on 127.0.0.1, opens the page in headless Chromium with a fake microphone
# (`?token=...&join=1`), joins a calls-participant that speaks and shares the test pattern, has a
# bot publish a caption, clicks Mute, and then checks what a person would see: the page connected,
# plays the speaker's voice, shows the 640x360 screen share and the caption, marks itself muted;
# and the CLI participant recorded the browser's voice.
#
# Usage: sfu/tests/browser/check-demo-page.sh [TARGET_DIR]   (debug binaries are built there)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
target=${1:-$repo/target}
here=$repo/sfu/tests/browser
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

CARGO_TARGET_DIR=$target cargo build -q -p calls-sfu -p calls-participant --bins
export SFU_AUTH_TOKEN_SECRET=page-check-secret-page-check-secret-0123
sfu_env=(SFU_HTTP_LISTEN_ADDRESS=127.0.0.1:18045 SFU_ICE_UDP_PORT=18443 SFU_ICE_TCP_PORT=18443
         SFU_ICE_HOST_ADDRESSES=127.0.0.1 SFU_HTTP_STATIC_DIR=$repo/sfu/static)
env "${sfu_env[@]}" "$target/debug/calls-sfu" serve >"$work/sfu.log" 2>&1 &
pids+=($!)
sleep 2
token() { "$target/debug/calls-sfu" token --call demo "$@"; }
browser_token=$(token --name Browser)
speaker_token=$(token --name Speaker)
bot_token=$(token --name Captioner --role bot)

espeak-ng -w "$work/raw.wav" "Hello from the command line participant, this is a connectivity check."
sox "$work/raw.wav" -r 48000 -c 1 -b 16 "$work/speak.wav"

chromium --headless=new --no-sandbox --use-fake-ui-for-media-stream --use-fake-device-for-media-stream \
  --autoplay-policy=no-user-gesture-required --remote-debugging-port=9222 --user-data-dir="$work/profile" \
  "http://127.0.0.1:18045/?token=$browser_token&join=1" >"$work/chromium.log" 2>&1 &
pids+=($!)
sleep 6
"$target/debug/calls-participant" --sfu http://127.0.0.1:18045 --call demo --token "$speaker_token" \
  --name Speaker --send-audio "$work/speak.wav" --send-screen --record-dir "$work/rec" --duration 14s \
  >"$work/cli.json" 2>"$work/cli.err" &
cli=$!
sleep 9

cat >"$work/bot.mjs" <<JS
const ws = new WebSocket("ws://127.0.0.1:18045/ws");
ws.onopen = () => ws.send(JSON.stringify({type: "join", version: 1, token: "$bot_token"}));
ws.onmessage = (e) => {
  if (JSON.parse(e.data).type !== "joined") return;
  ws.send(JSON.stringify({type: "caption", text: "hello from the captioner", speaker_session: "x",
    speaker_name: "Speaker", start_ms: 0, end_ms: 900, final: true}));
  setTimeout(() => { ws.send(JSON.stringify({type: "leave"})); ws.close(); }, 500);
};
JS
node --experimental-websocket "$work/bot.mjs"
node --experimental-websocket "$here/inspect-page.mjs" 'document.getElementById("mute").click(), "muted"' >/dev/null
sleep 1
page=$(node --experimental-websocket "$here/inspect-page.mjs")
echo "page: $page"
wait "$cli"

fail() { echo "FAIL: $*"; exit 1; }
grep -q '"status":"in call as' <<<"$page" || fail "page not in the call"
grep -q '"participants":\["you \[muted\]","Speaker \[screen\]"\]' <<<"$page" || fail "participants/mute state"
grep -q '"paused":false,"ready":4' <<<"$page" || fail "speaker's voice not playing"
grep -q '"w":640,"h":360' <<<"$page" || fail "screen share not shown"
grep -q 'Speaker: hello from the captioner' <<<"$page" || fail "caption not shown"
grep -q '"wav": "Browser.wav"' "$work/cli.json" || fail "CLI did not record the browser's voice"
echo "demo page check passed"
