# calls-sfu: the WebRTC SFU. Signalling and the HTTP API on 8045, ICE on 8443 (UDP and TCP).
# The demo page is built into the binary (sfu/static is include_str!'d), so nothing else is copied;
# sfu/tests/image.rs checks that this image serves it.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# Shared libraries the binary links beyond libc (images/build.sh computes them from the binary).
ARG RUNTIME_PACKAGES=""
RUN if [ -n "$RUNTIME_PACKAGES" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin calls
COPY calls-sfu /usr/local/bin/calls-sfu
USER 10001:10001
EXPOSE 8045/tcp 8443/udp 8443/tcp
# No curl in the image: bash's /dev/tcp speaks just enough HTTP to ask /healthz; over TLS (SFU_HTTP_TLS_CERT_FILE set)
# it checks that the port accepts connections.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8045 && { [ -n \"${SFU_HTTP_TLS_CERT_FILE:-}\" ] || { printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '; }; }"]
ENTRYPOINT ["/usr/local/bin/calls-sfu"]
