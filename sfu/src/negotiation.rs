//! The peer-connection half of a session: SDP offer/answer in both directions (the SFU is the
//! polite peer), trickle ICE, incoming tracks becoming publications, and forwarded tracks added
//! and removed on the shell's command.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use calls_protocol::signalling::{
    ClientMessage, ErrorCode, IceCandidate, ServerMessage, TrackKind,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::candidates::{
    candidate_transport, first_mid, rewrite_candidate, rewrite_sdp, Advertise,
};
use crate::fastpath::{FastLeg, FastPair};
use crate::forward::{self, FeedbackRoutes, LegCodec, Publication};
use crate::peer::{self, negotiated_payload_type};
use crate::ratelimit::TokenBucket;
use crate::remote_candidates::{CandidatePolicy, Refusal, RemoteCandidates};
use crate::sdp_guard::{SdpGuard, SdpRefusal};
use crate::state::{SessionCommand, Shared};

/// How long the error that ends a session may wait for room in the session's queue.
const FINAL_ERROR_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};

/// Events the peer connection reports to its session task.
pub enum PeerEvent {
    /// A local ICE candidate to trickle.
    Candidate(RTCIceCandidateInit),
    /// The client started sending a track.
    Track(Arc<dyn TrackRemote>),
    /// The connection state changed.
    State(RTCPeerConnectionState),
}

struct Handler {
    events: mpsc::Sender<PeerEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.events.try_send(PeerEvent::Candidate(init));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.events.try_send(PeerEvent::Track(track));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.try_send(PeerEvent::State(state));
    }
}

/// A track forwarded to this session.
pub struct Forward {
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

/// The negotiation state of one session.
pub struct Negotiator {
    shared: Arc<Shared>,
    session_id: String,
    out: mpsc::Sender<ServerMessage>,
    pc: Arc<dyn PeerConnection>,
    /// The connection's fast path for forwarded voice (see `fastpath`).
    fast: Arc<FastLeg>,
    advertise: Advertise,
    /// The client's first offer has been answered.
    negotiated: bool,
    /// An SFU offer awaits the client's answer.
    offer_pending: bool,
    /// Forwarded tracks changed since the last SFU offer.
    needs_offer: bool,
    /// Commands that arrived before the first negotiation.
    deferred: Vec<SessionCommand>,
    /// Remote candidates that arrived before a remote description.
    early_candidates: Vec<IceCandidate>,
    forwards: HashMap<String, Forward>,
    /// Keyframe requests from this session, by the SSRC of the forwarded track they name.
    routes: Arc<FeedbackRoutes>,
    /// Whether the connection is up (DTLS done); forwarded packets are dropped until it is.
    media_up: watch::Sender<bool>,
    publications: Vec<JoinHandle<()>>,
    /// Media id of the first section of the local description: every candidate belongs to it
    /// (BUNDLE), so trickled candidates name it.
    first_mid: Option<String>,
    /// Sections per offer, bytes per section, offers per minute (issue 21, finding 1).
    sdp_guard: SdpGuard,
    /// Media sections of the SFU's pending offer (an answer may hold no more).
    offered_sections: usize,
    /// The remote candidates this session gave (issue 21, finding 8).
    remote_candidates: RemoteCandidates,
    /// Captions a bot may publish per second (issue 21, finding 7).
    captions: TokenBucket,
}

type Flow = ControlFlow<()>;

impl Negotiator {
    /// Builds the peer connection of a session.
    pub async fn start(
        shared: Arc<Shared>,
        session_id: String,
        out: mpsc::Sender<ServerMessage>,
        events: mpsc::Sender<PeerEvent>,
        advertise: Advertise,
    ) -> crate::Result<Self> {
        let fast = FastLeg::new(Arc::clone(&shared.mux))?;
        let pc = peer::build(
            &shared.config.ice,
            &shared.mux,
            Some(&shared.tcp_mux),
            Arc::new(Handler { events }),
            &fast,
        )
        .await?;
        let limits = shared.config.limits;
        let now = std::time::Instant::now();
        let sdp_guard = SdpGuard::new(
            limits.offers_per_minute,
            limits.offer_burst,
            limits.voice_tracks_per_session + limits.screen_tracks_per_session,
            now,
        );
        let remote_candidates = RemoteCandidates::new(
            CandidatePolicy {
                allow_loopback: shared.config.ice.allow_loopback_candidates,
                allow_link_local: shared.config.ice.allow_link_local_candidates,
            },
            limits.ice_candidates_per_session,
        );
        let captions = TokenBucket::new(
            limits.captions_per_second,
            limits.captions_per_second.saturating_mul(2),
            now,
        );
        Ok(Self {
            shared,
            session_id,
            out,
            pc,
            fast,
            advertise,
            negotiated: false,
            offer_pending: false,
            needs_offer: false,
            deferred: Vec::new(),
            early_candidates: Vec::new(),
            forwards: HashMap::new(),
            routes: Arc::new(FeedbackRoutes::default()),
            media_up: watch::channel(false).0,
            publications: Vec::new(),
            first_mid: None,
            sdp_guard,
            offered_sections: 0,
            remote_candidates,
            captions,
        })
    }

    /// Whether the client's first offer has been answered.
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Queues a message to the client.
    pub fn send(&self, message: ServerMessage) {
        self.shared.send(&self.session_id, message);
    }

    /// Queues an error message to the client.
    pub fn send_error(&self, code: ErrorCode, message: impl Into<String>) {
        // Sent straight on the session's own queue so it still goes out while the session is
        // being torn down. A full queue means the client does not read what it is sent: it misses
        // this reply as it misses the others.
        if self
            .out
            .try_send(ServerMessage::error(code, message))
            .is_err()
        {
            tracing::debug!(session_id = %self.session_id, ?code, "an error reply was dropped: the session's queue is full");
        }
    }

    /// Sends the error that ends the session, waiting a little for room in the queue: a client
    /// disconnected for flooding has usually filled it with the replies to its flood, and must
    /// still learn why it was disconnected.
    pub async fn send_final_error(&self, code: ErrorCode, message: impl Into<String>) {
        let error = ServerMessage::error(code, message);
        if self
            .out
            .send_timeout(error, FINAL_ERROR_WAIT)
            .await
            .is_err()
        {
            tracing::debug!(session_id = %self.session_id, ?code, "the session's last error was not sent: its queue stayed full");
        }
    }

    /// Handles one message from the client; `Break` ends the session.
    pub async fn handle_client(&mut self, message: ClientMessage) -> Flow {
        let id = self.session_id.clone();
        let result = match message {
            ClientMessage::Join { .. } => {
                self.send_error(ErrorCode::NotJoined, "already joined");
                return Flow::Continue(());
            }
            ClientMessage::Offer { sdp } => self.handle_offer(sdp).await,
            ClientMessage::Answer { sdp } => self.handle_answer(sdp).await,
            ClientMessage::IceCandidate { candidate } => self.handle_candidate(candidate).await,
            ClientMessage::Mute | ClientMessage::Unmute => {
                let muted = matches!(message, ClientMessage::Mute);
                let actions = self.shared.with_router(|r| r.handle_mute(&id, muted));
                self.shared.set_voice_muted(&id, muted);
                actions
                    .map(|a| self.shared.apply(a))
                    .map_err(|e| (e.code(), e.to_string()))
            }
            ClientMessage::ScreenOn | ClientMessage::ScreenOff => {
                let on = matches!(message, ClientMessage::ScreenOn);
                let screens: Vec<_> = self
                    .shared
                    .with_router(|r| r.tracks_of(&id))
                    .into_iter()
                    .filter(|t| t.kind == TrackKind::Screen)
                    .collect();
                let actions = self.shared.with_router(|r| r.handle_screen(&id, on));
                let result = actions
                    .map(|a| self.shared.apply(a))
                    .map_err(|e| (e.code(), e.to_string()));
                if !on {
                    for track in screens {
                        self.shared.unpublish(&track);
                    }
                }
                result
            }
            ClientMessage::Caption(caption) => {
                if self.captions.try_take(std::time::Instant::now()) {
                    self.shared
                        .with_router(|r| r.handle_caption(&id, caption))
                        .map(|a| self.shared.apply(a))
                        .map_err(|e| (e.code(), e.to_string()))
                } else {
                    Err((
                        ErrorCode::RateLimited,
                        format!(
                            "too many captions: at most {} a second; this one is dropped",
                            self.shared.config.limits.captions_per_second
                        ),
                    ))
                }
            }
            ClientMessage::Leave => return Flow::Break(()),
        };
        if let Err((code, message)) = result {
            self.shared.metrics.record_error("client_request");
            self.send_error(code, message);
        }
        Flow::Continue(())
    }

    async fn handle_offer(&mut self, sdp: String) -> Result<(), (ErrorCode, String)> {
        let bad = |err: webrtc::error::Error| (ErrorCode::BadSdp, err.to_string());
        if let Err(refusal) = self.sdp_guard.check_offer(&sdp, std::time::Instant::now()) {
            return Err(self.refuse_sdp(refusal));
        }
        let sdp = self.filter_remote_candidates(&sdp);
        let remote_sdp = sdp.clone();
        let offer = RTCSessionDescription::offer(sdp).map_err(bad)?;
        if self.offer_pending {
            // Glare: the SFU is polite. Roll back, answer, and offer again afterwards.
            tracing::debug!(session_id = %self.session_id, "offer glare: rolling back the sfu offer");
            let rollback = RTCSessionDescription::rollback(None).map_err(bad)?;
            self.pc.set_local_description(rollback).await.map_err(bad)?;
            self.offer_pending = false;
            self.needs_offer = true;
        }
        self.pc.set_remote_description(offer).await.map_err(bad)?;
        self.sdp_guard.note_applied(&remote_sdp);
        let answer = self.pc.create_answer(None).await.map_err(bad)?;
        let sdp = rewrite_sdp(&answer.sdp, &self.advertise);
        self.pc.set_local_description(answer).await.map_err(bad)?;
        self.note_local_description(&sdp);
        self.send(ServerMessage::Answer { sdp });
        self.flush_early_candidates().await;
        self.refresh_leg_codecs().await;
        if !self.negotiated {
            self.negotiated = true;
            for command in std::mem::take(&mut self.deferred) {
                self.apply_command(command).await;
            }
        }
        self.maybe_offer().await;
        Ok(())
    }

    async fn handle_answer(&mut self, sdp: String) -> Result<(), (ErrorCode, String)> {
        let bad = |err: webrtc::error::Error| (ErrorCode::BadSdp, err.to_string());
        if !self.offer_pending {
            return Err((ErrorCode::BadSdp, "no offer is pending".into()));
        }
        if let Err(refusal) = self.sdp_guard.check_answer(&sdp, self.offered_sections) {
            return Err(self.refuse_sdp(refusal));
        }
        let sdp = self.filter_remote_candidates(&sdp);
        let answer = RTCSessionDescription::answer(sdp).map_err(bad)?;
        self.pc.set_remote_description(answer).await.map_err(bad)?;
        self.offer_pending = false;
        self.flush_early_candidates().await;
        self.refresh_leg_codecs().await;
        self.maybe_offer().await;
        Ok(())
    }

    async fn handle_candidate(
        &mut self,
        candidate: IceCandidate,
    ) -> Result<(), (ErrorCode, String)> {
        if !candidate.candidate.is_empty() {
            if let Err(refusal) = self.remote_candidates.admit(&candidate.candidate) {
                // Dropped without an error: a real client's link-local or mDNS candidate is no
                // mistake of the person's, and the others still connect.
                self.count_candidate_refusal(refusal);
                return Ok(());
            }
        }
        if !self.negotiated {
            if self.early_candidates.len() < 64 {
                self.early_candidates.push(candidate);
            }
            return Ok(());
        }
        self.pc
            .add_ice_candidate(crate::session::candidate_init(candidate))
            .await
            .map_err(|err| (ErrorCode::BadSdp, format!("ice candidate refused: {err}")))
    }

    async fn flush_early_candidates(&mut self) {
        for candidate in std::mem::take(&mut self.early_candidates) {
            if let Err((code, message)) = self.handle_candidate(candidate).await {
                self.send_error(code, message);
            }
        }
    }

    /// Sends an SFU offer if forwarded tracks changed and no negotiation is in flight.
    async fn maybe_offer(&mut self) {
        if !self.needs_offer || self.offer_pending || !self.negotiated {
            return;
        }
        let offer = match self.pc.create_offer(None).await {
            Ok(offer) => offer,
            Err(err) => {
                self.shared.metrics.record_error("create_offer");
                tracing::warn!(error = %err, "create offer failed");
                return;
            }
        };
        let sdp = rewrite_sdp(&offer.sdp, &self.advertise);
        if let Err(err) = self.pc.set_local_description(offer).await {
            self.shared.metrics.record_error("set_local_description");
            tracing::warn!(error = %err, "set local offer failed");
            return;
        }
        self.needs_offer = false;
        self.offer_pending = true;
        self.offered_sections = crate::sdp_guard::media_sections(&sdp);
        self.sdp_guard.note_applied(&sdp);
        self.note_local_description(&sdp);
        for forward in self.forwards.values_mut() {
            forward.offered = true;
        }
        self.send(ServerMessage::Offer { sdp });
    }

    /// The error for a refused description, counted.
    fn refuse_sdp(&self, refusal: SdpRefusal) -> (ErrorCode, String) {
        let (code, metric) = match refusal {
            SdpRefusal::TooFast { .. } => (ErrorCode::RateLimited, "offer_rate_limited"),
            _ => (ErrorCode::BadSdp, "sdp_refused"),
        };
        self.shared.metrics.record_error(metric);
        tracing::debug!(session_id = %self.session_id, %refusal, "description refused");
        (code, refusal.to_string())
    }

    /// `sdp` without the candidates this session may not give (see `remote_candidates.rs`).
    fn filter_remote_candidates(&mut self, sdp: &str) -> String {
        let (sdp, refused) = self.remote_candidates.filter_sdp(sdp);
        for refusal in refused {
            self.count_candidate_refusal(refusal);
        }
        sdp
    }

    fn count_candidate_refusal(&self, refusal: Refusal) {
        if let Some(metric) = refusal.metric() {
            self.shared.metrics.record_error(metric);
        }
    }

    fn note_local_description(&mut self, sdp: &str) {
        if let Some(mid) = first_mid(sdp) {
            self.first_mid = Some(mid);
        }
    }

    /// Reads back, for every forwarded track the last negotiation covered, the payload type the
    /// receiver negotiated for its codec; the track's writer rewrites packets to it.
    async fn refresh_leg_codecs(&mut self) {
        for (key, forward) in &self.forwards {
            if !forward.offered {
                continue;
            }
            let Some(sender) = &forward.sender else {
                continue;
            };
            let leg = match sender.get_parameters().await {
                Ok(parameters) => {
                    match negotiated_payload_type(
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

    /// Handles a command from the shell.
    pub async fn handle_command(&mut self, command: SessionCommand) {
        if !self.negotiated {
            self.deferred.push(command);
            return;
        }
        self.apply_command(command).await;
        self.maybe_offer().await;
    }

    async fn apply_command(&mut self, command: SessionCommand) {
        match command {
            SessionCommand::Subscribe(publication) => {
                if let Err(err) = self.subscribe(publication).await {
                    self.shared.metrics.record_error("subscribe");
                    tracing::warn!(error = %err, "adding a forwarded track failed");
                }
            }
            SessionCommand::Unsubscribe(track) => {
                if let Some(forward) = self.forwards.remove(&track.to_string()) {
                    self.drop_forward(forward).await;
                    self.needs_offer = true;
                }
            }
        }
    }

    async fn subscribe(&mut self, publication: Arc<Publication>) -> crate::Result<()> {
        let key = publication.id.to_string();
        if self.forwards.contains_key(&key) {
            return Ok(());
        }
        let (kind, mime_type, codec) = match publication.id.kind {
            TrackKind::Voice => (RtpCodecKind::Audio, MIME_TYPE_OPUS, peer::opus_codec()),
            TrackKind::Screen => (RtpCodecKind::Video, MIME_TYPE_VP8, peer::vp8_codec()),
        };
        let ssrc = rand::random::<u32>();
        let owner = publication.id.session_id.clone();
        let track = MediaStreamTrack::new(
            owner.clone(),
            key.clone(),
            key.clone(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec,
                ..Default::default()
            }],
        );
        let local = Arc::new(TrackLocalStaticRTP::new(track));
        let transceiver = self
            .pc
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
        let fast_path = self.shared.config.ice.fast_path;
        let fast = (fast_path && publication.id.kind == TrackKind::Voice)
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
        self.needs_offer = true;
        Ok(())
    }

    async fn drop_forward(&self, forward: Forward) {
        forward.publication.remove_sink(&self.session_id);
        self.routes.remove(forward.ssrc);
        for task in &forward.tasks {
            task.abort();
        }
        if let Some(sender) = &forward.sender {
            if let Err(err) = self.pc.remove_track(sender).await {
                tracing::debug!(error = %err, "remove track failed");
            }
        }
    }

    /// Handles a peer-connection event; `Break` ends the session.
    pub async fn handle_peer_event(&mut self, event: PeerEvent) -> Flow {
        match event {
            PeerEvent::Candidate(init) => {
                if init.candidate.is_empty() {
                    return Flow::Continue(());
                }
                self.shared
                    .metrics
                    .ice_candidates
                    .with_label_values(&[candidate_transport(&init.candidate)])
                    .inc();
                // webrtc leaves the mid empty; a browser needs it (or a valid index) to place
                // the candidate, and under BUNDLE it is the first section's.
                let sdp_mid = init
                    .sdp_mid
                    .filter(|mid| !mid.is_empty())
                    .or_else(|| self.first_mid.clone());
                let sdp_mline_index = init.sdp_mline_index.or(Some(0));
                self.send(ServerMessage::IceCandidate {
                    candidate: IceCandidate {
                        candidate: rewrite_candidate(&init.candidate, &self.advertise),
                        sdp_mid,
                        sdp_mline_index,
                        username_fragment: init.username_fragment,
                    },
                });
            }
            PeerEvent::Track(remote) => self.publish(remote).await,
            PeerEvent::State(state) => {
                self.shared.metrics.record_conn_state(&state.to_string());
                if state == RTCPeerConnectionState::Connected && !self.fast.arm() {
                    tracing::debug!(session_id = %self.session_id, "fast path not armed: forwarded voice goes through the driver");
                }
                self.media_up
                    .send_replace(state == RTCPeerConnectionState::Connected);
                if matches!(
                    state,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                ) {
                    return Flow::Break(());
                }
            }
        }
        Flow::Continue(())
    }

    async fn publish(&mut self, remote: Arc<dyn TrackRemote>) {
        let kind = match remote.kind().await {
            RtpCodecKind::Audio => TrackKind::Voice,
            _ => TrackKind::Screen,
        };
        let ssrc = remote.ssrcs().await.first().copied().unwrap_or_default();
        let codec = remote.codec(ssrc).await.unwrap_or_else(|| match kind {
            TrackKind::Voice => peer::opus_codec(),
            TrackKind::Screen => peer::vp8_codec(),
        });
        let id = self.session_id.clone();
        if kind == TrackKind::Screen {
            // Sending video implies a screen share, even if `screen_on` was not sent first.
            if let Ok(actions) = self.shared.with_router(|r| r.handle_screen(&id, true)) {
                self.shared.apply(actions);
            }
        }
        let published = self.shared.with_router(|r| {
            let muted = r.is_muted(&id);
            r.handle_publish(&id, kind)
                .map(|(track, actions)| (track, actions, muted))
        });
        let (track, actions, muted) = match published {
            Ok(published) => published,
            Err(err) => {
                // Refused (the track limit): tell the client, forward nothing, and read the
                // track to its end so its packets do not pile up.
                tracing::info!(session_id = %id, error = %err, "publication refused");
                self.shared.metrics.record_error("track_limit");
                self.send_error(err.code(), err.to_string());
                self.publications.push(tokio::spawn(async move {
                    while let Some(event) = remote.poll().await {
                        if matches!(
                            event,
                            webrtc::media_stream::track_remote::TrackRemoteEvent::OnEnded
                        ) {
                            break;
                        }
                    }
                }));
                return;
            }
        };
        tracing::info!(track = %track, "track published");
        let publication = Arc::new(Publication::new(track.clone(), codec, remote, ssrc));
        publication.set_muted(kind == TrackKind::Voice && muted);
        self.shared.publish(Arc::clone(&publication), actions);
        let shared = Arc::clone(&self.shared);
        let routes = Arc::clone(&self.routes);
        self.publications.push(tokio::spawn(async move {
            forward::run_publication(publication, Arc::clone(&shared.metrics), routes).await;
            shared.unpublish(&track);
        }));
    }

    /// Closes the peer connection and stops every task of the session.
    pub async fn close(&mut self) {
        for (_, forward) in std::mem::take(&mut self.forwards) {
            forward.publication.remove_sink(&self.session_id);
            for task in &forward.tasks {
                task.abort();
            }
        }
        for task in &self.publications {
            task.abort();
        }
        let _ = self.pc.close().await;
    }
}
