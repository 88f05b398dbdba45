# calls-offloader: the job API (port 4545) and the Docker job runner.
# Run it with the Docker socket mounted and the socket's group added, e.g.
#   docker run -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v calls-offloader-data:/var/lib/calls-offloader -p 4545:4545 calls-offloader
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# Shared libraries the binary links beyond libc (images/build.sh computes them from the binary).
ARG RUNTIME_PACKAGES=""
RUN if [ -n "$RUNTIME_PACKAGES" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin calls \
    && mkdir -p /var/lib/calls-offloader \
    && chown calls:calls /var/lib/calls-offloader
COPY calls-offloader /usr/local/bin/calls-offloader
# The SQLite store lives here; keep it on a volume so jobs survive the container.
VOLUME /var/lib/calls-offloader
USER 10001:10001
EXPOSE 4545/tcp
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/4545 && { [ -n \"${OFFLOADER_API_TLS_CERT_FILE:-}\" ] || { printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '; }; }"]
ENTRYPOINT ["/usr/local/bin/calls-offloader"]
