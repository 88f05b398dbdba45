//! Signalling behaviour with real participants: mute stops forwarding and notifies, leave and
//! rejoin, captions from bots, job_stop, refused tokens, and bad input that gets an error
//! message without breaking the session.

mod common;

use std::time::Duration;

use calls_participant::{Caption, ErrorCode, Event, JoinOptions, Participant, Role, TrackKind};
use calls_protocol::signalling::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use common::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Counts RTP packets arriving on `track` during `window`.
async fn packets_during(track: &calls_participant::RemoteTrack, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut count = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, track.next_packet()).await {
        count += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mute_stops_forwarding_and_tells_everyone() {
    let sfu = start_sfu().await;
    let mut alice = join(&sfu, "call-mute", "Alice").await;
    let mut bob = join(&sfu, "call-mute", "Bob").await;
    let alice_id = alice.session_id().to_owned();
    let sending = alice.send_voice(vec![1000i16; 48_000 * 8]);
    let voice = wait_track(&mut bob, &alice_id, TrackKind::Voice).await;
    assert!(packets_during(&voice, Duration::from_millis(500)).await > 15);

    alice.mute().await.unwrap();
    for participant in [&mut alice, &mut bob] {
        wait_event(participant, "mute state", |e| {
            matches!(e, Event::MuteState { session_id, muted: true } if *session_id == alice_id)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(50), voice.next_packet()).await
    {}
    assert_eq!(
        packets_during(&voice, Duration::from_secs(1)).await,
        0,
        "muted voice still forwarded"
    );

    alice.unmute().await.unwrap();
    wait_event(
        &mut bob,
        "unmute",
        |e| matches!(e, Event::MuteState { session_id, muted: false } if *session_id == alice_id),
    )
    .await;
    assert!(
        packets_during(&voice, Duration::from_millis(500)).await > 15,
        "unmuted voice not forwarded"
    );
    sending.abort();
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leave_rejoin_and_killed_clients_are_cleaned_up() {
    let sfu = start_sfu().await;
    let mut alice = join(&sfu, "call-leave", "Alice").await;
    let bob = join(&sfu, "call-leave", "Bob").await;
    let bob_id = bob.session_id().to_owned();
    bob.leave().await.unwrap();
    wait_event(
        &mut alice,
        "participant left",
        |e| matches!(e, Event::ParticipantLeft { session_id } if *session_id == bob_id),
    )
    .await;
    assert_eq!(sfu.session_count(), 1);

    let bob = join(&sfu, "call-leave", "Bob").await;
    let rejoined = wait_event(&mut alice, "rejoin", |e| {
        matches!(e, Event::ParticipantJoined(_))
    })
    .await;
    let Event::ParticipantJoined(info) = rejoined else {
        unreachable!()
    };
    assert_eq!(info.name, "Bob");
    assert_ne!(info.session_id, bob_id, "a rejoin is a new session");
    assert_eq!(bob.initial_participants().len(), 1);

    let killed = bob.session_id().to_owned();
    bob.abort();
    wait_event(
        &mut alice,
        "killed client leaves",
        |e| matches!(e, Event::ParticipantLeft { session_id } if *session_id == killed),
    )
    .await;
    alice.leave().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sfu.metrics().sessions.get() != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sfu.metrics().sessions.get(), 0);
    assert_eq!(sfu.session_count(), 0);
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captions_from_bots_reach_everyone_and_job_stop_reaches_the_bot() {
    let sfu = start_sfu().await;
    let mut alice = join(&sfu, "call-captions", "Alice").await;
    let mut bot = Participant::join(
        &sfu.ws_url(),
        &token("call-captions", "Transcriber", Role::Bot),
        JoinOptions::default(),
    )
    .await
    .unwrap();
    let caption = Caption {
        id: None,
        tail: String::new(),
        text: "hello everyone".into(),
        speaker_session: alice.session_id().to_owned(),
        speaker_name: Some("Alice".into()),
        start_ms: 100,
        end_ms: 900,
        is_final: true,
    };
    bot.publish_caption(caption.clone()).await.unwrap();
    let received = wait_event(&mut alice, "caption", |e| matches!(e, Event::Caption(_))).await;
    assert!(matches!(received, Event::Caption(c) if c == caption));

    // A participant may not publish captions.
    alice.publish_caption(caption).await.unwrap();
    wait_event(&mut alice, "forbidden", |e| {
        matches!(
            e,
            Event::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        )
    })
    .await;

    assert!(sfu.stop_job(bot.session_id(), "recording stopped"));
    let stop = wait_event(&mut bot, "job stop", |e| matches!(e, Event::JobStop { .. })).await;
    assert!(matches!(stop, Event::JobStop { reason } if reason == "recording stopped"));
    assert!(!sfu.stop_job("no-such-session", "x"));
    bot.leave().await.unwrap();
    alice.leave().await.unwrap();
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tokens_are_refused_with_an_error() {
    let sfu = start_sfu().await;
    let refused = |result: calls_participant::Result<Participant>| match result {
        Err(calls_participant::Error::Refused { code, message }) => (code, message),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("join with a bad token succeeded"),
    };
    let (code, message) =
        refused(Participant::join(&sfu.ws_url(), "garbage", JoinOptions::default()).await);
    assert_eq!(code, ErrorCode::BadToken);
    assert!(message.contains("malformed"), "{message}");

    let forged = calls_sfu::token::mint(
        b"another-secret-another-secret-0123",
        "call",
        "Mallory",
        Role::Participant,
        Duration::from_secs(60),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let (code, _) =
        refused(Participant::join(&sfu.ws_url(), &forged, JoinOptions::default()).await);
    assert_eq!(code, ErrorCode::BadToken);

    let expired = calls_sfu::token::sign(
        SECRET.as_bytes(),
        &calls_sfu::token::JoinClaims {
            call_id: "call".into(),
            name: "Late".into(),
            role: Role::Participant,
            purpose: None,
            exp: 1,
            iat: None,
        },
    );
    let (code, message) =
        refused(Participant::join(&sfu.ws_url(), &expired, JoinOptions::default()).await);
    assert_eq!(code, ErrorCode::BadToken);
    assert!(message.contains("expired"), "{message}");

    let options = JoinOptions {
        call_id: Some("other-call".into()),
        ..JoinOptions::default()
    };
    let (code, message) = refused(
        Participant::join(
            &sfu.ws_url(),
            &token("call", "Eve", Role::Participant),
            options,
        )
        .await,
    );
    assert_eq!(code, ErrorCode::BadToken);
    assert!(message.contains("another call"), "{message}");
    assert_eq!(sfu.session_count(), 0);
    sfu.shutdown().await;
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .ok()??
        {
            Ok(Message::Text(text)) => return Some(ServerMessage::from_json(&text).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_error_messages_and_floods_disconnect_only_the_flooder() {
    let sfu = start_sfu().await;
    let mut healthy = join(&sfu, "call-bad", "Healthy").await;
    let (mut socket, _) = tokio_tungstenite::connect_async(sfu.ws_url())
        .await
        .unwrap();
    let join_message = ClientMessage::Join {
        version: PROTOCOL_VERSION,
        token: token("call-bad", "Fuzzer", Role::Participant),
        call_id: None,
    };
    socket
        .send(Message::Text(join_message.to_json().into()))
        .await
        .unwrap();
    assert!(matches!(
        next_text(&mut socket).await,
        Some(ServerMessage::Joined { .. })
    ));

    for bad in [
        "not json",
        r#"{"type":"explode"}"#,
        r#"{"type":"offer","sdp":"this is not sdp"}"#,
        r#"{"type":"answer","sdp":"v=0"}"#,
    ] {
        socket.send(Message::Text(bad.into())).await.unwrap();
        let reply = next_text(&mut socket).await;
        assert!(
            matches!(reply, Some(ServerMessage::Error { .. })),
            "no error for {bad}: {reply:?}"
        );
    }
    // Still in the call after all of that.
    socket
        .send(Message::Text(ClientMessage::Mute.to_json().into()))
        .await
        .unwrap();
    assert!(matches!(
        next_text(&mut socket).await,
        Some(ServerMessage::MuteState { muted: true, .. })
    ));

    // A flood gets a rate-limit error and a closed socket.
    for _ in 0..500 {
        if socket
            .send(Message::Text(ClientMessage::Unmute.to_json().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut rate_limited = false;
    while let Some(message) = next_text(&mut socket).await {
        if matches!(
            message,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }
        ) {
            rate_limited = true;
        }
    }
    assert!(rate_limited, "flood was not rate limited");

    // The healthy participant saw the flooder come and go and is still served.
    wait_event(&mut healthy, "flooder left", |e| {
        matches!(e, Event::ParticipantLeft { .. })
    })
    .await;
    let mut other = join(&sfu, "call-bad", "Other").await;
    let healthy_id = healthy.session_id().to_owned();
    let talking = healthy.send_voice(vec![2000i16; 48_000 * 3]);
    let voice = wait_track(&mut other, &healthy_id, TrackKind::Voice).await;
    assert!(voice.next_packet().await.is_some());
    talking.abort();
    healthy.leave().await.unwrap();
    other.leave().await.unwrap();
    sfu.shutdown().await;
}

/// Issue 12: a concurrent join's `participant_joined` could reach a new session before its own
/// `joined`. Many sockets join one call at once; the first message each receives must be
/// `joined`, and every later `participant_joined` it gets must name someone not in its `joined`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joined_is_the_first_message_of_every_concurrent_join() {
    let sfu = start_sfu().await;
    const JOINERS: usize = 16;
    let mut sockets = Vec::new();
    for index in 0..JOINERS {
        let (socket, _) = tokio_tungstenite::connect_async(sfu.ws_url())
            .await
            .expect("websocket connects");
        sockets.push((index, socket));
    }
    let joins = sockets.into_iter().map(|(index, mut socket)| async move {
        let join = ClientMessage::Join {
            version: PROTOCOL_VERSION,
            token: token("call-order", &format!("joiner-{index}"), Role::Participant),
            call_id: None,
        };
        socket
            .send(Message::Text(join.to_json().into()))
            .await
            .expect("join is sent");
        let mut seen = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout_at(until, socket.next()).await
        {
            seen.push(ServerMessage::from_json(&text).expect("server messages parse"));
        }
        seen
    });
    for seen in futures::future::join_all(joins).await {
        let Some(ServerMessage::Joined { participants, .. }) = seen.first() else {
            panic!("first message was not joined: {seen:?}");
        };
        for message in &seen[1..] {
            if let ServerMessage::ParticipantJoined { participant } = message {
                assert!(
                    !participants
                        .iter()
                        .any(|p| p.session_id == participant.session_id),
                    "told about {} twice",
                    participant.name
                );
            }
        }
    }
}
