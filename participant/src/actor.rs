//! The task behind a participant (see `client.rs`): it owns the signalling WebSocket and the peer
//! connection, so negotiation steps never interleave. It drives the shared negotiation state
//! machine (`calls_rtc::negotiation`) on its impolite side: the client makes the first offer, and
//! an SFU offer that arrives while the client's own offer is pending is ignored (the SFU rolls
//! back and offers again after answering).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use calls_protocol::signalling::{ClientMessage, ErrorCode, ServerMessage};
use calls_rtc::apply;
use calls_rtc::negotiation::{Action, Negotiation};
use calls_rtc::PeerEvent;
use futures::{SinkExt, StreamExt};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};
use webrtc::rtp_transceiver::RtpSender;

use crate::event::Event;
use crate::track::{Names, RemoteTrack};
use crate::{Error, Result};

pub(crate) enum Command {
    Send(ClientMessage),
    AddTrack(
        Arc<TrackLocalStaticSample>,
        oneshot::Sender<Result<Arc<dyn RtpSender>>>,
    ),
    RemoveTrack(Arc<dyn RtpSender>),
    Leave(oneshot::Sender<()>),
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn next_server_message(socket: &mut Socket) -> Result<ServerMessage> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return ServerMessage::from_json(&text)
                    .map_err(|err| Error::Signalling(format!("bad message from sfu: {err}")))
            }
            Some(Ok(Message::Close(_))) | None => return Err(Error::Disconnected),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(Error::Signalling(err.to_string())),
        }
    }
}

pub(crate) struct Actor {
    pub(crate) socket: Socket,
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) state: watch::Sender<RTCPeerConnectionState>,
    pub(crate) names: Names,
    /// The client's side of perfect negotiation: impolite, makes the first offer.
    pub(crate) negotiation: Negotiation<String>,
    /// Events dropped because a queue was full (shared with the peer-event handler).
    pub(crate) dropped: Arc<AtomicU64>,
}

impl Actor {
    fn emit(&self, event: Event) {
        // A consumer that does not read events must not stall the connection: what does not fit is
        // counted (`Participant::events_dropped`), and the first drop is logged.
        if let Err(error) = self.events.try_send(event) {
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(event = ?error.into_inner(), "the event queue is full: dropping events (counted)");
            }
        }
    }

    async fn send(&mut self, message: ClientMessage) -> Result<()> {
        self.socket
            .send(Message::Text(message.to_json().into()))
            .await
            .map_err(|err| Error::Signalling(err.to_string()))
    }

    /// Asks for an offer: the first one, or another after a track was added or removed (made once
    /// the one in flight, if any, is answered).
    pub(crate) async fn renegotiate(&mut self) -> Result<()> {
        self.negotiation.handle_renegotiation_needed();
        self.drive().await
    }

    /// Applies what the negotiation asks for until it asks for nothing more; the first failed
    /// step drops the rest and is returned.
    async fn drive(&mut self) -> Result<()> {
        while let Some(action) = self.negotiation.poll_action() {
            if let Err(err) = self.apply(action).await {
                self.negotiation.abandon();
                return Err(err);
            }
        }
        Ok(())
    }

    async fn apply(&mut self, action: Action<String>) -> Result<()> {
        match action {
            Action::RollbackOffer => {
                apply::rollback(&*self.pc).await?;
                self.negotiation.handle_rolled_back();
            }
            Action::Answer(offer) => {
                let sdp = apply::answer(&*self.pc, offer).await?;
                self.negotiation.handle_answer_sent();
                self.send(ClientMessage::Answer { sdp }).await?;
            }
            Action::ApplyAnswer(answer) => {
                apply::apply_answer(&*self.pc, answer).await?;
                self.negotiation.handle_answer_applied();
            }
            Action::Offer => {
                let sdp = apply::make_offer(&*self.pc).await?;
                self.negotiation.handle_offer_made();
                self.send(ClientMessage::Offer { sdp }).await?;
            }
            Action::AddCandidate(candidate) => {
                if let Err(err) = apply::add_candidate(&*self.pc, candidate).await {
                    tracing::debug!(error = %err, "remote candidate refused");
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut peer_events: mpsc::Receiver<PeerEvent>,
    ) {
        let mut leaving = None;
        loop {
            tokio::select! {
                message = next_server_message(&mut self.socket) => match message {
                    Ok(message) => {
                        if let Err(err) = self.handle_server(message).await {
                            tracing::debug!(error = %err, "handling a server message failed");
                        }
                    }
                    Err(_) => break,
                },
                command = commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        let _ = self.send(ClientMessage::Leave).await;
                        leaving = Some(done);
                        break;
                    }
                    Some(command) => {
                        if let Err(err) = self.handle_command(command).await {
                            self.emit(Event::Error { code: ErrorCode::Internal, message: err.to_string() });
                        }
                    }
                    None => break,
                },
                Some(event) = peer_events.recv() => self.handle_peer(event).await,
            }
        }
        let _ = self.pc.close().await;
        let _ = self.socket.close(None).await;
        self.emit(Event::Disconnected);
        if let Some(done) = leaving {
            let _ = done.send(());
        }
    }

    async fn handle_command(&mut self, command: Command) -> Result<()> {
        match command {
            Command::Send(message) => self.send(message).await,
            Command::AddTrack(track, reply) => {
                let added = self
                    .pc
                    .add_transceiver_from_track(
                        track as Arc<dyn TrackLocal>,
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Sendonly,
                            streams: Vec::new(),
                            send_encodings: Vec::new(),
                        }),
                    )
                    .await;
                let sender = match added {
                    Ok(transceiver) => transceiver
                        .sender()
                        .await
                        .ok()
                        .flatten()
                        .ok_or_else(|| Error::Media("transceiver has no sender".into())),
                    Err(err) => Err(err.into()),
                };
                let ok = sender.is_ok();
                let _ = reply.send(sender);
                if ok {
                    self.renegotiate().await?;
                }
                Ok(())
            }
            Command::RemoveTrack(sender) => {
                self.pc.remove_track(&sender).await?;
                self.renegotiate().await
            }
            Command::Leave(_) => Ok(()),
        }
    }

    async fn handle_server(&mut self, message: ServerMessage) -> Result<()> {
        match message {
            ServerMessage::Answer { sdp } => {
                self.negotiation
                    .handle_remote_answer(sdp)
                    .map_err(|stale| Error::Signalling(format!("answer from the sfu: {stale}")))?;
                self.drive().await?;
            }
            ServerMessage::Offer { sdp } => {
                // False on the impolite side of glare: the SFU rolls back and offers again later.
                if self.negotiation.handle_remote_offer(sdp) {
                    self.drive().await?;
                }
            }
            ServerMessage::IceCandidate { candidate } => {
                self.negotiation.handle_remote_candidate(candidate);
                self.drive().await?;
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.names
                    .lock()
                    .expect("names lock is never poisoned")
                    .insert(participant.session_id.clone(), participant.name.clone());
                self.emit(Event::ParticipantJoined(participant));
            }
            ServerMessage::ParticipantLeft { session_id } => {
                self.emit(Event::ParticipantLeft { session_id });
            }
            ServerMessage::MuteState { session_id, muted } => {
                self.emit(Event::MuteState { session_id, muted });
            }
            ServerMessage::ScreenState {
                session_id,
                screen_on,
            } => self.emit(Event::ScreenState {
                session_id,
                screen_on,
            }),
            ServerMessage::Caption(caption) => self.emit(Event::Caption(*caption)),
            ServerMessage::JobStop { reason } => self.emit(Event::JobStop { reason }),
            ServerMessage::Error { code, message } => self.emit(Event::Error { code, message }),
            ServerMessage::Joined { .. } => {}
        }
        Ok(())
    }

    async fn handle_peer(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Candidate(init) => {
                if init.candidate.is_empty() {
                    return;
                }
                let candidate = calls_rtc::candidate::wire_candidate(init);
                if let Err(err) = self.send(ClientMessage::IceCandidate { candidate }).await {
                    tracing::debug!(error = %err, "a local candidate was not sent");
                }
            }
            PeerEvent::Track(track) => {
                if let Some(remote) = RemoteTrack::new(track, &self.names).await {
                    self.emit(Event::Track(remote));
                }
            }
            PeerEvent::State(state) => {
                let _ = self.state.send(state);
                self.emit(Event::Connection(state));
            }
        }
    }
}
