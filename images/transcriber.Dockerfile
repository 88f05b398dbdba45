# calls-transcriber: joins a call as a bot, keeps each speaker's voice, and transcribes it with whisper after the
# call. Started by the offloader as a `transcribing` job. The default whisper model (as CTranslate2 files, `ct2-base`, and
# as ggml for live captions) and the Silero VAD model are baked into /models (images/build.sh copies them from the model
# cache into the build context as models/).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# images/build.sh narrows this to the packages of the libraries the binary really links (libopus and whisper.cpp
# are linked statically; OpenMP comes from libgomp1; FFmpeg's libraries read the files of `transcribe`).
ARG RUNTIME_PACKAGES="libgomp1 libstdc++6 libavcodec59 libavformat59 libavutil57 libswresample4"
RUN apt-get update \
    && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/calls --shell /usr/sbin/nologin calls \
    && mkdir -p /data \
    && chown calls:calls /data
COPY models /models
# The CTranslate2 engine (post-call transcripts): our shim and the libctranslate2 + libgomp of the
# `ctranslate2` wheel (images/build.sh copies them from the build; see docs/transcriber.md).
COPY ctranslate2 /usr/local/lib/calls-ct2
COPY calls-transcriber /usr/local/bin/calls-transcriber
USER 10001:10001
WORKDIR /data
ENV CALLS_TRANSCRIBER_MODELS=/models
ENV CALLS_CT2_LIB_DIR=/usr/local/lib/calls-ct2
# The transcriber touches $CALLS_HEARTBEAT_FILE while it is in the call and while whisper makes progress; a stale
# file means the job is stuck even though the process is alive.
ENV CALLS_HEARTBEAT_FILE=/tmp/calls-transcriber.alive
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "test -n \"$(find \"$CALLS_HEARTBEAT_FILE\" -newermt '-30 seconds' 2>/dev/null)\""]
ENTRYPOINT ["/usr/local/bin/calls-transcriber"]
