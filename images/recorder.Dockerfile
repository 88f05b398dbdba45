# calls-recorder: records a call to MP4 from the media itself (no browser). Started by the offloader as a job.
# Holds only the run-time libraries the binary links: FFmpeg 5.1 from Debian bookworm (libopus is linked statically).
# Users with a registry build it normally (`docker build -f images/recorder.Dockerfile <context with calls-recorder>`);
# images/build.sh passes --build-arg BASE=calls-base:bookworm when debian:bookworm-slim cannot be pulled.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# images/build.sh narrows this to the packages of the libraries the binary really links.
ARG RUNTIME_PACKAGES="libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59"
# Not linked, so never in RUNTIME_PACKAGES: the font the backdrop draws participants' names with (drawtext).
ARG EXTRA_PACKAGES="fonts-dejavu-core"
RUN apt-get update \
    && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES $EXTRA_PACKAGES \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/calls --shell /usr/sbin/nologin calls \
    && mkdir -p /data \
    && chown calls:calls /data
COPY calls-recorder /usr/local/bin/calls-recorder
USER 10001:10001
WORKDIR /data
# The recorder touches $CALLS_HEARTBEAT_FILE (default /tmp/calls-recorder.alive) while its pipeline makes progress;
# a stale file means the encoder is stuck even though the process is alive.
ENV CALLS_HEARTBEAT_FILE=/tmp/calls-recorder.alive
# Decoded and composed pictures are 1–3 MB each, allocated and freed many times a second. glibc would serve them
# with mmap (or trim them back to the kernel) and every new buffer would start with page faults on zeroed pages:
# about a tenth of the recorder's CPU with a moving share. Keeping them in the heap (no mmap below 32 MB, trim only
# beyond 128 MB of free top) reuses the same pages; the peak memory does not change.
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "test -n \"$(find \"$CALLS_HEARTBEAT_FILE\" -newermt '-30 seconds' 2>/dev/null)\""]
ENTRYPOINT ["/usr/local/bin/calls-recorder"]
