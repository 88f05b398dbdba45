# calls-test-job: the tiny job the offloader end-to-end tests run (tests/src/bin/calls-test-job.rs).
# Built by images/build.sh from a binary compiled on the host (glibc bookworm); no registry needed.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# Shared libraries the binary links beyond libc (images/build.sh computes them from the binary).
ARG RUNTIME_PACKAGES=""
RUN if [ -n "$RUNTIME_PACKAGES" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi
# /data belongs to the job user so the offloader's per-job volume inherits it.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin calls \
    && mkdir -p /data \
    && chown calls:calls /data
COPY calls-test-job /usr/local/bin/calls-test-job
USER 10001:10001
WORKDIR /tmp
# Short-lived by design: the offloader tracks it through the job status API, so no HEALTHCHECK.
ENTRYPOINT ["/usr/local/bin/calls-test-job"]
