//! One signalling session: the WebSocket of one participant and its peer connection.
//!
//! A session is a single task that owns the peer connection, so negotiation steps never
//! interleave. Inputs are client messages, [`SessionCommand`]s from the shell (add or remove a
//! forwarded track) and peer events (local ICE candidates, incoming tracks, state changes).
//! Negotiation: the client makes the first offer; afterwards either side may offer. The SFU is
//! the *polite* peer: if a client offer arrives while its own offer is pending, it rolls its
//! offer back, answers the client and offers again afterwards; a client ignores SFU offers while
//! its own is pending.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::ws::{Message, WebSocket};
use calls_protocol::signalling::{
    ClientMessage, ErrorCode, ParticipantInfo, ServerMessage, PROTOCOL_VERSION,
};
use calls_rtc::PeerEvent;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::candidates::Advertise;
use crate::negotiation::{self, Flow};
use crate::outbox::Outbox;
use crate::ratelimit::TokenBucket;
use crate::requests::Requests;
use crate::state::{SessionCommand, SessionHandle, Shared};
use crate::token;

/// How long a new connection may take to send `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a joined session may take to complete its first offer/answer.
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs one WebSocket connection to its end.
pub async fn run(shared: Arc<Shared>, socket: WebSocket) {
    shared.metrics.ws_connections.inc();
    let (mut sink, mut stream) = socket.split();
    let joined = accept_join(&shared, &mut stream)
        .await
        .and_then(|(call_id, info, token_key)| {
            if shared.claim_token(&token_key) {
                Ok((call_id, info, token_key))
            } else {
                Err(ServerMessage::error(
                    ErrorCode::TokenInUse,
                    format!(
                        "this join token already holds {} live session(s)",
                        shared.config.limits.sessions_per_token
                    ),
                ))
            }
        });
    match joined {
        Ok((call_id, info, token_key)) => {
            let (out_tx, mut out_rx) =
                mpsc::channel::<ServerMessage>(shared.config.limits.session_queue_size);
            let flush = CancellationToken::new();
            let writer_flush = flush.clone();
            let writer = tokio::spawn(async move {
                loop {
                    let message = tokio::select! {
                        message = out_rx.recv() => message,
                        _ = writer_flush.cancelled() => out_rx.try_recv().ok(),
                    };
                    let Some(message) = message else { break };
                    let frame = Message::Text(message.to_json().into());
                    if sink.send(frame).await.is_err() {
                        return;
                    }
                }
                let _ = sink.send(Message::Close(None)).await;
            });
            run_joined(&shared, call_id, info, out_tx, &mut stream).await;
            shared.release_token(&token_key);
            flush.cancel();
            // Keep reading what the client still sends until it answers our close (or 2 s pass): a
            // socket closed with unread data is reset, and a reset loses the replies the client has
            // not read yet (a flooding client would never see why it was disconnected).
            let drain = async {
                while let Some(Ok(frame)) = stream.next().await {
                    if matches!(frame, Message::Close(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = writer.await;
                drain.await;
            })
            .await;
        }
        Err(refusal) => {
            shared.metrics.record_error("join_refused");
            let _ = sink.send(Message::Text(refusal.to_json().into())).await;
            let _ = sink.send(Message::Close(None)).await;
        }
    }
    shared.metrics.ws_connections.dec();
}

type Stream = futures::stream::SplitStream<WebSocket>;

/// Waits for `join` and checks it: the call, the participant and the token's key (its
/// signature) for the per-token session limit; the error is the message to send before closing.
async fn accept_join(
    shared: &Shared,
    stream: &mut Stream,
) -> Result<(String, ParticipantInfo, String), ServerMessage> {
    let frame = tokio::time::timeout(JOIN_TIMEOUT, stream.next())
        .await
        .map_err(|_| ServerMessage::error(ErrorCode::NotJoined, "no join message in time"))?;
    let text = match frame {
        Some(Ok(Message::Text(text))) => text,
        _ => {
            return Err(ServerMessage::error(
                ErrorCode::BadMessage,
                "expected a join message",
            ))
        }
    };
    let message = ClientMessage::from_json(&text)
        .map_err(|err| ServerMessage::error(ErrorCode::BadMessage, err.to_string()))?;
    let ClientMessage::Join {
        version,
        token,
        call_id,
    } = message
    else {
        return Err(ServerMessage::error(
            ErrorCode::NotJoined,
            "the first message must be join",
        ));
    };
    shared
        .metrics
        .record_ws_message(crate::metrics::Direction::In, "join");
    if version != PROTOCOL_VERSION {
        return Err(ServerMessage::error(
            ErrorCode::UnsupportedVersion,
            format!("protocol version {version} is not supported (expected {PROTOCOL_VERSION})"),
        ));
    }
    let secret = shared.config.token_secret.as_bytes();
    let now = token::unix_seconds(std::time::SystemTime::now());
    let claims = match &call_id {
        Some(call_id) => token::verify_for_call(secret, &token, call_id, now),
        None => token::verify(secret, &token, now),
    }
    .map_err(|err| ServerMessage::error(ErrorCode::BadToken, err.to_string()))?;
    let info = ParticipantInfo {
        session_id: uuid::Uuid::new_v4().simple().to_string(),
        name: claims.name,
        role: claims.role,
        purpose: claims.purpose,
        muted: false,
        screen_on: false,
    };
    let token_key = token
        .rsplit_once('.')
        .map_or(token.as_str(), |(_, signature)| signature)
        .to_owned();
    Ok((claims.call_id, info, token_key))
}

/// The queues a joined session is driven by.
struct Inputs {
    commands: mpsc::Receiver<SessionCommand>,
    peer_events: mpsc::Receiver<PeerEvent>,
    kill: CancellationToken,
}

async fn run_joined(
    shared: &Arc<Shared>,
    call_id: String,
    info: ParticipantInfo,
    out: mpsc::Sender<ServerMessage>,
    stream: &mut Stream,
) {
    let session_id = info.session_id.clone();
    let Some((commands, kill)) = join_call(shared, &call_id, info, &out) else {
        return;
    };
    let outbox = Outbox::new(Arc::clone(shared), session_id.clone(), out.clone());
    let (peer_tx, peer_events) = mpsc::channel(256);
    let negotiator = negotiation::Negotiator::start(
        Arc::clone(shared),
        outbox.clone(),
        session_id.clone(),
        peer_tx,
        advertise(shared),
    )
    .await;
    let negotiator = match negotiator {
        Ok(negotiator) => negotiator,
        Err(err) => {
            shared.metrics.record_error("peer_connection");
            let _ = out.try_send(ServerMessage::error(ErrorCode::Internal, err.to_string()));
            shared.remove_session(&session_id);
            shared.metrics.sessions.dec();
            return;
        }
    };
    let now = Instant::now();
    let limits = shared.config.limits;
    let mut session = Session {
        shared: Arc::clone(shared),
        requests: Requests::new(Arc::clone(shared), session_id.clone(), now),
        messages: TokenBucket::new(limits.messages_per_second, limits.message_burst, now),
        outbox,
        negotiator,
    };
    let inputs = Inputs {
        commands,
        peer_events,
        kill,
    };
    session.serve(stream, inputs).await;
    tracing::info!(call_id = %call_id, session_id = %session_id, "session ended");
    shared.remove_session(&session_id);
    session.negotiator.close().await;
    shared.metrics.sessions.dec();
}

/// Registers the session and joins it to its call: the router's decision, `joined` to the client,
/// `participant_joined` to the others (counted as a live session). Returns the session's command queue and kill switch, or
/// `None` if the router refused (the client was told why).
fn join_call(
    shared: &Arc<Shared>,
    call_id: &str,
    info: ParticipantInfo,
    out: &mpsc::Sender<ServerMessage>,
) -> Option<(mpsc::Receiver<SessionCommand>, CancellationToken)> {
    let session_id = info.session_id.clone();
    let limits = shared.config.limits;
    // A newcomer is sent one subscribe command per published track at once (voice and screen of
    // everyone), so the command queue must hold a full call's worth.
    let command_capacity = limits
        .session_queue_size
        .max(limits.max_participants_per_call * 2 + 16);
    let (command_tx, commands) = mpsc::channel(command_capacity);
    let kill = CancellationToken::new();
    shared.add_session(
        &session_id,
        SessionHandle {
            out: out.clone(),
            commands: command_tx,
            kill: kill.clone(),
        },
    );
    // `joined` is queued while the router lock is still held: any `participant_joined` for this
    // session is computed by a later join under the same lock, so it can only be queued after.
    // Credentials are made before the router lock is taken (an HMAC each, kept out of the lock).
    let ice_servers = crate::turn::ice_servers(&shared.config.ice, &session_id, SystemTime::now());
    let joined = shared.with_router(|router| {
        let (others, actions) = router.handle_join(call_id, info)?;
        if out
            .try_send(ServerMessage::Joined {
                session_id: session_id.clone(),
                call_id: call_id.to_owned(),
                participants: others,
                ice_servers,
            })
            .is_err()
        {
            // The queue is new and empty; a failure means the writer already ended.
            shared.metrics.record_error("ws_queue_full");
        }
        Ok::<_, crate::router::RouteError>(actions)
    });
    let actions = match joined {
        Ok(actions) => actions,
        Err(err) => {
            let _ = out.try_send(ServerMessage::error(err.code(), err.to_string()));
            shared.remove_session(&session_id);
            return None;
        }
    };
    shared
        .metrics
        .record_ws_message(crate::metrics::Direction::Out, "joined");
    tracing::info!(call_id = %call_id, session_id = %session_id, "session joined");
    shared.metrics.sessions.inc();
    shared.apply(actions);
    Some((commands, kill))
}

/// Where the session's candidates say the SFU is: the shared ports, and the configured host.
fn advertise(shared: &Shared) -> Advertise {
    Advertise {
        udp_port: shared
            .mux
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(shared.config.ice.udp_port),
        tcp_port: Some(shared.tcp_mux.local_addr().port()),
        host_override: shared.advertised_host.clone(),
    }
}

/// A joined session: what its client sends goes to the negotiator or to its requests.
struct Session {
    shared: Arc<Shared>,
    outbox: Outbox,
    negotiator: negotiation::Negotiator,
    requests: Requests,
    /// Frames the client may send per second (every kind is charged).
    messages: TokenBucket,
}

impl Session {
    /// Serves the session until the client leaves or is disconnected.
    async fn serve(&mut self, stream: &mut Stream, mut inputs: Inputs) {
        let negotiation_deadline = tokio::time::Instant::now() + NEGOTIATION_TIMEOUT;
        loop {
            let flow = tokio::select! {
                _ = inputs.kill.cancelled() => Flow::Break(()),
                _ = tokio::time::sleep_until(negotiation_deadline), if !self.negotiator.negotiated() => {
                    self.shared.metrics.record_error("negotiation_timeout");
                    self.outbox.send_final_error(ErrorCode::BadSdp, "no offer received in time; disconnecting").await;
                    Flow::Break(())
                }
                frame = stream.next() => match frame {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Flow::Break(()),
                    Some(Ok(frame)) => self.handle_frame(frame).await,
                },
                Some(command) = inputs.commands.recv() => {
                    self.negotiator.handle_command(command).await;
                    Flow::Continue(())
                }
                Some(event) = inputs.peer_events.recv() => self.negotiator.handle_peer_event(event).await,
            };
            if flow.is_break() {
                break;
            }
        }
    }

    /// One WebSocket frame from the client.
    async fn handle_frame(&mut self, frame: Message) -> Flow {
        // Every frame the client sends is charged, whatever its kind: binary frames and pings
        // cost the server work too (issue 11, finding 5).
        if !self.messages.try_take(Instant::now()) {
            self.shared.metrics.record_error("rate_limited");
            self.outbox
                .send_final_error(ErrorCode::RateLimited, "too many messages; disconnecting")
                .await;
            return Flow::Break(());
        }
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.shared.metrics.record_error("bad_message");
                self.outbox
                    .send_error(ErrorCode::BadMessage, "binary frames are not supported");
                return Flow::Continue(());
            }
            _ => return Flow::Continue(()),
        };
        match ClientMessage::from_json(&text) {
            Ok(message) => {
                self.shared
                    .metrics
                    .record_ws_message(crate::metrics::Direction::In, client_type(&message));
                self.handle_client(message).await
            }
            Err(err) => {
                self.shared.metrics.record_error("bad_message");
                self.outbox
                    .send_error(ErrorCode::BadMessage, err.to_string());
                Flow::Continue(())
            }
        }
    }

    /// One message from the client: SDP and candidates to the negotiator, the rest to its
    /// requests; a refusal is sent back as an error.
    async fn handle_client(&mut self, message: ClientMessage) -> Flow {
        let result = match message {
            ClientMessage::Join { .. } => {
                self.outbox
                    .send_error(ErrorCode::NotJoined, "already joined");
                return Flow::Continue(());
            }
            ClientMessage::Leave => return Flow::Break(()),
            ClientMessage::Offer { sdp } => self.negotiator.handle_offer(sdp).await,
            ClientMessage::Answer { sdp } => self.negotiator.handle_answer(sdp).await,
            ClientMessage::IceCandidate { candidate } => {
                self.negotiator.handle_candidate(candidate).await
            }
            ClientMessage::Mute => self.requests.handle_mute(true),
            ClientMessage::Unmute => self.requests.handle_mute(false),
            ClientMessage::ScreenOn => self.requests.handle_screen(true),
            ClientMessage::ScreenOff => self.requests.handle_screen(false),
            ClientMessage::Caption(caption) => {
                self.requests.handle_caption(caption, Instant::now())
            }
        };
        if let Err((code, message)) = result {
            self.shared.metrics.record_error("client_request");
            self.outbox.send_error(code, message);
        }
        Flow::Continue(())
    }
}

fn client_type(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Join { .. } => "join",
        ClientMessage::Offer { .. } => "offer",
        ClientMessage::Answer { .. } => "answer",
        ClientMessage::IceCandidate { .. } => "ice_candidate",
        ClientMessage::Mute => "mute",
        ClientMessage::Unmute => "unmute",
        ClientMessage::ScreenOn => "screen_on",
        ClientMessage::ScreenOff => "screen_off",
        ClientMessage::Caption(_) => "caption",
        ClientMessage::Leave => "leave",
    }
}
