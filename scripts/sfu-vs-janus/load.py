"""The load of the SFU side-by-side harness (scripts/sfu-vs-janus.sh): one call with 2 speakers and
N receivers, all Python aiortc peers in this one process, against calls-sfu (its WebSocket
signalling, docs/protocol.md) or Janus (videoroom plugin over its WebSocket API). Every peer uses
aiortc's default codecs, so Opus goes out under aiortc's default payload type (96).

Speakers publish a 440 Hz tone as 20 ms Opus frames (50 packets/s). Each speaker also receives the
other (calls-sfu does that by itself; on Janus each speaker subscribes to the other), so both SFUs
forward 2 x (N + 1) x 50 packets/s. Receivers do not decode: aiortc's per-packet receive hook is
replaced by one that counts packets and tracks sequence numbers per stream, which is all the
harness needs (forwarded packets and loss) and keeps the client's cost per receiver low.

After every receiver has both voices, a warm-up, then a measured window: the SFU process's CPU
time (utime + stime from /proc/PID/stat, PID given with --pid) and RSS, and the packets every peer
received, at the start and end. Prints one JSON line:
{"sfu": .., "receivers": N, "forwarded_pps": .., "expected_pps": .., "cpu_us_per_packet": ..,
 "sfu_cores": .., "rss_mib": .., "loss": .., "join_seconds": ..}.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import sys
import time

import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc import rtcrtpreceiver
from aiortc.sdp import candidate_from_sdp

# The tone every speaker publishes is the SFU interop test's (sfu/tests/aiortc/tone.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sfu", "tests", "aiortc"))
from tone import Tone  # noqa: E402

# (receiver id, ssrc) -> [packets, highest extended sequence number, cycles, last seq]
STREAMS = {}


async def counting_handle_rtp_packet(self, packet, arrival_time_ms):
    """Replaces RTCRtpReceiver._handle_rtp_packet: count, no jitter buffer, no decoding."""
    key = (id(self), packet.ssrc)
    stream = STREAMS.get(key)
    if stream is None:
        STREAMS[key] = [1, packet.sequence_number, 0, packet.sequence_number]
        return
    stream[0] += 1
    seq = packet.sequence_number
    last = stream[3]
    if seq < 0x4000 and last > 0xC000:
        stream[2] += 1
    if seq == last:
        return
    ext = stream[2] * 0x10000 + seq
    if ext > stream[1]:
        stream[1] = ext
        stream[3] = seq


rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet = counting_handle_rtp_packet


def totals():
    """Packets received and the span of sequence numbers seen, summed over every stream."""
    received = sum(s[0] for s in STREAMS.values())
    span = sum(s[1] for s in STREAMS.values())
    return received, span


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


# ---------------------------------------------------------------------------------------------
# calls-sfu


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def join_token(secret, call, name):
    """An HS256 join token (protocol/src/join_token.rs claims)."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"call_id": call, "name": name, "role": "participant", "exp": now + 3600, "iat": now}
    body = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


class OursPeer:
    """One participant of calls-sfu: one peer connection, SFU offers answered as they come."""

    def __init__(self, url, token, speaker):
        self.url = url
        self.token = token
        self.speaker = speaker
        self.pc = RTCPeerConnection()
        self.tracks = 0
        self.ws = None
        self.task = None

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                self.tracks += 1

    async def start(self):
        if self.speaker:
            self.pc.addTrack(Tone())
        else:
            # Like calls-participant: a send-only voice transceiver that never sends.
            self.pc.addTransceiver("audio", direction="sendonly")
        self.ws = await websockets.connect(self.url, max_size=2**22, open_timeout=60)
        await self.ws.send(json.dumps({"type": "join", "version": 1, "token": self.token}))
        joined = json.loads(await self.ws.recv())
        if joined.get("type") != "joined":
            raise SystemExit(f"join refused: {joined}")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp}))
        self.task = asyncio.ensure_future(self.signalling())

    async def signalling(self):
        async for text in self.ws:
            message = json.loads(text)
            kind = message.get("type")
            if kind == "answer":
                await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
            elif kind == "offer":
                await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self.ws.send(json.dumps({"type": "answer", "sdp": self.pc.localDescription.sdp}))
            elif kind == "ice_candidate":
                init = message["candidate"]
                line = init["candidate"]
                if line.startswith("candidate:"):
                    line = line[len("candidate:"):]
                if not line:
                    continue
                candidate = candidate_from_sdp(line)
                candidate.sdpMid = init.get("sdpMid")
                candidate.sdpMLineIndex = init.get("sdpMLineIndex")
                if candidate.sdpMid:
                    await self.pc.addIceCandidate(candidate)
            elif kind == "error":
                print(f"sfu error: {message}", file=sys.stderr)

    async def close(self):
        if self.task:
            self.task.cancel()
        try:
            await self.ws.send(json.dumps({"type": "leave"}))
            await self.ws.close()
        except Exception:
            pass
        await self.pc.close()


# ---------------------------------------------------------------------------------------------
# Janus


class Janus:
    """One Janus session over one WebSocket; a handle per peer connection. Events are routed to
    the waiting request by transaction id."""

    def __init__(self, url):
        self.url = url
        self.ws = None
        self.session = None
        self.waiting = {}
        self.reader = None
        self.keepalive = None

    async def start(self):
        self.ws = await websockets.connect(
            self.url, subprotocols=["janus-protocol"], max_size=2**22, open_timeout=60
        )
        self.reader = asyncio.ensure_future(self.read())
        reply = await self.request({"janus": "create"})
        self.session = reply["data"]["id"]
        self.keepalive = asyncio.ensure_future(self.keep_alive())

    async def keep_alive(self):
        while True:
            await asyncio.sleep(20)
            await self.ws.send(
                json.dumps({"janus": "keepalive", "session_id": self.session, "transaction": "ka"})
            )

    async def read(self):
        async for text in self.ws:
            message = json.loads(text)
            if message.get("janus") == "ack":
                continue
            future = self.waiting.pop(message.get("transaction"), None)
            if future and not future.done():
                future.set_result(message)

    async def request(self, body, handle=None, jsep=None):
        transaction = f"t{random.getrandbits(64):x}"
        message = dict(body, transaction=transaction)
        if self.session is not None:
            message["session_id"] = self.session
        if handle is not None:
            message["handle_id"] = handle
        if jsep is not None:
            message["jsep"] = jsep
        future = asyncio.get_event_loop().create_future()
        self.waiting[transaction] = future
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, 60)
        if reply.get("janus") == "error":
            raise SystemExit(f"janus error: {reply}")
        data = reply.get("plugindata", {}).get("data", {})
        if data.get("error"):
            raise SystemExit(f"videoroom error: {data}")
        return reply

    async def attach(self):
        reply = await self.request({"janus": "attach", "plugin": "janus.plugin.videoroom"})
        return reply["data"]["id"]

    async def close(self):
        for task in (self.keepalive, self.reader):
            if task:
                task.cancel()
        try:
            await self.ws.send(
                json.dumps({"janus": "destroy", "session_id": self.session, "transaction": "bye"})
            )
            await self.ws.close()
        except Exception:
            pass


class JanusPublisher:
    def __init__(self, janus, room, name):
        self.janus = janus
        self.room = room
        self.name = name
        self.pc = RTCPeerConnection()
        self.feed = None

    async def start(self):
        handle = await self.janus.attach()
        reply = await self.janus.request(
            {"janus": "message", "body": {"request": "join", "ptype": "publisher", "room": self.room,
                                          "display": self.name}},
            handle,
        )
        self.feed = reply["plugindata"]["data"]["id"]
        self.pc.addTrack(Tone())
        await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await self.janus.request(
            {"janus": "message", "body": {"request": "publish", "audio": True, "video": False}},
            handle,
            {"type": "offer", "sdp": self.pc.localDescription.sdp},
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["jsep"]["sdp"], "answer"))
        # Janus offers a feed to subscribers only once its publisher's media is up.
        deadline = time.monotonic() + 60
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise SystemExit(f"publisher {self.name} did not connect")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)

    async def close(self):
        await self.pc.close()


class JanusSubscriber:
    """One peer connection receiving the given feeds (videoroom multistream subscriber)."""

    def __init__(self, janus, room, feeds):
        self.janus = janus
        self.room = room
        self.feeds = feeds
        self.pc = RTCPeerConnection()
        self.tracks = 0

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                self.tracks += 1

    async def start(self):
        handle = await self.janus.attach()
        reply = await self.janus.request(
            {"janus": "message", "body": {"request": "join", "ptype": "subscriber", "room": self.room,
                                          "streams": [{"feed": feed} for feed in self.feeds]}},
            handle,
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["jsep"]["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.janus.request(
            {"janus": "message", "body": {"request": "start"}},
            handle,
            {"type": "answer", "sdp": self.pc.localDescription.sdp},
        )

    async def close(self):
        await self.pc.close()


# ---------------------------------------------------------------------------------------------


async def gather(jobs, parallel):
    """Runs the coroutines `parallel` at a time (a join burst of hundreds of DTLS handshakes on a
    busy machine times out otherwise)."""
    semaphore = asyncio.Semaphore(parallel)

    async def one(job):
        async with semaphore:
            await job

    await asyncio.gather(*(one(job) for job in jobs))


async def main(args):
    started = time.monotonic()
    closers = []
    receivers = []
    if args.sfu == "ours":
        call = f"bench-{random.getrandbits(32):x}"
        peers = [OursPeer(args.url, join_token(args.secret, call, f"receiver-{i}"), False)
                 for i in range(args.receivers)]
        await gather([p.start() for p in peers], args.parallel)
        speakers = [OursPeer(args.url, join_token(args.secret, call, f"speaker-{i}"), True)
                    for i in range(2)]
        for speaker in speakers:
            await speaker.start()
        receivers = peers + speakers
        closers = receivers
        janus = None
    else:
        janus = Janus(args.url)
        await janus.start()
        admin = await janus.attach()
        room = random.randint(10_000, 2**31)
        await janus.request(
            {"janus": "message", "body": {"request": "create", "room": room, "publishers": 4,
                                          "audiocodec": "opus", "videocodec": "vp8"}},
            admin,
        )
        speakers = [JanusPublisher(janus, room, f"speaker-{i}") for i in range(2)]
        for speaker in speakers:
            await speaker.start()
        feeds = [s.feed for s in speakers]
        peers = [JanusSubscriber(janus, room, feeds) for _ in range(args.receivers)]
        await gather([p.start() for p in peers], args.parallel)
        # Each speaker hears the other, as calls-sfu does without being asked.
        cross = [JanusSubscriber(janus, room, [feeds[1]]), JanusSubscriber(janus, room, [feeds[0]])]
        for peer in cross:
            await peer.start()
        receivers = peers + cross
        closers = speakers + receivers
    join_seconds = time.monotonic() - started

    expected_tracks = 2 * args.receivers + 2
    deadline = time.monotonic() + 120
    while True:
        flowing = len(STREAMS)
        if flowing >= expected_tracks:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"only {flowing} of {expected_tracks} voice streams arrived")
        await asyncio.sleep(0.2)
    await asyncio.sleep(args.warmup)

    if args.window_file:
        # Tells the harness the measured window starts (it profiles the SFU during it).
        with open(args.window_file, "w") as f:
            f.write("start\n")
    cpu0, (recv0, span0), t0 = cpu_seconds(args.pid), totals(), time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu1, (recv1, span1), t1 = cpu_seconds(args.pid), totals(), time.monotonic()
    rss = rss_mib(args.pid)

    elapsed = t1 - t0
    forwarded = recv1 - recv0
    span = span1 - span0
    cpu = cpu1 - cpu0
    report = {
        "sfu": args.sfu,
        "receivers": args.receivers,
        "seconds": round(elapsed, 1),
        "forwarded_pps": round(forwarded / elapsed),
        "expected_pps": 2 * (args.receivers + 1) * 50,
        "cpu_us_per_packet": round(cpu / max(forwarded, 1) * 1e6, 1),
        "sfu_cores": round(cpu / elapsed, 3),
        "rss_mib": round(rss) if rss is not None else None,
        "loss": round(1 - forwarded / span, 4) if span > 0 else None,
        "join_seconds": round(join_seconds, 1),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(report), flush=True)

    await gather([c.close() for c in closers], 32)
    if janus:
        await janus.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sfu", choices=["ours", "janus"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--receivers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--secret", default="")
    parser.add_argument("--window-file", help="written when the measured window starts")
    asyncio.run(main(parser.parse_args()))
