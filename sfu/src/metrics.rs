//! Prometheus metrics of the SFU, all in one `Metrics` value that owns its own `Registry`
//! (so tests can run several SFUs in one process without clashing on a global registry).
//!
//! Series follow rtcd's names with an `sfu_` prefix. The per-packet counters are resolved to
//! label children once at start (`RtpSeries`), so the forwarding hot path increments an atomic
//! instead of hashing label values. Process CPU and memory come from the prometheus crate's
//! process collector (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), which
//! needs the crate's `process` feature (enabled in sfu/Cargo.toml).

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Direction of media or messages, seen from the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Kind of media a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn label(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

const DIRECTIONS: [Direction; 2] = [Direction::In, Direction::Out];
const KINDS: [MediaKind; 2] = [MediaKind::Audio, MediaKind::Video];

/// Pre-resolved RTP counters for one (direction, kind) pair.
#[derive(Clone)]
pub struct RtpSeries {
    pub packets: IntCounter,
    pub bytes: IntCounter,
    pub tracks: IntGauge,
}

impl RtpSeries {
    /// Counts one RTP packet of `bytes` bytes (payload plus header).
    pub fn record_packet(&self, bytes: usize) {
        self.packets.inc();
        self.bytes.inc_by(bytes as u64);
    }
}

/// The `type` values of `sfu_rtc_errors_total` the SFU records (exported at 0 from the start).
pub const ERROR_TYPES: &[&str] = &[
    "bad_message",
    "client_request",
    "create_offer",
    "http_accept",
    "http_header_timeout",
    "join_refused",
    "negotiation_timeout",
    "peer_connection",
    "peer_event_dropped",
    "rate_limited",
    "rtp_codec_refused",
    "rtp_held_dropped",
    "rtp_queue_full",
    "rtp_write",
    "session_queue_full",
    "set_local_description",
    "subscribe",
    "track_limit",
    "ws_queue_full",
];

/// Every metric the SFU exports.
pub struct Metrics {
    registry: Registry,
    /// Live WebRTC sessions (participants joined to a call).
    pub sessions: IntGauge,
    /// Peer connection state changes, by new `state`.
    pub conn_states: IntCounterVec,
    pub rtp_packets: IntCounterVec,
    pub rtp_bytes: IntCounterVec,
    /// Tracks currently published (`in`) or forwarded (`out`).
    pub rtp_tracks: IntGaugeVec,
    /// Errors by `type` (e.g. `rtp_queue_full`, `signalling`, `ice`).
    pub errors: IntCounterVec,
    /// Open signalling WebSockets.
    pub ws_connections: IntGauge,
    /// Signalling messages by `direction` and message `type`.
    pub ws_messages: IntCounterVec,
    /// Keyframe requests (PLI/FIR) from receivers by `result`: `relayed` to the publisher as a
    /// PLI, `coalesced` into one relayed shortly before, or `failed` to write.
    pub keyframe_requests: IntCounterVec,
    /// Local ICE candidates trickled to clients, by `transport` (`udp`, `tcp`): one per local
    /// address the SFU gathers on, per session.
    pub ice_candidates: IntCounterVec,
    /// Forwarded voice tracks the fast path took over from webrtc's driver (see `fastpath`).
    pub fast_path_tracks: prometheus::IntCounter,
    rtp: [[RtpSeries; 2]; 2],
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric name and labels are valid identifiers");
    registry
        .register(Box::new(vec.clone()))
        .expect("each metric name is registered once");
    vec
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)
        .expect("metric name and labels are valid identifiers");
    registry
        .register(Box::new(vec.clone()))
        .expect("each metric name is registered once");
    vec
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("metric name is a valid identifier");
    registry
        .register(Box::new(gauge.clone()))
        .expect("each metric name is registered once");
    gauge
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    let counter =
        prometheus::IntCounter::new(name, help).expect("metric name is a valid identifier");
    registry
        .register(Box::new(counter.clone()))
        .expect("each metric name is registered once");
    counter
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let sessions = gauge(&registry, "sfu_rtc_sessions_total", "Live RTC sessions.");
        let conn_states = counter_vec(
            &registry,
            "sfu_rtc_conn_states_total",
            "Peer connection state changes by new state.",
            &["state"],
        );
        let rtp_packets = counter_vec(
            &registry,
            "sfu_rtc_rtp_packets_total",
            "RTP packets received (in) and forwarded (out).",
            &["direction", "type"],
        );
        let rtp_bytes = counter_vec(
            &registry,
            "sfu_rtc_rtp_bytes_total",
            "RTP bytes received (in) and forwarded (out).",
            &["direction", "type"],
        );
        let rtp_tracks = gauge_vec(
            &registry,
            "sfu_rtc_rtp_tracks_total",
            "Tracks published to (in) and forwarded by (out) the SFU.",
            &["direction", "type"],
        );
        let errors = counter_vec(
            &registry,
            "sfu_rtc_errors_total",
            "Errors by type.",
            &["type"],
        );
        let ws_connections = gauge(
            &registry,
            "sfu_ws_connections_total",
            "Open signalling WebSocket connections.",
        );
        let ws_messages = counter_vec(
            &registry,
            "sfu_ws_messages_total",
            "Signalling messages by direction and type.",
            &["direction", "type"],
        );
        let keyframe_requests = counter_vec(
            &registry,
            "sfu_rtc_keyframe_requests_total",
            "Keyframe requests from receivers: relayed to the publisher, coalesced, or failed.",
            &["result"],
        );
        // Known label values start at 0, so dashboards and alerts see the series before the first event.
        for kind in ERROR_TYPES {
            errors.with_label_values(&[kind]);
        }
        for result in ["relayed", "coalesced", "failed"] {
            keyframe_requests.with_label_values(&[result]);
        }
        let ice_candidates = counter_vec(
            &registry,
            "sfu_ice_local_candidates_total",
            "Local ICE candidates signalled to clients, by transport.",
            &["transport"],
        );
        let fast_path_tracks = counter(
            &registry,
            "sfu_rtc_fast_path_tracks_total",
            "Forwarded voice tracks handed over to the fast path (SRTP by the SFU, sent on the shared UDP socket).",
        );
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector is registered once");

        let series = |direction: Direction, kind: MediaKind| {
            let labels = [direction.label(), kind.label()];
            RtpSeries {
                packets: rtp_packets.with_label_values(&labels),
                bytes: rtp_bytes.with_label_values(&labels),
                tracks: rtp_tracks.with_label_values(&labels),
            }
        };
        let rtp = DIRECTIONS.map(|direction| KINDS.map(|kind| series(direction, kind)));
        Metrics {
            registry,
            sessions,
            conn_states,
            rtp_packets,
            rtp_bytes,
            rtp_tracks,
            errors,
            ws_connections,
            ws_messages,
            keyframe_requests,
            ice_candidates,
            fast_path_tracks,
            rtp,
        }
    }

    /// The pre-resolved RTP series for `direction` and `kind`; clone it into forwarding tasks.
    pub fn rtp(&self, direction: Direction, kind: MediaKind) -> &RtpSeries {
        &self.rtp[direction as usize][kind as usize]
    }

    /// Counts a peer connection entering `state` (e.g. `connected`, `failed`).
    pub fn record_conn_state(&self, state: &str) {
        self.conn_states.with_label_values(&[state]).inc();
    }

    /// Counts an error of `kind`.
    pub fn record_error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    /// Counts one signalling message of `message_type`.
    pub fn record_ws_message(&self, direction: Direction, message_type: &str) {
        self.ws_messages
            .with_label_values(&[direction.label(), message_type])
            .inc();
    }

    /// The registry, for callers that add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text encoder writes UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_contains_every_series() {
        let metrics = Metrics::new();
        metrics.sessions.inc();
        metrics.ws_connections.inc();
        metrics.record_conn_state("connected");
        metrics.record_error("rtp_queue_full");
        metrics.record_ws_message(Direction::In, "join");
        metrics
            .rtp(Direction::Out, MediaKind::Audio)
            .record_packet(120);
        metrics.rtp(Direction::In, MediaKind::Video).tracks.inc();
        let text = metrics.render();
        for name in [
            "sfu_rtc_sessions_total 1",
            "sfu_rtc_conn_states_total{state=\"connected\"} 1",
            "sfu_rtc_rtp_packets_total{direction=\"out\",type=\"audio\"} 1",
            "sfu_rtc_rtp_bytes_total{direction=\"out\",type=\"audio\"} 120",
            "sfu_rtc_rtp_tracks_total{direction=\"in\",type=\"video\"} 1",
            "sfu_rtc_errors_total{type=\"rtp_queue_full\"} 1",
            "sfu_ws_connections_total 1",
            "sfu_ws_messages_total{direction=\"in\",type=\"join\"} 1",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn rtp_series_are_distinct() {
        let metrics = Metrics::new();
        metrics
            .rtp(Direction::In, MediaKind::Audio)
            .record_packet(10);
        metrics
            .rtp(Direction::In, MediaKind::Audio)
            .record_packet(10);
        metrics
            .rtp(Direction::Out, MediaKind::Video)
            .record_packet(5);
        let audio_in = metrics
            .rtp_packets
            .with_label_values(&["in", "audio"])
            .get();
        let video_out = metrics.rtp_bytes.with_label_values(&["out", "video"]).get();
        let audio_out = metrics
            .rtp_packets
            .with_label_values(&["out", "audio"])
            .get();
        assert_eq!((audio_in, video_out, audio_out), (2, 5, 0));
    }

    #[test]
    fn two_instances_do_not_clash() {
        let first = Metrics::new();
        let second = Metrics::new();
        first.sessions.inc();
        assert_eq!(second.sessions.get(), 0);
    }
}
