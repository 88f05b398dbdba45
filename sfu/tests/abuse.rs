//! Hostile and broken clients next to a healthy call: bad, expired, forged and wrong-call tokens,
//! malformed and unknown messages, SDP garbage, a message flood and an oversized frame are each
//! answered with an error message (and, where the brief says so, a closed socket) while two real
//! participants keep talking. A client killed mid-call, and one that vanishes right after
//! joining, are cleaned up until the sessions metric is back to 0.

mod common;

use std::time::{Duration, SystemTime};

use calls_participant::{audio, Event, Role, TrackKind};
use calls_protocol::signalling::{ErrorCode, ServerMessage};
use common::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// What the server did next: the first `error` message, if any, and whether it closed the socket.
struct Outcome {
    error: Option<ErrorCode>,
    closed: bool,
}

/// Reads frames for up to `wait`, stopping at the first error (when `stop_at_error`) or close.
async fn outcome(socket: &mut Socket, wait: Duration, stop_at_error: bool) -> Outcome {
    let deadline = tokio::time::Instant::now() + wait;
    let mut error = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => {
                return Outcome {
                    error,
                    closed: false,
                }
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                return Outcome {
                    error,
                    closed: true,
                }
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Ok(ServerMessage::Error { code, .. }) = ServerMessage::from_json(&text) {
                    error.get_or_insert(code);
                    if stop_at_error {
                        return Outcome {
                            error,
                            closed: false,
                        };
                    }
                }
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A join refused with `bad_token` and a closed socket.
async fn assert_refused(sfu: &calls_sfu::RunningSfu, what: &str, join: String) {
    let mut socket = connect(sfu).await;
    send(&mut socket, join).await;
    let result = outcome(&mut socket, Duration::from_secs(5), false).await;
    assert_eq!(
        result.error,
        Some(ErrorCode::BadToken),
        "{what}: error code"
    );
    assert!(result.closed, "{what}: socket left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_does_not_harm_a_healthy_call() {
    let dir = tempfile::tempdir().unwrap();
    let words = speech(
        dir.path(),
        "alice",
        "The quick brown fox jumps over the lazy dog.",
    );
    let sfu = start_sfu().await;
    let call = "call-healthy";
    let alice = join(&sfu, call, "Alice").await;
    let mut bob = join(&sfu, call, "Bob").await;
    let lead_in = Duration::from_millis(1500);
    let alice_send = alice.send_voice(with_lead_in(&words, lead_in));
    let from_alice = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    let length =
        lead_in + Duration::from_secs_f64(words.len() as f64 / 48_000.0) + Duration::from_secs(1);
    let recording = tokio::spawn(async move {
        from_alice
            .record_voice(length, Duration::from_secs(3))
            .await
            .expect("voice decodes")
    });

    // Tokens: garbage, forged with another secret, expired, and valid but for another call.
    assert_refused(&sfu, "garbage token", join_message("not-a-token", None)).await;
    let forged = calls_sfu::token::mint(
        b"some-other-secret-some-other-secret!!",
        call,
        "Mallory",
        Role::Bot,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap();
    assert_refused(&sfu, "forged token", join_message(&forged, None)).await;
    let expired = calls_sfu::token::mint(
        SECRET.as_bytes(),
        call,
        "Mallory",
        Role::Participant,
        Duration::from_secs(60),
        SystemTime::now() - Duration::from_secs(3600),
    )
    .unwrap();
    assert_refused(&sfu, "expired token", join_message(&expired, None)).await;
    let other_call = token("another-call", "Mallory", Role::Participant);
    assert_refused(
        &sfu,
        "wrong-call token",
        join_message(&other_call, Some(call)),
    )
    .await;

    // Not JSON, or not a join, before joining: an error and a closed socket.
    let mut socket = connect(&sfu).await;
    send(&mut socket, "{{{ not json").await;
    let result = outcome(&mut socket, Duration::from_secs(5), false).await;
    assert_eq!(result.error, Some(ErrorCode::BadMessage));
    assert!(result.closed);
    let mut socket = connect(&sfu).await;
    send(&mut socket, r#"{"type":"mute"}"#).await;
    let result = outcome(&mut socket, Duration::from_secs(5), false).await;
    assert_eq!(result.error, Some(ErrorCode::NotJoined));

    // After a valid join: malformed, unknown and SDP-garbage messages are errors, not disconnects.
    let mut socket = connect(&sfu).await;
    send(
        &mut socket,
        join_message(&token(call, "Mallory", Role::Participant), None),
    )
    .await;
    for (frame, code) in [
        ("{{{ not json".to_owned(), ErrorCode::BadMessage),
        (
            r#"{"type":"teleport","to":"mars"}"#.to_owned(),
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"offer","sdp":"this is not sdp"}"#.to_owned(),
            ErrorCode::BadSdp,
        ),
        (
            r#"{"type":"answer","sdp":"v=0 garbage"}"#.to_owned(),
            ErrorCode::BadSdp,
        ),
    ] {
        send(&mut socket, frame.clone()).await;
        let result = outcome(&mut socket, Duration::from_secs(5), true).await;
        assert_eq!(result.error, Some(code), "answer to {frame}");
        assert!(!result.closed, "{frame} closed the session");
    }
    send(&mut socket, r#"{"type":"leave"}"#).await;

    // A message flood: rate limited, then disconnected.
    let mut flooder = connect(&sfu).await;
    send(
        &mut flooder,
        join_message(&token(call, "Flood", Role::Participant), None),
    )
    .await;
    for _ in 0..2_000 {
        if flooder
            .send(Message::Text(r#"{"type":"unmute"}"#.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let result = outcome(&mut flooder, Duration::from_secs(10), false).await;
    assert_eq!(result.error, Some(ErrorCode::RateLimited));
    assert!(result.closed, "the flooder stays connected");

    // A frame larger than limits.max_message_bytes closes that one connection.
    let mut big = connect(&sfu).await;
    send(
        &mut big,
        join_message(&token(call, "Big", Role::Participant), None),
    )
    .await;
    let huge = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "a".repeat(1024 * 1024));
    let _ = big.send(Message::Text(huge.into())).await;
    assert!(
        outcome(&mut big, Duration::from_secs(10), false)
            .await
            .closed
    );

    // The healthy call never noticed.
    let heard = recording.await.expect("recording task");
    alice_send.await.unwrap().unwrap();
    let score = audio::similarity(&words, &heard);
    println!("bob hears alice next to the abusers: similarity {score:.3}");
    assert!(score >= 0.8, "similarity {score}");
    wait_sessions(&sfu, 2).await;
    let metrics = sfu.metrics().render();
    assert!(
        metrics.contains("sfu_rtc_errors_total{type=\"rate_limited\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("sfu_rtc_errors_total{type=\"join_refused\"} 0\n"),
        "{metrics}"
    );
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    wait_sessions(&sfu, 0).await;
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_and_vanished_clients_are_cleaned_up() {
    let sfu = start_sfu().await;
    let call = "call-crash";
    let mut alice = join(&sfu, call, "Alice").await;
    let bob = join(&sfu, call, "Bob").await;
    let bob_session = bob.session_id().to_owned();
    wait_sessions(&sfu, 2).await;

    // Bob's process dies: no leave, the socket just drops.
    bob.abort();
    let left = wait_event(&mut alice, "bob leaving", |event| {
        matches!(event, Event::ParticipantLeft { session_id } if *session_id == bob_session)
    })
    .await;
    assert!(matches!(left, Event::ParticipantLeft { .. }));
    wait_sessions(&sfu, 1).await;

    // A client that joins and vanishes before negotiating anything.
    let mut ghost = connect(&sfu).await;
    send(
        &mut ghost,
        join_message(&token(call, "Ghost", Role::Participant), None),
    )
    .await;
    let joined = wait_event(
        &mut alice,
        "ghost joining",
        |event| matches!(event, Event::ParticipantJoined(info) if info.name == "Ghost"),
    )
    .await;
    let Event::ParticipantJoined(ghost_info) = joined else {
        unreachable!()
    };
    drop(ghost);
    wait_event(&mut alice, "ghost leaving", |event| {
        matches!(event, Event::ParticipantLeft { session_id } if *session_id == ghost_info.session_id)
    })
    .await;
    wait_sessions(&sfu, 1).await;

    alice.leave().await.unwrap();
    wait_sessions(&sfu, 0).await;
    for _ in 0..50 {
        if sfu.metrics().ws_connections.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = sfu.metrics().render();
    assert!(metrics.contains("sfu_rtc_sessions_total 0"), "{metrics}");
    assert!(metrics.contains("sfu_ws_connections_total 0"), "{metrics}");
    assert_eq!(sfu.session_count(), 0);
    sfu.shutdown().await;
}

/// Waits until the live-session gauge reads `expected`.
async fn wait_sessions(sfu: &calls_sfu::RunningSfu, expected: i64) {
    for _ in 0..150 {
        if sfu.metrics().sessions.get() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "sfu_rtc_sessions_total stayed at {} instead of {expected}",
        sfu.metrics().sessions.get()
    );
}

/// Issue 11, finding 5: binary frames used to bypass the rate limiter (400 in under a second,
/// session open). Every frame is charged now: a binary flood ends in `rate_limited` and a closed
/// socket, like a text flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binary_frame_flood_is_rate_limited_and_disconnected() {
    let sfu = start_sfu().await;
    let mut socket = connect(&sfu).await;
    send(
        &mut socket,
        join_message(&token("call-binary", "Flooder", Role::Participant), None),
    )
    .await;
    for _ in 0..400 {
        if socket
            .send(Message::Binary(vec![0u8; 64].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (codes, closed) = errors_until_close(&mut socket, Duration::from_secs(5)).await;
    assert!(
        codes.contains(&ErrorCode::RateLimited),
        "no rate_limited among {codes:?}"
    );
    assert!(closed, "the flooding session was left open");
    let metrics = sfu.metrics().render();
    assert!(
        metrics.contains("sfu_rtc_errors_total{type=\"rate_limited\"} 1"),
        "{metrics}"
    );
}

/// Issue 11, finding 9: one join token held any number of concurrent sessions. With the default
/// `limits.sessions_per_token` (1) a second live session on the same token is refused with
/// `token_in_use`; once the first leaves, the token works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_token_holds_one_live_session_at_a_time() {
    let sfu = start_sfu().await;
    let shared_token = token("call-token-reuse", "Bob", Role::Participant);
    let mut first = connect(&sfu).await;
    send(&mut first, join_message(&shared_token, None)).await;
    let joined = tokio::time::timeout(Duration::from_secs(5), first.next())
        .await
        .expect("an answer in time")
        .expect("a frame")
        .expect("a good frame");
    assert!(
        matches!(&joined, Message::Text(text) if text.contains("\"joined\"")),
        "{joined:?}"
    );

    let mut second = connect(&sfu).await;
    send(&mut second, join_message(&shared_token, None)).await;
    let (codes, closed) = errors_until_close(&mut second, Duration::from_secs(5)).await;
    assert_eq!(codes, vec![ErrorCode::TokenInUse]);
    assert!(closed, "the refused socket was left open");
    assert_eq!(sfu.session_count(), 1, "the refused join holds no session");

    first
        .send(Message::Text(r#"{"type":"leave"}"#.into()))
        .await
        .expect("leave is sent");
    let _ = errors_until_close(&mut first, Duration::from_secs(5)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sfu.session_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first session never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = connect(&sfu).await;
    send(&mut again, join_message(&shared_token, None)).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), again.next())
        .await
        .expect("an answer in time")
        .expect("a frame")
        .expect("a good frame");
    assert!(
        matches!(&answer, Message::Text(text) if text.contains("\"joined\"")),
        "the token was not released: {answer:?}"
    );
}
