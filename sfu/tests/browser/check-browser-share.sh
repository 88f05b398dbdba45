#!/usr/bin/env bash
# Manual check that a browser's screen share reaches a library receiver that joins late; not part
# of CI because it needs Chromium (`apt-get install -y --no-install-recommends chromium`) and
# Node >= 20. The automated equivalent is sfu/tests/keyframe_relay.rs.
#
# Chromium (the demo page, fake screen) shares for a few seconds alone, so its only unrequested
# keyframe goes to nobody; then a calls-participant joins and records for 8 s. It can decode the
# share only if its keyframe request (PLI) is relayed by the SFU and Chromium answers it. Checks:
# the receiver decoded >= 30 frames, and Chromium's outbound-rtp stats count >= 1 PLI.
#
# Usage: sfu/tests/browser/check-browser-share.sh [TARGET_DIR]   (debug binaries are built there)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
target=${1:-$repo/target}
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; sleep 1; rm -rf "$work"; }
trap cleanup EXIT

CARGO_TARGET_DIR=$target cargo build -q -p calls-sfu -p calls-participant --bins
export SFU_AUTH_TOKEN_SECRET=share-check-secret-share-check-secret-01
env SFU_HTTP_LISTEN_ADDRESS=127.0.0.1:18046 SFU_ICE_UDP_PORT=18444 SFU_ICE_TCP_PORT=18444 \
  SFU_ICE_HOST_ADDRESSES=127.0.0.1 SFU_HTTP_STATIC_DIR="$repo/sfu/static" \
  "$target/debug/calls-sfu" serve >"$work/sfu.log" 2>&1 &
pids+=($!)
sleep 2
token() { "$target/debug/calls-sfu" token --call share "$@"; }
browser_token=$(token --name Browser)
receiver_token=$(token --name Receiver)

chromium --headless=new --no-sandbox --use-fake-ui-for-media-stream --use-fake-device-for-media-stream \
  --auto-select-desktop-capture-source=Entire --remote-debugging-port=9223 \
  --user-data-dir="$work/profile" "http://127.0.0.1:18046/?token=$browser_token&join=1" \
  >"$work/chromium.log" 2>&1 &
pids+=($!)
sleep 6

# Evaluates $1 in the page as a user gesture (getDisplayMedia needs one) and prints the result.
cat >"$work/eval.mjs" <<'JS'
const page = (await (await fetch("http://127.0.0.1:9223/json")).json()).find((t) => t.type === "page");
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((r) => (ws.onopen = r));
ws.onmessage = (e) => { console.log(JSON.stringify(JSON.parse(e.data).result.result.value)); ws.close(); };
ws.send(JSON.stringify({ id: 1, method: "Runtime.evaluate", params: { expression: process.argv[2],
  awaitPromise: true, returnByValue: true, userGesture: true } }));
JS
page() { node --experimental-websocket "$work/eval.mjs" "$1"; }
page 'document.getElementById("screen").click(), "share clicked"'
sleep 4

"$target/debug/calls-participant" --sfu http://127.0.0.1:18046 --call share --token "$receiver_token" \
  --name Receiver --record-dir "$work/rec" --duration 8s >/dev/null 2>"$work/cli.err"
stats=$(page '(async () => { let out = null; (await state.pc.getStats()).forEach((s) => {
  if (s.type === "outbound-rtp" && s.kind === "video") out = { framesEncoded: s.framesEncoded,
  keyFramesEncoded: s.keyFramesEncoded, pliCount: s.pliCount, firCount: s.firCount }; }); return out; })()')
decoded=$(grep -o '"decoded_frames": [0-9]*' "$work/rec/summary.json" | awk '{ s += $2 } END { print s + 0 }')
echo "chromium outbound video: $stats"
echo "receiver decoded $decoded screen frames"

fail() { echo "FAIL: $*"; exit 1; }
[ "$decoded" -ge 30 ] || fail "the receiver decoded $decoded frames of the browser's share"
grep -Eq '"pliCount":[1-9]' <<<"$stats" || fail "no keyframe request reached Chromium"
echo "browser share check passed"
