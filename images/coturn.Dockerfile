# calls-coturn: Debian's coturn as the calls stack's TURN server (docker-compose.yml's `coturn`).
# TURN on 3478 (UDP and TCP), relayed media on the range given by --min-port/--max-port. Clients get
# time-limited credentials from the SFU (coturn's REST-API scheme): start it with
# TURN_STATIC_AUTH_SECRET set to the SFU's ice.turn_static_auth_secret. The secret goes into a config
# file at start rather than onto the command line, where `ps` on the host would show it.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends coturn \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
USER turnserver
EXPOSE 3478/udp 3478/tcp
ENTRYPOINT ["bash", "-c", "set -eu; umask 077; conf=$(mktemp); printf 'static-auth-secret=%s\\n' \"${TURN_STATIC_AUTH_SECRET:?set TURN_STATIC_AUTH_SECRET}\" > \"$conf\"; exec turnserver -c \"$conf\" --use-auth-secret \"$@\"", "turnserver"]
CMD ["--listening-port=3478", "--realm=calls", "--fingerprint", "--no-cli", "--no-tls", "--no-dtls", "--log-file=stdout", "--simple-log"]
