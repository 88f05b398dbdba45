//! Media forwarding: one [`Publication`] per track a participant sends, fanned out through a
//! bounded queue per subscriber into that subscriber's local track.
//!
//! The publisher's reader never waits on a subscriber: a full queue drops the packet for that
//! subscriber only (counted in `sfu_rtc_errors_total{type="rtp_queue_full"}`), so one slow
//! receiver cannot stall a call. A receiver whose leg is still negotiating gets the packets of that
//! time once it is ready ([`HELD_WHILE_NEGOTIATING`]), so a new speaker's first words are not lost. Keyframe requests (PLI/FIR) from subscribers are relayed to the
//! publisher as a PLI for the publisher's SSRC, at most one per [`KEYFRAME_REQUEST_INTERVAL`].
//! webrtc routes an inbound RTCP batch to one track by the SSRC its *first* packet names (a
//! browser's receiver report may come first), so requests are matched to publications by the
//! SSRC they name, through the session's [`FeedbackRoutes`], whichever track they arrived on.
//! They reach the application at all only because `peer.rs` registers `calls_rtc`'s `KeyframeRequestMarker`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calls_protocol::signalling::{TrackId, TrackKind};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rtc::shared::marshal::Marshal;
use rtc::{rtcp, rtp};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use crate::fastpath::FastPair;
pub use crate::leg_codec::LegCodec;
use crate::metrics::{Direction, MediaKind, Metrics, RtpSeries};

/// Minimum spacing of keyframe requests relayed to one publisher.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// One subscriber of a publication: its writer's queue, and the fast path when it has one.
struct Sink {
    queue: mpsc::Sender<rtp::Packet>,
    fast: Option<Arc<FastPair>>,
}

/// A track one participant publishes, with its subscribers' queues.
pub struct Publication {
    /// The forwarded id (`voice_<session>_<n>` / `screen_<session>_<n>`).
    pub id: TrackId,
    /// Codec of the incoming track.
    pub codec: RTCRtpCodec,
    remote: Arc<dyn TrackRemote>,
    media_ssrc: u32,
    sinks: Mutex<HashMap<String, Sink>>,
    muted: AtomicBool,
    last_keyframe_request: Mutex<Option<Instant>>,
}

impl Publication {
    /// Wraps an incoming track.
    pub fn new(
        id: TrackId,
        codec: RTCRtpCodec,
        remote: Arc<dyn TrackRemote>,
        media_ssrc: u32,
    ) -> Self {
        Self {
            id,
            codec,
            remote,
            media_ssrc,
            sinks: Mutex::new(HashMap::new()),
            muted: AtomicBool::new(false),
            last_keyframe_request: Mutex::new(None),
        }
    }

    /// Metrics label of this track's media.
    pub fn media_kind(&self) -> MediaKind {
        match self.id.kind {
            TrackKind::Voice => MediaKind::Audio,
            TrackKind::Screen => MediaKind::Video,
        }
    }

    /// Stops or resumes forwarding (voice mute).
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Adds a subscriber's queue, and its fast path if it may have one (see `fastpath`).
    pub fn add_sink(
        &self,
        subscriber: &str,
        queue: mpsc::Sender<rtp::Packet>,
        fast: Option<Arc<FastPair>>,
    ) {
        self.sinks
            .lock()
            .expect("sinks lock is never poisoned")
            .insert(subscriber.to_owned(), Sink { queue, fast });
    }

    /// Removes a subscriber's queue (its writer then ends).
    pub fn remove_sink(&self, subscriber: &str) {
        self.sinks
            .lock()
            .expect("sinks lock is never poisoned")
            .remove(subscriber);
    }

    /// Number of subscribers.
    pub fn sink_count(&self) -> usize {
        self.sinks
            .lock()
            .expect("sinks lock is never poisoned")
            .len()
    }

    /// Asks the publisher for a keyframe (a PLI naming the SSRC it sends with), unless one was
    /// asked for very recently.
    pub async fn request_keyframe(&self, metrics: &Metrics) {
        {
            let mut last = self
                .last_keyframe_request
                .lock()
                .expect("keyframe lock is never poisoned");
            let now = Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < KEYFRAME_REQUEST_INTERVAL) {
                metrics
                    .keyframe_requests
                    .with_label_values(&["coalesced"])
                    .inc();
                return;
            }
            *last = Some(now);
        }
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: self.media_ssrc,
        };
        match self.remote.write_rtcp(vec![Box::new(pli)]).await {
            Ok(()) => {
                tracing::debug!(track = %self.id, ssrc = self.media_ssrc, "keyframe requested");
                metrics
                    .keyframe_requests
                    .with_label_values(&["relayed"])
                    .inc();
            }
            Err(err) => {
                tracing::debug!(track = %self.id, error = %err, "keyframe request failed");
                metrics
                    .keyframe_requests
                    .with_label_values(&["failed"])
                    .inc();
            }
        }
    }

    /// Hands `packet` to every subscriber: sent at once on the subscribers' fast paths that own
    /// the track, queued to the writers of the others.
    fn fan_out(&self, packet: &rtp::Packet, metrics: &Metrics, fast: &mut FastScratch) {
        let sinks = self.sinks.lock().expect("sinks lock is never poisoned");
        fast.plaintext = None;
        for sink in sinks.values() {
            if let Some(pair) = sink.fast.as_ref().filter(|pair| pair.is_owned()) {
                if fast.plaintext.is_none() {
                    fast.plaintext = packet.marshal().ok();
                }
                if let Some(plaintext) = &fast.plaintext {
                    match pair.forward(plaintext, &packet.header, &mut fast.datagram) {
                        Some(Ok(())) => {
                            fast.outgoing.record_packet(packet.payload.len());
                            continue;
                        }
                        Some(Err(err)) => {
                            tracing::trace!(error = %err, "fast path send failed");
                            metrics.record_error("rtp_write");
                            continue;
                        }
                        None => {}
                    }
                }
            }
            if sink.queue.try_send(packet.clone()).is_err() {
                metrics.record_error("rtp_queue_full");
            }
        }
    }
}

/// Counts a track in the tracks gauge for as long as it lives, even if its task is aborted.
struct LiveTrack(prometheus::IntGauge);

impl LiveTrack {
    fn new(series: &RtpSeries) -> Self {
        series.tracks.inc();
        Self(series.tracks.clone())
    }
}

impl Drop for LiveTrack {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads the publisher's track until it ends, forwarding every packet. Keyframe requests the
/// publisher sends about tracks it receives may land here too; they go through `routes`, the
/// publisher's own session's.
pub async fn run_publication(
    publication: Arc<Publication>,
    metrics: Arc<Metrics>,
    routes: Arc<FeedbackRoutes>,
) {
    let kind = publication.media_kind();
    let incoming = metrics.rtp(Direction::In, kind).clone();
    let _live = LiveTrack::new(&incoming);
    let mut fast = FastScratch {
        plaintext: None,
        datagram: Vec::with_capacity(1500),
        outgoing: metrics.rtp(Direction::Out, kind).clone(),
    };
    while let Some(event) = publication.remote.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(mut packet) => {
                incoming.record_packet(packet.payload.len());
                if !publication.muted.load(Ordering::Relaxed) {
                    // Header extension ids are per leg, so no leg sends them: dropped once here,
                    // the per-receiver clone below copies no extension list.
                    strip_extensions(&mut packet.header);
                    publication.fan_out(&packet, &metrics, &mut fast);
                }
            }
            TrackRemoteEvent::OnRtcpPacket(packets) => {
                routes.relay(&packets, &metrics).await;
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

/// What a publication's task reuses for every packet it sends on fast paths.
struct FastScratch {
    /// The packet as received, extensions dropped, marshalled once for all subscribers.
    plaintext: Option<bytes::BytesMut>,
    /// One subscriber's copy, rewritten for its leg.
    datagram: Vec<u8>,
    outgoing: RtpSeries,
}

/// Drops a header's extensions (their ids are negotiated per leg). Free when there are none.
fn strip_extensions(header: &mut rtp::header::Header) {
    header.extension = false;
    header.extensions.clear();
    header.extensions_padding = 0;
}

/// Packets one receiver's leg holds while its connection or its negotiation is not up yet: 100
/// packets, two seconds of voice. A track reaches a receiver only after an offer/answer round with it
/// (the SFU publishes a track on its first packet), so without this a new speaker's first words were
/// lost on every receiver that was still answering; the oldest held packet goes first when full.
pub const HELD_WHILE_NEGOTIATING: usize = 100;

/// What a leg can do with a packet now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// Connection and negotiation are up: send with this payload type.
    Ready(u8),
    /// Hold the packet until the leg is ready.
    Wait,
    /// The receiver accepted no codec the track can carry.
    Refused,
}

fn leg_state(media_up: bool, codec: LegCodec) -> LegState {
    match (media_up, codec) {
        (_, LegCodec::Refused) => LegState::Refused,
        (true, LegCodec::Negotiated(payload_type)) => LegState::Ready(payload_type),
        _ => LegState::Wait,
    }
}

/// Packets held for a leg that is not ready, oldest first, at most [`HELD_WHILE_NEGOTIATING`].
#[derive(Debug, Default)]
struct Held {
    packets: std::collections::VecDeque<rtp::Packet>,
}

impl Held {
    /// Holds `packet`; returns whether an older packet had to be dropped for it.
    fn handle_packet(&mut self, packet: rtp::Packet) -> bool {
        let full = self.packets.len() >= HELD_WHILE_NEGOTIATING;
        if full {
            self.packets.pop_front();
        }
        self.packets.push_back(packet);
        full
    }

    fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    fn drain(&mut self) -> impl Iterator<Item = rtp::Packet> + '_ {
        self.packets.drain(..)
    }
}

/// Where one subscriber's writer sends a track.
pub struct WriterLeg {
    /// The track on the subscriber's connection (the driver's path).
    pub local: Arc<TrackLocalStaticRTP>,
    /// The SSRC the SFU sends the track with on this leg.
    pub ssrc: u32,
    /// The fast path, for voice (see `fastpath`).
    pub fast: Option<Arc<FastPair>>,
}

/// Writes one subscriber's queue into its local track, rewriting SSRC and payload type to the
/// ones negotiated on that leg (`codec`, updated after every negotiation) and dropping header
/// extensions (their ids are per leg). While the subscriber's connection is not up (`media_up`
/// false: before DTLS completes there are no SRTP keys) or the track's negotiation with it has not
/// completed, packets are held (at most [`HELD_WHILE_NEGOTIATING`], the oldest dropped and counted
/// in `sfu_rtc_errors_total{type="rtp_held_dropped"}`) and sent as soon as the leg is ready. Only
/// packets handed to the connection count as sent (`sfu_rtc_rtp_packets_total{direction="out"}`);
/// packets the receiver cannot take count in `sfu_rtc_errors_total{type="rtp_codec_refused"}` or
/// `{type="rtp_write"}`. With a `fast` pair whose leg is armed, the first packet ready to go takes
/// the track over to the fast path (see `fastpath`), which sends it and every later one.
pub async fn run_writer(
    mut queue: mpsc::Receiver<rtp::Packet>,
    mut media_up: watch::Receiver<bool>,
    mut codec: watch::Receiver<LegCodec>,
    leg: WriterLeg,
    kind: MediaKind,
    metrics: Arc<Metrics>,
) {
    let WriterLeg { local, ssrc, fast } = leg;
    let outgoing = metrics.rtp(Direction::Out, kind).clone();
    let _live = LiveTrack::new(&outgoing);
    let mut held = Held::default();
    loop {
        // With packets held, a change of the leg (negotiation done, connection up) is worth waking
        // for; otherwise the next packet is.
        let waiting = !held.is_empty();
        let packet = tokio::select! {
            changed = codec.changed(), if waiting => match changed {
                Ok(()) => None,
                Err(_) => break,
            },
            changed = media_up.changed(), if waiting => match changed {
                Ok(()) => None,
                Err(_) => break,
            },
            packet = queue.recv() => match packet {
                Some(packet) => Some(packet),
                None => break,
            },
        };
        let state = leg_state(*media_up.borrow_and_update(), *codec.borrow_and_update());
        match state {
            LegState::Wait => {
                if let Some(packet) = packet {
                    if held.handle_packet(packet) {
                        metrics.record_error("rtp_held_dropped");
                    }
                }
            }
            LegState::Refused => {
                for _ in held.drain().chain(packet) {
                    metrics.record_error("rtp_codec_refused");
                }
            }
            LegState::Ready(payload_type) => {
                for mut packet in held.drain().chain(packet) {
                    packet.header.ssrc = ssrc;
                    packet.header.payload_type = payload_type;
                    strip_extensions(&mut packet.header);
                    let bytes = packet.payload.len();
                    if let Some(pair) = fast.as_ref().filter(|pair| pair.is_armed()) {
                        let handover = !pair.is_owned();
                        match pair.send_rewritten(&packet) {
                            Ok(()) => {
                                if handover {
                                    metrics.fast_path_tracks.inc();
                                }
                                outgoing.record_packet(bytes);
                            }
                            Err(err) => {
                                tracing::trace!(error = %err, "fast path send failed");
                                metrics.record_error("rtp_write");
                            }
                        }
                        continue;
                    }
                    let sequence_number = packet.header.sequence_number;
                    if local.write_rtp(packet).await.is_err() {
                        // Unbound (removed while this packet was queued) or the connection is closing.
                        metrics.record_error("rtp_write");
                        continue;
                    }
                    if let Some(pair) = &fast {
                        pair.note_driver_sent(sequence_number);
                    }
                    outgoing.record_packet(bytes);
                }
            }
        }
    }
}

/// The tracks forwarded to one subscriber session by the SSRC the SFU sends each with.
#[derive(Default)]
pub struct FeedbackRoutes(Mutex<HashMap<u32, Arc<Publication>>>);

impl FeedbackRoutes {
    /// Routes requests naming `ssrc` to `publication`.
    pub fn insert(&self, ssrc: u32, publication: Arc<Publication>) {
        self.0
            .lock()
            .expect("routes lock is never poisoned")
            .insert(ssrc, publication);
    }

    /// Forgets `ssrc`.
    pub fn remove(&self, ssrc: u32) {
        self.0
            .lock()
            .expect("routes lock is never poisoned")
            .remove(&ssrc);
    }

    /// Relays every keyframe request in `packets` to the publication it names.
    pub async fn relay(&self, packets: &[Box<dyn rtcp::Packet>], metrics: &Metrics) {
        let targets: Vec<Arc<Publication>> = {
            let routes = self.0.lock().expect("routes lock is never poisoned");
            let mut ssrcs = keyframe_request_ssrcs(packets);
            ssrcs.dedup();
            ssrcs
                .iter()
                .filter_map(|ssrc| routes.get(ssrc).cloned())
                .collect()
        };
        for publication in targets {
            publication.request_keyframe(metrics).await;
        }
    }
}

/// The media SSRCs that the PLI and FIR packets among `packets` ask keyframes for, in order.
pub fn keyframe_request_ssrcs(packets: &[Box<dyn rtcp::Packet>]) -> Vec<u32> {
    let mut ssrcs = Vec::new();
    for packet in packets {
        let any = packet.as_any();
        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
            ssrcs.push(pli.media_ssrc);
        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
            ssrcs.extend(fir.fir.iter().map(|entry| entry.ssrc));
        }
    }
    ssrcs
}

/// Relays the keyframe requests a subscriber's RTCP carries (webrtc delivers them on this local
/// track) to the publishers, until the task is aborted on removal.
pub async fn run_feedback(
    local: Arc<TrackLocalStaticRTP>,
    routes: Arc<FeedbackRoutes>,
    metrics: Arc<Metrics>,
) {
    loop {
        // The track yields nothing until negotiation binds it.
        let Some(event) = local.poll().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        routes.relay(&packets, &metrics).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
    use rtc::rtcp::receiver_report::ReceiverReport;

    #[test]
    fn keyframe_requests_are_found_by_the_ssrc_they_name() {
        let packets: Vec<Box<dyn rtcp::Packet>> = vec![
            Box::new(ReceiverReport::default()),
            Box::new(PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: 42,
            }),
            Box::new(FullIntraRequest {
                sender_ssrc: 1,
                media_ssrc: 0,
                fir: vec![FirEntry {
                    ssrc: 7,
                    sequence_number: 3,
                }],
            }),
        ];
        assert_eq!(keyframe_request_ssrcs(&packets), vec![42, 7]);
        assert!(keyframe_request_ssrcs(&[Box::new(ReceiverReport::default())]).is_empty());
    }

    #[test]
    fn a_leg_sends_only_when_connected_and_negotiated() {
        assert_eq!(leg_state(false, LegCodec::Pending), LegState::Wait);
        assert_eq!(leg_state(true, LegCodec::Pending), LegState::Wait);
        assert_eq!(leg_state(false, LegCodec::Negotiated(111)), LegState::Wait);
        assert_eq!(
            leg_state(true, LegCodec::Negotiated(111)),
            LegState::Ready(111)
        );
        assert_eq!(leg_state(true, LegCodec::Refused), LegState::Refused);
        assert_eq!(leg_state(false, LegCodec::Refused), LegState::Refused);
    }

    #[test]
    fn held_packets_keep_their_order_and_the_oldest_go_when_full() {
        let packet = |sequence: u16| {
            let mut packet = rtp::Packet::default();
            packet.header.sequence_number = sequence;
            packet
        };
        let mut held = Held::default();
        assert!(held.is_empty());
        let total = HELD_WHILE_NEGOTIATING as u16 + 3;
        let dropped = (0..total)
            .filter(|&sequence| held.handle_packet(packet(sequence)))
            .count();
        assert_eq!(dropped, 3);
        let sequences: Vec<u16> = held.drain().map(|p| p.header.sequence_number).collect();
        assert_eq!(sequences, (3..total).collect::<Vec<_>>());
        assert!(held.is_empty());
    }
}
