"""A non-webrtc-rs participant for the SFU interop test: Python aiortc, which offers Opus as
payload type 96 (not the 111 the SFU registers).

Joins a call over the SFU's signalling WebSocket (docs/protocol.md), publishes a 440 Hz tone as
its voice, answers the SFU's offers for forwarded tracks, and measures what it hears: every
decoded audio frame of every received voice, and how many of them carry sound (RMS above
-40 dBFS). Prints one JSON line at the end: {"frames": .., "loud_frames": .., "offered_opus_pt": ..,
"answered_opus_pt": .., "tracks": ..}.

Usage: client.py WS_URL TOKEN SECONDS [TONES]
TONES (default 1) voice tracks are published; the report lists the error codes the SFU sent.
"""

import asyncio
import json
import math
import re
import sys

import numpy
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from tone import Tone  # next to this file


def opus_pt(sdp):
    match = re.search(r"a=rtpmap:(\d+) opus/48000", sdp, re.IGNORECASE)
    return int(match.group(1)) if match else None


async def main(url, token, seconds, tones):
    stats = {"frames": 0, "loud_frames": 0, "tracks": 0, "errors": []}
    pc = RTCPeerConnection()
    for _ in range(tones):
        pc.addTrack(Tone())

    async def listen(track):
        stats["tracks"] += 1
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            pcm = frame.to_ndarray().astype(numpy.float64) / 32768.0
            stats["frames"] += 1
            if math.sqrt(numpy.mean(pcm * pcm)) > 0.01:
                stats["loud_frames"] += 1

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            asyncio.ensure_future(listen(track))

    async with websockets.connect(url, max_size=2**20) as ws:
        await ws.send(json.dumps({"type": "join", "version": 1, "token": token}))
        joined = json.loads(await ws.recv())
        if joined.get("type") != "joined":
            raise SystemExit(f"join refused: {joined}")
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        stats["offered_opus_pt"] = opus_pt(pc.localDescription.sdp)
        await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))

        async def signalling():
            async for text in ws:
                message = json.loads(text)
                kind = message.get("type")
                if kind == "answer":
                    stats["answered_opus_pt"] = opus_pt(message["sdp"])
                    await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
                elif kind == "offer":
                    await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
                    answer = await pc.createAnswer()
                    await pc.setLocalDescription(answer)
                    await ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
                elif kind == "ice_candidate":
                    init = message["candidate"]
                    line = init["candidate"]
                    if line.startswith("candidate:"):
                        line = line[len("candidate:"):]
                    candidate = candidate_from_sdp(line)
                    candidate.sdpMid = init.get("sdpMid")
                    candidate.sdpMLineIndex = init.get("sdpMLineIndex")
                    if not candidate.sdpMid:
                        raise SystemExit(f"candidate without sdpMid: {init}")
                    await pc.addIceCandidate(candidate)
                elif kind == "error":
                    stats["errors"].append(message.get("code"))
                    print(f"sfu error: {message}", file=sys.stderr)

        task = asyncio.ensure_future(signalling())
        await asyncio.sleep(seconds)
        task.cancel()
        await ws.send(json.dumps({"type": "leave"}))
    await pc.close()
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    tones = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), tones))
