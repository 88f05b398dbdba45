//! The task behind a [`Participant`](crate::Participant): it owns the signalling WebSocket and
//! the peer connection, so negotiation steps never interleave. The client is the impolite peer
//! of the perfect-negotiation pattern: an SFU offer that arrives while the client's own offer is
//! pending is ignored (the SFU rolls back and offers again after answering).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use calls_protocol::signalling::{ClientMessage, ErrorCode, IceCandidate, ServerMessage};
use futures::{SinkExt, StreamExt};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};
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

pub(crate) enum PeerEvent {
    Candidate(RTCIceCandidateInit),
    Track(Arc<dyn TrackRemote>),
    State(RTCPeerConnectionState),
}

pub(crate) struct Handler {
    pub(crate) events: mpsc::Sender<PeerEvent>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl Handler {
    /// Queues a peer event for the actor without blocking webrtc's task. The queue holds 1024 events, so
    /// it fills only when the actor is stuck; what does not fit is counted, and a lost track is logged
    /// (its media would silently never be received).
    fn queue(&self, event: PeerEvent) {
        let Err(error) = self.events.try_send(event) else {
            return;
        };
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        match error.into_inner() {
            PeerEvent::Track(_) => {
                tracing::warn!(
                    dropped,
                    "the peer event queue is full: a remote track is lost"
                )
            }
            _ if dropped == 1 => {
                tracing::warn!("the peer event queue is full: dropping events (counted)")
            }
            _ => {}
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            self.queue(PeerEvent::Candidate(init));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.queue(PeerEvent::Track(track));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.queue(PeerEvent::State(state));
    }
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
    pub(crate) making_offer: bool,
    pub(crate) needs_offer: bool,
    pub(crate) remote_set: bool,
    pub(crate) early_candidates: Vec<IceCandidate>,
    /// Events dropped because a queue was full (shared with the [`Handler`]).
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

    pub(crate) async fn offer(&mut self) -> Result<()> {
        if self.making_offer {
            self.needs_offer = true;
            return Ok(());
        }
        let offer = self.pc.create_offer(None).await?;
        let sdp = offer.sdp.clone();
        self.pc.set_local_description(offer).await?;
        self.making_offer = true;
        self.needs_offer = false;
        self.send(ClientMessage::Offer { sdp }).await
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
                    self.offer().await?;
                }
                Ok(())
            }
            Command::RemoveTrack(sender) => {
                self.pc.remove_track(&sender).await?;
                self.offer().await
            }
            Command::Leave(_) => Ok(()),
        }
    }

    async fn handle_server(&mut self, message: ServerMessage) -> Result<()> {
        match message {
            ServerMessage::Answer { sdp } => {
                self.pc
                    .set_remote_description(RTCSessionDescription::answer(sdp)?)
                    .await?;
                self.making_offer = false;
                self.remote_set = true;
                self.flush_candidates().await;
                if self.needs_offer {
                    self.offer().await?;
                }
            }
            ServerMessage::Offer { sdp } => {
                if self.making_offer {
                    // Impolite side of glare: the SFU rolls back and offers again later.
                    return Ok(());
                }
                self.pc
                    .set_remote_description(RTCSessionDescription::offer(sdp)?)
                    .await?;
                let answer = self.pc.create_answer(None).await?;
                let sdp = answer.sdp.clone();
                self.pc.set_local_description(answer).await?;
                self.send(ClientMessage::Answer { sdp }).await?;
                if self.needs_offer {
                    self.offer().await?;
                }
            }
            ServerMessage::IceCandidate { candidate } => {
                if self.remote_set {
                    self.add_candidate(candidate).await;
                } else if self.early_candidates.len() < 64 {
                    self.early_candidates.push(candidate);
                }
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

    async fn add_candidate(&mut self, candidate: IceCandidate) {
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            username_fragment: candidate.username_fragment,
            ..Default::default()
        };
        if let Err(err) = self.pc.add_ice_candidate(init).await {
            tracing::debug!(error = %err, "remote candidate refused");
        }
    }

    async fn flush_candidates(&mut self) {
        for candidate in std::mem::take(&mut self.early_candidates) {
            self.add_candidate(candidate).await;
        }
    }

    async fn handle_peer(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Candidate(init) => {
                if init.candidate.is_empty() {
                    return;
                }
                let candidate = IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                };
                let _ = self.send(ClientMessage::IceCandidate { candidate }).await;
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
