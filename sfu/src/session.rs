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
    ClientMessage, ErrorCode, IceCandidate, ParticipantInfo, ServerMessage, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::candidates::Advertise;
use crate::ratelimit::TokenBucket;
use crate::state::{SessionHandle, Shared};
use crate::{negotiation, token};

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

async fn run_joined(
    shared: &Arc<Shared>,
    call_id: String,
    info: ParticipantInfo,
    out: mpsc::Sender<ServerMessage>,
    stream: &mut Stream,
) {
    let session_id = info.session_id.clone();
    let limits = shared.config.limits;
    // A newcomer is sent one subscribe command per published track at once (voice and screen of
    // everyone), so the command queue must hold a full call's worth.
    let command_capacity = limits
        .session_queue_size
        .max(limits.max_participants_per_call * 2 + 16);
    let (command_tx, mut commands) = mpsc::channel(command_capacity);
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
        let (others, actions) = router.handle_join(&call_id, info)?;
        if out
            .try_send(ServerMessage::Joined {
                session_id: session_id.clone(),
                call_id: call_id.clone(),
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
            return;
        }
    };
    shared
        .metrics
        .record_ws_message(crate::metrics::Direction::Out, "joined");
    tracing::info!(call_id = %call_id, session_id = %session_id, "session joined");
    shared.metrics.sessions.inc();
    shared.apply(actions);

    let (peer_tx, mut peer_events) = mpsc::channel(256);
    let advertise = Advertise {
        udp_port: shared
            .mux
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(shared.config.ice.udp_port),
        tcp_port: Some(shared.tcp_mux.local_addr().port()),
        host_override: shared.advertised_host.clone(),
    };
    let negotiator = negotiation::Negotiator::start(
        Arc::clone(shared),
        session_id.clone(),
        out.clone(),
        peer_tx,
        advertise,
    )
    .await;
    let mut negotiator = match negotiator {
        Ok(negotiator) => negotiator,
        Err(err) => {
            shared.metrics.record_error("peer_connection");
            let _ = out.try_send(ServerMessage::error(ErrorCode::Internal, err.to_string()));
            shared.remove_session(&session_id);
            shared.metrics.sessions.dec();
            return;
        }
    };

    let mut bucket = TokenBucket::new(
        limits.messages_per_second,
        limits.message_burst,
        Instant::now(),
    );
    let negotiation_deadline = tokio::time::Instant::now() + NEGOTIATION_TIMEOUT;
    loop {
        tokio::select! {
            _ = kill.cancelled() => break,
            _ = tokio::time::sleep_until(negotiation_deadline), if !negotiator.negotiated() => {
                shared.metrics.record_error("negotiation_timeout");
                negotiator.send_final_error(ErrorCode::BadSdp, "no offer received in time; disconnecting").await;
                break;
            }
            frame = stream.next() => {
                let frame = match frame {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(frame)) => frame,
                };
                // Every frame the client sends is charged, whatever its kind: binary frames and
                // pings cost the server work too (issue 11, finding 5).
                if !bucket.try_take(Instant::now()) {
                    shared.metrics.record_error("rate_limited");
                    negotiator.send_final_error(ErrorCode::RateLimited, "too many messages; disconnecting").await;
                    break;
                }
                let text = match frame {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        shared.metrics.record_error("bad_message");
                        negotiator.send_error(ErrorCode::BadMessage, "binary frames are not supported");
                        continue;
                    }
                    _ => continue,
                };
                match ClientMessage::from_json(&text) {
                    Ok(message) => {
                        shared.metrics.record_ws_message(crate::metrics::Direction::In, client_type(&message));
                        if negotiator.handle_client(message).await.is_break() {
                            break;
                        }
                    }
                    Err(err) => {
                        shared.metrics.record_error("bad_message");
                        negotiator.send_error(ErrorCode::BadMessage, err.to_string());
                    }
                }
            }
            Some(command) = commands.recv() => negotiator.handle_command(command).await,
            Some(event) = peer_events.recv() => {
                if negotiator.handle_peer_event(event).await.is_break() {
                    break;
                }
            }
        }
    }
    tracing::info!(call_id = %call_id, session_id = %session_id, "session ended");
    shared.remove_session(&session_id);
    negotiator.close().await;
    shared.metrics.sessions.dec();
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

/// Converts a wire candidate to webrtc's type.
pub fn candidate_init(candidate: IceCandidate) -> webrtc::peer_connection::RTCIceCandidateInit {
    webrtc::peer_connection::RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    }
}
