"""One faster-whisper run for transcriber-bench: loads the same CTranslate2 weights calls-transcriber
converts, transcribes 16 kHz float32 raw audio, prints one JSON line (text, seconds, peak RSS). A sixth
argument "1" also makes word timestamps, as calls-transcriber does."""
import json
import resource
import sys
import time

import numpy as np
from faster_whisper import WhisperModel

model_dir, compute_type, beam, threads, audio_path = sys.argv[1:6]
word_timestamps = len(sys.argv) > 6 and sys.argv[6] == "1"
audio = np.fromfile(audio_path, dtype=np.float32)
model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=int(threads), num_workers=1)
started = time.perf_counter()
cpu_started = resource.getrusage(resource.RUSAGE_SELF)
segments, info = model.transcribe(
    audio, beam_size=int(beam), language="en", vad_filter=True, word_timestamps=word_timestamps
)
text = " ".join(segment.text.strip() for segment in segments)
seconds = time.perf_counter() - started
cpu_done = resource.getrusage(resource.RUSAGE_SELF)
cpu_seconds = (cpu_done.ru_utime - cpu_started.ru_utime) + (cpu_done.ru_stime - cpu_started.ru_stime)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"text": text, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_mb}))
