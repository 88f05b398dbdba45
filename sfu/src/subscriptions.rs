//! The tracks forwarded to one session (its subscriptions): for each, a send-only transceiver on
//! the session's peer connection, a bounded queue the publication fans out into, and the two
//! tasks of `forward.rs` (the writer that rewrites SSRC and payload type for this leg, and the
//! relay of this receiver's keyframe requests). After each negotiation that covered a track, the
//! payload type the receiver negotiated for its codec is read back for the writer.

use std::collections::HashMap;
use std::sync::Arc;

use calls_protocol::signalling::{TrackId, TrackKind};
use calls_rtc::codecs::{self, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

use crate::fastpath::{FastLeg, FastPair};
use crate::forward::{self, FeedbackRoutes, LegCodec, Publication};
use crate::state::Shared;

/// A track forwarded to this session.
struct Forward {
    publication: Arc<Publication>,
    /// SSRC the SFU sends it with on this leg.
    ssrc: u32,
    sender: Option<Arc<dyn RtpSender>>,
    /// Codec the track carries (`audio/opus`, `video/VP8`).
    mime_type: &'static str,
    /// The payload type on this leg, read back after each negotiation that included the track.
    codec: watch::Sender<LegCodec>,
    /// Included in an SFU offer (so the next answer negotiates it).
    offered: bool,
    tasks: Vec<JoinHandle<()>>,
}

/// The tracks forwarded to one session.
pub struct Subscriptions {
    shared: Arc<Shared>,
    session_id: String,
    forwards: HashMap<String, Forward>,
    /// Keyframe requests from this session, by the SSRC of the forwarded track they name.
    routes: Arc<FeedbackRoutes>,
    /// Whether the connection is up (DTLS done); forwarded packets are dropped until it is.
    media_up: watch::Sender<bool>,
    /// The connection's fast path for forwarded voice (see `fastpath`).
    fast: Arc<FastLeg>,
}

impl Subscriptions {
    /// No tracks yet.
    pub fn new(shared: Arc<Shared>, session_id: String, fast: Arc<FastLeg>) -> Self {
        Self {
            shared,
            session_id,
            forwards: HashMap::new(),
            routes: Arc::new(FeedbackRoutes::default()),
            media_up: watch::channel(false).0,
            fast,
        }
    }

    /// Where this session's keyframe requests for forwarded tracks are routed.
    pub fn routes(&self) -> &Arc<FeedbackRoutes> {
        &self.routes
    }

    /// The connection came up or went down.
    pub fn set_media_up(&self, up: bool) {
        if up && !self.fast.arm() {
            tracing::debug!(session_id = %self.session_id, "fast path not armed: forwarded voice goes through the driver");
        }
        self.media_up.send_replace(up);
    }

    /// Starts forwarding `publication` on `pc`. False if it was forwarded already (no new offer
    /// is needed).
    pub async fn subscribe(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
        publication: Arc<Publication>,
    ) -> crate::Result<bool> {
        let key = publication.id.to_string();
        if self.forwards.contains_key(&key) {
            return Ok(false);
        }
        let (kind, mime_type) = match publication.id.kind {
            TrackKind::Voice => (RtpCodecKind::Audio, MIME_TYPE_OPUS),
            TrackKind::Screen => (RtpCodecKind::Video, MIME_TYPE_VP8),
        };
        let ssrc = rand::random::<u32>();
        let owner = publication.id.session_id.clone();
        let track = codecs::local_track(kind, &owner, &key, ssrc);
        let local = Arc::new(TrackLocalStaticRTP::new(track));
        let transceiver = pc
            .add_transceiver_from_track(
                Arc::clone(&local) as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![owner],
                    send_encodings: Vec::new(),
                }),
            )
            .await?;
        let sender = transceiver.sender().await.ok().flatten();
        let (sink, queue) = mpsc::channel(self.shared.config.limits.rtp_queue_size);
        let metrics = Arc::clone(&self.shared.metrics);
        self.routes.insert(ssrc, Arc::clone(&publication));
        let (leg_codec, leg_codec_rx) = watch::channel(LegCodec::Pending);
        // Voice only: video needs the driver's NACK answers and keyframe handling.
        let fast = (self.shared.config.ice.fast_path && publication.id.kind == TrackKind::Voice)
            .then(|| FastPair::new(Arc::clone(&self.fast), ssrc, leg_codec_rx.clone()));
        publication.add_sink(&self.session_id, sink, fast.clone());
        let tasks = vec![
            tokio::spawn(forward::run_writer(
                queue,
                self.media_up.subscribe(),
                leg_codec_rx,
                forward::WriterLeg {
                    local: Arc::clone(&local),
                    ssrc,
                    fast,
                },
                publication.media_kind(),
                Arc::clone(&metrics),
            )),
            tokio::spawn(forward::run_feedback(
                local,
                Arc::clone(&self.routes),
                metrics,
            )),
        ];
        self.forwards.insert(
            key,
            Forward {
                publication,
                ssrc,
                sender,
                mime_type,
                codec: leg_codec,
                offered: false,
                tasks,
            },
        );
        Ok(true)
    }

    /// Stops forwarding `track`. False if it was not forwarded.
    pub async fn unsubscribe(&mut self, pc: &Arc<dyn PeerConnection>, track: &TrackId) -> bool {
        let Some(forward) = self.forwards.remove(&track.to_string()) else {
            return false;
        };
        forward.publication.remove_sink(&self.session_id);
        self.routes.remove(forward.ssrc);
        for task in &forward.tasks {
            task.abort();
        }
        if let Some(sender) = &forward.sender {
            if let Err(err) = pc.remove_track(sender).await {
                tracing::debug!(error = %err, "remove track failed");
            }
        }
        true
    }

    /// Every track forwarded now is in the offer just made.
    pub fn mark_offered(&mut self) {
        for forward in self.forwards.values_mut() {
            forward.offered = true;
        }
    }

    /// Reads back, for every forwarded track the last negotiation covered, the payload type the
    /// receiver negotiated for its codec; the track's writer rewrites packets to it.
    pub async fn refresh_leg_codecs(&self) {
        for (key, forward) in &self.forwards {
            if !forward.offered {
                continue;
            }
            let Some(sender) = &forward.sender else {
                continue;
            };
            let leg = match sender.get_parameters().await {
                Ok(parameters) => {
                    match codecs::negotiated_payload_type(
                        &parameters.rtp_parameters.codecs,
                        forward.mime_type,
                    ) {
                        Some(payload_type) => LegCodec::Negotiated(payload_type),
                        None => LegCodec::Refused,
                    }
                }
                Err(err) => {
                    tracing::debug!(track = %key, error = %err, "sender parameters unavailable");
                    continue;
                }
            };
            if *forward.codec.borrow() != leg {
                tracing::debug!(session_id = %self.session_id, track = %key, ?leg, "forwarded track codec on this leg");
                if leg == LegCodec::Refused {
                    tracing::warn!(session_id = %self.session_id, track = %key, codec = forward.mime_type, "receiver did not accept the codec of a forwarded track");
                }
            }
            forward.codec.send_replace(leg);
        }
    }

    /// Stops every forwarded track's tasks (the session ends; its peer connection closes).
    pub fn close(&mut self) {
        for (_, forward) in std::mem::take(&mut self.forwards) {
            forward.publication.remove_sink(&self.session_id);
            for task in &forward.tasks {
                task.abort();
            }
        }
    }
}
