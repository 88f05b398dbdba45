"""A 440 Hz tone as an aiortc voice track: 20 ms frames of 48 kHz mono, paced in real time.

Shared by the aiortc interop client (client.py, next to this file) and the SFU side-by-side load
(scripts/sfu-vs-janus/load.py).
"""

import asyncio
import fractions
import math

import numpy
from aiortc import MediaStreamTrack
from av import AudioFrame

RATE = 48000
SAMPLES = 960  # 20 ms


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self):
        super().__init__()
        self.sent = 0
        self.start = None

    async def recv(self):
        loop = asyncio.get_event_loop()
        if self.start is None:
            self.start = loop.time()
        due = self.start + self.sent / RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (numpy.arange(SAMPLES) + self.sent) / RATE
        pcm = (0.3 * 32767 * numpy.sin(2 * math.pi * 440 * t)).astype(numpy.int16)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.sent
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += SAMPLES
        return frame
