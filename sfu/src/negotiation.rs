//! The peer-connection half of a session: it drives the shared negotiation state machine
//! (`calls_rtc::negotiation`, the SFU on its polite side: the client offers first, and on glare
//! the SFU rolls its own offer back, answers, and offers again) against webrtc, guards what the
//! client's descriptions and candidates may cost (`sdp_guard.rs`, `remote_candidates.rs`),
//! trickles the SFU's candidates rewritten to the shared ports, turns incoming tracks into
//! publications, and adds and removes forwarded tracks on the shell's command
//! (`subscriptions.rs`).

use std::ops::ControlFlow;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use calls_protocol::signalling::{ErrorCode, IceCandidate, ServerMessage, TrackKind};
use calls_rtc::apply::{self, Step};
use calls_rtc::negotiation::{Action, Negotiation, Side};
use calls_rtc::{codecs, EventHandler, PeerEvent};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription,
};

use crate::candidates::{
    candidate_transport, first_mid, rewrite_candidate, rewrite_sdp, Advertise,
};
use crate::fastpath::FastLeg;
use crate::forward::{self, Publication};
use crate::outbox::Outbox;
use crate::remote_candidates::{CandidatePolicy, Refusal, RemoteCandidates};
use crate::requests;
use crate::sdp_guard::{self, SdpGuard, SdpRefusal};
use crate::state::{SessionCommand, Shared};
use crate::subscriptions::Subscriptions;

/// `Break` ends the session.
pub type Flow = ControlFlow<()>;

fn bad_sdp(err: impl std::fmt::Display) -> requests::Refusal {
    (ErrorCode::BadSdp, err.to_string())
}

/// The negotiation state of one session.
pub struct Negotiator {
    shared: Arc<Shared>,
    session_id: String,
    outbox: Outbox,
    pc: Arc<dyn PeerConnection>,
    advertise: Advertise,
    negotiation: Negotiation<String>,
    /// Commands that arrived before the first negotiation.
    deferred: Vec<SessionCommand>,
    subscriptions: Subscriptions,
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
}

impl Negotiator {
    /// Builds the peer connection of a session; its events go to `events` (what does not fit is
    /// counted as `peer_event_dropped`).
    pub async fn start(
        shared: Arc<Shared>,
        outbox: Outbox,
        session_id: String,
        events: mpsc::Sender<PeerEvent>,
        advertise: Advertise,
    ) -> crate::Result<Self> {
        let metrics = Arc::clone(&shared.metrics);
        let handler = EventHandler::new(events, Arc::new(AtomicU64::new(0)))
            .on_drop(move |_| metrics.record_error("peer_event_dropped"));
        let fast = FastLeg::new(Arc::clone(&shared.mux))?;
        let pc = crate::peer::build(
            &shared.config.ice,
            &shared.mux,
            Some(&shared.tcp_mux),
            Arc::new(handler),
            &fast,
        )
        .await?;
        let limits = shared.config.limits;
        let sdp_guard = SdpGuard::new(
            limits.offers_per_minute,
            limits.offer_burst,
            limits.voice_tracks_per_session + limits.screen_tracks_per_session,
            Instant::now(),
        );
        let remote_candidates = RemoteCandidates::new(
            CandidatePolicy {
                allow_loopback: shared.config.ice.allow_loopback_candidates,
                allow_link_local: shared.config.ice.allow_link_local_candidates,
            },
            limits.ice_candidates_per_session,
        );
        Ok(Self {
            subscriptions: Subscriptions::new(Arc::clone(&shared), session_id.clone(), fast),
            shared,
            session_id,
            outbox,
            pc,
            advertise,
            negotiation: Negotiation::new(Side::Polite),
            deferred: Vec::new(),
            publications: Vec::new(),
            first_mid: None,
            sdp_guard,
            offered_sections: 0,
            remote_candidates,
        })
    }

    /// Whether the client's first offer has been answered.
    pub fn negotiated(&self) -> bool {
        self.negotiation.negotiated()
    }

    /// The client's offer.
    pub async fn handle_offer(&mut self, sdp: String) -> Result<(), requests::Refusal> {
        if let Err(refusal) = self.sdp_guard.check_offer(&sdp, Instant::now()) {
            return Err(self.refuse_sdp(refusal));
        }
        let sdp = self.filter_remote_candidates(&sdp);
        // Read once here as well, so that an offer webrtc cannot read is refused before a pending
        // SFU offer is rolled back for it.
        RTCSessionDescription::offer(sdp.clone()).map_err(bad_sdp)?;
        self.negotiation.handle_remote_offer(sdp);
        self.drive().await
    }

    /// The client's answer to an SFU offer.
    pub async fn handle_answer(&mut self, sdp: String) -> Result<(), requests::Refusal> {
        self.negotiation
            .handle_remote_answer(sdp)
            .map_err(bad_sdp)?;
        self.drive().await
    }

    /// A candidate the client trickled.
    pub async fn handle_candidate(
        &mut self,
        candidate: IceCandidate,
    ) -> Result<(), requests::Refusal> {
        if !candidate.candidate.is_empty() {
            if let Err(refusal) = self.remote_candidates.admit(&candidate.candidate) {
                // Dropped without an error: a real client's link-local or mDNS candidate is no
                // mistake of the person's, and the others still connect.
                self.count_candidate_refusal(refusal);
                return Ok(());
            }
        }
        self.negotiation.handle_remote_candidate(candidate);
        self.drive().await
    }

    /// Applies what the negotiation asks for until it asks for nothing more. A refused
    /// description step ends it (the rest is dropped) and is the client's error; a failed offer
    /// is counted and retried after the next input; a refused candidate is reported and the rest
    /// goes on.
    async fn drive(&mut self) -> Result<(), requests::Refusal> {
        while let Some(action) = self.negotiation.poll_action() {
            let result = match action {
                Action::RollbackOffer => {
                    tracing::debug!(session_id = %self.session_id, "offer glare: rolling back the sfu offer");
                    apply::rollback(&*self.pc)
                        .await
                        .map(|()| self.negotiation.handle_rolled_back())
                        .map_err(|err| bad_sdp(err.error))
                }
                Action::Answer(offer) => self.answer(offer).await,
                Action::ApplyAnswer(answer) => self.apply_answer(answer).await,
                Action::Offer => {
                    if !self.offer().await {
                        self.negotiation.abandon();
                        return Ok(());
                    }
                    Ok(())
                }
                Action::AddCandidate(candidate) => {
                    if let Err(err) = apply::add_candidate(&*self.pc, candidate).await {
                        self.shared.metrics.record_error("client_request");
                        self.outbox
                            .send_error(ErrorCode::BadSdp, format!("ice candidate refused: {err}"));
                    }
                    Ok(())
                }
            };
            if result.is_err() {
                self.negotiation.abandon();
                return result;
            }
        }
        Ok(())
    }

    /// Applies the client's offer and sends the answer; the first one also applies the commands
    /// that waited for it.
    async fn answer(&mut self, offer: String) -> Result<(), requests::Refusal> {
        let remote_sdp = offer.clone();
        let answer = match apply::answer(&*self.pc, offer).await {
            Ok(answer) => answer,
            Err(err) => {
                if err.step != Step::SetRemoteDescription {
                    self.sdp_guard.note_applied(&remote_sdp);
                }
                return Err(bad_sdp(err.error));
            }
        };
        self.sdp_guard.note_applied(&remote_sdp);
        let sdp = rewrite_sdp(&answer, &self.advertise);
        self.note_local_description(&sdp);
        self.outbox.send(ServerMessage::Answer { sdp });
        let first = !self.negotiation.negotiated();
        self.negotiation.handle_answer_sent();
        self.subscriptions.refresh_leg_codecs().await;
        if first {
            for command in std::mem::take(&mut self.deferred) {
                self.apply_command(command).await;
            }
        }
        Ok(())
    }

    /// Applies the client's answer to the SFU's offer.
    async fn apply_answer(&mut self, sdp: String) -> Result<(), requests::Refusal> {
        if let Err(refusal) = self.sdp_guard.check_answer(&sdp, self.offered_sections) {
            return Err(self.refuse_sdp(refusal));
        }
        let sdp = self.filter_remote_candidates(&sdp);
        apply::apply_answer(&*self.pc, sdp)
            .await
            .map_err(|err| bad_sdp(err.error))?;
        self.negotiation.handle_answer_applied();
        self.subscriptions.refresh_leg_codecs().await;
        Ok(())
    }

    /// Makes and sends an SFU offer (forwarded tracks changed). False if webrtc refused
    /// (counted by the step that failed).
    async fn offer(&mut self) -> bool {
        let offer = match apply::make_offer(&*self.pc).await {
            Ok(offer) => offer,
            Err(err) => {
                self.shared.metrics.record_error(err.step.name());
                tracing::warn!(error = %err, "making an offer failed");
                return false;
            }
        };
        self.negotiation.handle_offer_made();
        let sdp = rewrite_sdp(&offer, &self.advertise);
        self.offered_sections = sdp_guard::media_sections(&sdp);
        self.sdp_guard.note_applied(&sdp);
        self.note_local_description(&sdp);
        self.subscriptions.mark_offered();
        self.outbox.send(ServerMessage::Offer { sdp });
        true
    }

    /// The error for a refused description, counted.
    fn refuse_sdp(&self, refusal: SdpRefusal) -> requests::Refusal {
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

    /// Handles a command from the shell.
    pub async fn handle_command(&mut self, command: SessionCommand) {
        if !self.negotiation.negotiated() {
            self.deferred.push(command);
            return;
        }
        self.apply_command(command).await;
        // A command only ever asks for an offer, whose failure is counted where it happens;
        // nothing here is the client's error, but one is still sent rather than lost.
        if let Err((code, message)) = self.drive().await {
            self.outbox.send_error(code, message);
        }
    }

    async fn apply_command(&mut self, command: SessionCommand) {
        let changed = match command {
            SessionCommand::Subscribe(publication) => {
                match self.subscriptions.subscribe(&self.pc, publication).await {
                    Ok(added) => added,
                    Err(err) => {
                        self.shared.metrics.record_error("subscribe");
                        tracing::warn!(error = %err, "adding a forwarded track failed");
                        false
                    }
                }
            }
            SessionCommand::Unsubscribe(track) => {
                self.subscriptions.unsubscribe(&self.pc, &track).await
            }
        };
        if changed {
            self.negotiation.handle_renegotiation_needed();
        }
    }

    /// Handles a peer-connection event; `Break` ends the session.
    pub async fn handle_peer_event(&mut self, event: PeerEvent) -> Flow {
        match event {
            PeerEvent::Candidate(init) => self.trickle(init),
            PeerEvent::Track(remote) => self.publish(remote).await,
            PeerEvent::State(state) => {
                self.shared.metrics.record_conn_state(&state.to_string());
                self.subscriptions
                    .set_media_up(state == RTCPeerConnectionState::Connected);
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

    /// Sends a local candidate to the client, rewritten to the shared port.
    fn trickle(&self, init: RTCIceCandidateInit) {
        if init.candidate.is_empty() {
            return;
        }
        self.shared
            .metrics
            .ice_candidates
            .with_label_values(&[candidate_transport(&init.candidate)])
            .inc();
        let mut candidate = calls_rtc::candidate::wire_candidate(init);
        candidate.candidate = rewrite_candidate(&candidate.candidate, &self.advertise);
        // webrtc leaves the mid empty; a browser needs it (or a valid index) to place the
        // candidate, and under BUNDLE it is the first section's.
        candidate.sdp_mid = candidate
            .sdp_mid
            .filter(|mid| !mid.is_empty())
            .or_else(|| self.first_mid.clone());
        candidate.sdp_mline_index = candidate.sdp_mline_index.or(Some(0));
        self.outbox.send(ServerMessage::IceCandidate { candidate });
    }

    /// A track the client sends becomes a publication (unless the track limit refuses it).
    async fn publish(&mut self, remote: Arc<dyn TrackRemote>) {
        let kind = match remote.kind().await {
            RtpCodecKind::Audio => TrackKind::Voice,
            _ => TrackKind::Screen,
        };
        let ssrc = remote.ssrcs().await.first().copied().unwrap_or_default();
        let codec = remote.codec(ssrc).await.unwrap_or_else(|| match kind {
            TrackKind::Voice => codecs::opus_codec(),
            TrackKind::Screen => codecs::vp8_codec(),
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
                self.outbox.send_error(err.code(), err.to_string());
                self.publications.push(tokio::spawn(async move {
                    while let Some(event) = remote.poll().await {
                        if matches!(event, TrackRemoteEvent::OnEnded) {
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
        let routes = Arc::clone(self.subscriptions.routes());
        self.publications.push(tokio::spawn(async move {
            forward::run_publication(publication, Arc::clone(&shared.metrics), routes).await;
            shared.unpublish(&track);
        }));
    }

    /// Closes the peer connection and stops every task of the session.
    pub async fn close(&mut self) {
        self.subscriptions.close();
        for task in &self.publications {
            task.abort();
        }
        if let Err(err) = self.pc.close().await {
            tracing::debug!(session_id = %self.session_id, error = %err, "closing the peer connection failed");
        }
    }
}
