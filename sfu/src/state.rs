//! State shared by every session of one SFU: the routing core behind a lock, the live sessions'
//! handles and the publications. [`Shared::apply`] turns the router's [`Action`]s into queue
//! pushes; it never waits, so no lock is held across an await and a stuck session is
//! disconnected instead of slowing the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use calls_protocol::signalling::{ParticipantInfo, ServerMessage, TrackId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::forward::Publication;
use crate::ice_mux::UdpMux;
use crate::metrics::{Direction, Metrics};
use crate::router::{Action, CallSummary, Router};
use crate::tcp_mux::TcpMux;

/// What the shell asks a session task to do with its peer connection.
pub enum SessionCommand {
    /// Start forwarding this publication to the session.
    Subscribe(Arc<Publication>),
    /// Stop forwarding this track to the session.
    Unsubscribe(TrackId),
}

/// The queues of one live session.
#[derive(Clone)]
pub struct SessionHandle {
    /// Signalling messages to send to the client.
    pub out: mpsc::Sender<ServerMessage>,
    /// Commands for the session task.
    pub commands: mpsc::Sender<SessionCommand>,
    /// Cancelled to disconnect the session.
    pub kill: CancellationToken,
}

/// Everything sessions share.
pub struct Shared {
    /// Validated configuration.
    pub config: Config,
    /// Prometheus series.
    pub metrics: Arc<Metrics>,
    /// The shared ICE UDP socket.
    pub mux: Arc<UdpMux>,
    /// The shared ICE-TCP listener.
    pub tcp_mux: Arc<TcpMux>,
    /// IP advertised in host candidates instead of the local one (`ice.host_override`).
    pub advertised_host: Option<String>,
    router: Mutex<Router>,
    sessions: Mutex<HashMap<String, SessionHandle>>,
    publications: Mutex<HashMap<String, Arc<Publication>>>,
    /// Live sessions per join token (keyed by the token's signature).
    token_sessions: Mutex<HashMap<String, usize>>,
}

impl Shared {
    /// Creates the shared state.
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        mux: Arc<UdpMux>,
        tcp_mux: Arc<TcpMux>,
    ) -> Self {
        let router = Router::new(config.limits.max_participants_per_call)
            .with_track_limits(
                config.limits.voice_tracks_per_session,
                config.limits.screen_tracks_per_session,
            )
            .with_max_caption_bytes(config.limits.max_caption_bytes);
        Self {
            config,
            metrics,
            mux,
            tcp_mux,
            advertised_host: None,
            router: Mutex::new(router),
            sessions: Mutex::new(HashMap::new()),
            publications: Mutex::new(HashMap::new()),
            token_sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one of the `limits.sessions_per_token` session slots of the token whose signature is
    /// `key`; false when all are taken. Each successful claim is paired with one
    /// [`Shared::release_token`].
    pub fn claim_token(&self, key: &str) -> bool {
        let mut slots = self
            .token_sessions
            .lock()
            .expect("token sessions lock is never poisoned");
        let used = slots.entry(key.to_owned()).or_default();
        if *used >= self.config.limits.sessions_per_token {
            return false;
        }
        *used += 1;
        true
    }

    /// Gives back a slot taken by [`Shared::claim_token`].
    pub fn release_token(&self, key: &str) {
        let mut slots = self
            .token_sessions
            .lock()
            .expect("token sessions lock is never poisoned");
        if let Some(used) = slots.get_mut(key) {
            *used = used.saturating_sub(1);
            if *used == 0 {
                slots.remove(key);
            }
        }
    }

    /// Runs `f` on the router (briefly, without awaiting).
    pub fn with_router<T>(&self, f: impl FnOnce(&mut Router) -> T) -> T {
        f(&mut self.router.lock().expect("router lock is never poisoned"))
    }

    /// Registers a session's queues.
    pub fn add_session(&self, session_id: &str, handle: SessionHandle) {
        self.sessions
            .lock()
            .expect("sessions lock is never poisoned")
            .insert(session_id.to_owned(), handle);
    }

    /// Removes a session entirely: routing, publications and queues. Idempotent.
    pub fn remove_session(&self, session_id: &str) {
        let actions = self.with_router(|router| router.handle_leave(session_id));
        self.publications
            .lock()
            .expect("publications lock is never poisoned")
            .retain(|_, publication| {
                publication.remove_sink(session_id);
                publication.id.session_id != session_id
            });
        self.sessions
            .lock()
            .expect("sessions lock is never poisoned")
            .remove(session_id);
        self.apply(actions);
    }

    /// Registers a publication and subscribes the other members to it.
    pub fn publish(&self, publication: Arc<Publication>, actions: Vec<Action>) {
        self.publications
            .lock()
            .expect("publications lock is never poisoned")
            .insert(publication.id.to_string(), publication);
        self.apply(actions);
    }

    /// A publication ended.
    pub fn unpublish(&self, track: &TrackId) {
        let actions = self.with_router(|router| router.handle_unpublish(track));
        self.publications
            .lock()
            .expect("publications lock is never poisoned")
            .remove(&track.to_string());
        self.apply(actions);
    }

    /// Mutes or unmutes every voice publication of a session.
    pub fn set_voice_muted(&self, session_id: &str, muted: bool) {
        let publications = self
            .publications
            .lock()
            .expect("publications lock is never poisoned");
        for publication in publications.values() {
            if publication.id.session_id == session_id
                && publication.id.kind == calls_protocol::signalling::TrackKind::Voice
            {
                publication.set_muted(muted);
            }
        }
    }

    /// Carries out router actions.
    pub fn apply(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, message } => self.send(&to, message),
                Action::Subscribe { subscriber, track } => {
                    let publication = self
                        .publications
                        .lock()
                        .expect("publications lock is never poisoned")
                        .get(&track.to_string())
                        .cloned();
                    if let Some(publication) = publication {
                        self.command(&subscriber, SessionCommand::Subscribe(publication));
                    }
                }
                Action::Unsubscribe { subscriber, track } => {
                    self.command(&subscriber, SessionCommand::Unsubscribe(track));
                }
            }
        }
    }

    fn handle(&self, session_id: &str) -> Option<SessionHandle> {
        self.sessions
            .lock()
            .expect("sessions lock is never poisoned")
            .get(session_id)
            .cloned()
    }

    /// Queues a message for a session; a session whose queue is full is disconnected.
    pub fn send(&self, session_id: &str, message: ServerMessage) {
        let Some(handle) = self.handle(session_id) else {
            return;
        };
        let kind = message_type(&message);
        if handle.out.try_send(message).is_err() {
            self.metrics.record_error("ws_queue_full");
            handle.kill.cancel();
        } else {
            self.metrics.record_ws_message(Direction::Out, kind);
        }
    }

    fn command(&self, session_id: &str, command: SessionCommand) {
        let Some(handle) = self.handle(session_id) else {
            return;
        };
        if handle.commands.try_send(command).is_err() {
            self.metrics.record_error("session_queue_full");
            handle.kill.cancel();
        }
    }

    /// Tells every live session that the SFU is shutting down and disconnects it (its task then
    /// closes the peer connection and the WebSocket). Returns how many sessions were told.
    pub fn shutdown_sessions(&self) -> usize {
        let handles: Vec<SessionHandle> = self
            .sessions
            .lock()
            .expect("sessions lock is never poisoned")
            .values()
            .cloned()
            .collect();
        for handle in &handles {
            let notice = ServerMessage::error(
                calls_protocol::signalling::ErrorCode::ShuttingDown,
                "the sfu is shutting down",
            );
            if handle.out.try_send(notice).is_ok() {
                self.metrics.record_ws_message(Direction::Out, "error");
            }
            handle.kill.cancel();
        }
        handles.len()
    }

    /// Live sessions (registered queues).
    pub fn live_sessions(&self) -> usize {
        self.sessions
            .lock()
            .expect("sessions lock is never poisoned")
            .len()
    }

    /// Sends `job_stop` to a bot session. Returns false if the session is unknown.
    pub fn stop_job(&self, session_id: &str, reason: &str) -> bool {
        if self.handle(session_id).is_none() {
            return false;
        }
        self.send(
            session_id,
            ServerMessage::JobStop {
                reason: reason.to_owned(),
            },
        );
        true
    }

    /// Summaries of every call.
    pub fn calls(&self) -> Vec<CallSummary> {
        self.with_router(|router| router.calls())
    }

    /// Members of one call.
    pub fn sessions_of(&self, call_id: &str) -> Option<Vec<ParticipantInfo>> {
        self.with_router(|router| router.sessions(call_id))
    }
}

/// The `type` tag of a server message, for metrics.
pub fn message_type(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::Offer { .. } => "offer",
        ServerMessage::Answer { .. } => "answer",
        ServerMessage::IceCandidate { .. } => "ice_candidate",
        ServerMessage::ParticipantJoined { .. } => "participant_joined",
        ServerMessage::ParticipantLeft { .. } => "participant_left",
        ServerMessage::MuteState { .. } => "mute_state",
        ServerMessage::ScreenState { .. } => "screen_state",
        ServerMessage::Caption(_) => "caption",
        ServerMessage::JobStop { .. } => "job_stop",
        ServerMessage::Error { .. } => "error",
    }
}
