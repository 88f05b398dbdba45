//! Unit tests of the routing core: who receives which track and which events, without sockets.

use super::*;

fn info(session: &str, role: Role) -> ParticipantInfo {
    ParticipantInfo {
        session_id: session.into(),
        name: format!("name-{session}"),
        role,
        purpose: None,
        muted: false,
        screen_on: false,
    }
}

/// Joins `sessions` to `call` as participants.
fn join(router: &mut Router, call: &str, sessions: &[&str]) {
    for session in sessions {
        router
            .handle_join(call, info(session, Role::Participant))
            .unwrap();
    }
}

fn subscriptions(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Subscribe { subscriber, track } => {
                Some((subscriber.clone(), track.to_string()))
            }
            _ => None,
        })
        .collect()
}

fn sends(actions: &[Action]) -> Vec<(String, ServerMessage)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, message } => Some((to.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn members_receive_every_other_members_tracks_but_not_their_own() {
    let mut router = Router::new(10);
    join(&mut router, "c", &["a"]);
    let (voice_a, actions) = router.handle_publish("a", TrackKind::Voice).unwrap();
    assert_eq!(voice_a.to_string(), "voice_a_0");
    assert!(
        subscriptions(&actions).is_empty(),
        "nobody else is in the call"
    );

    let (others, actions) = router
        .handle_join("c", info("b", Role::Participant))
        .unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(
        subscriptions(&actions),
        vec![("b".into(), "voice_a_0".into())]
    );
    assert!(matches!(
        &sends(&actions)[..],
        [(to, ServerMessage::ParticipantJoined { participant })] if to == "a" && participant.session_id == "b"
    ));

    let (_, actions) = router.handle_publish("b", TrackKind::Voice).unwrap();
    assert_eq!(
        subscriptions(&actions),
        vec![("a".into(), "voice_b_0".into())]
    );
    let (screen, actions) = router.handle_publish("b", TrackKind::Screen).unwrap();
    assert_eq!(screen.to_string(), "screen_b_0");
    assert_eq!(
        subscriptions(&actions),
        vec![("a".into(), "screen_b_0".into())]
    );
}

#[test]
fn calls_are_isolated() {
    let mut router = Router::new(10);
    join(&mut router, "c1", &["a"]);
    router.handle_publish("a", TrackKind::Voice).unwrap();
    let (others, actions) = router
        .handle_join("c2", info("b", Role::Participant))
        .unwrap();
    assert!(others.is_empty());
    assert!(actions.is_empty());
    assert_eq!(router.calls().len(), 2);
}

#[test]
fn leave_unsubscribes_and_notifies_and_empty_calls_vanish() {
    let mut router = Router::new(10);
    join(&mut router, "c", &["a", "b"]);
    router.handle_publish("a", TrackKind::Voice).unwrap();
    let actions = router.handle_leave("a");
    assert_eq!(
        actions,
        vec![
            Action::Unsubscribe {
                subscriber: "b".into(),
                track: TrackId::new(TrackKind::Voice, "a", 0)
            },
            Action::Send {
                to: "b".into(),
                message: ServerMessage::ParticipantLeft {
                    session_id: "a".into()
                }
            },
        ]
    );
    assert!(
        router.handle_leave("a").is_empty(),
        "second leave is a no-op"
    );
    router.handle_leave("b");
    assert!(router.calls().is_empty());
    assert_eq!(router.session_count(), 0);
}

#[test]
fn rejoin_gets_fresh_state() {
    let mut router = Router::new(10);
    join(&mut router, "c", &["a"]);
    router.handle_leave("a");
    join(&mut router, "c", &["a"]);
    assert!(!router.is_muted("a"));
    assert_eq!(
        router.handle_join("c", info("a", Role::Participant)),
        Err(RouteError::AlreadyJoined)
    );
}

#[test]
fn call_capacity_is_enforced() {
    let mut router = Router::new(2);
    join(&mut router, "c", &["a", "b"]);
    let refused = router.handle_join("c", info("x", Role::Participant));
    assert_eq!(refused.unwrap_err().code(), ErrorCode::CallFull);
}

#[test]
fn mute_notifies_everyone_once() {
    let mut router = Router::new(10);
    join(&mut router, "c", &["a", "b"]);
    let actions = router.handle_mute("a", true).unwrap();
    assert_eq!(actions.len(), 2, "both members hear about it");
    assert!(router.is_muted("a"));
    assert!(router.handle_mute("a", true).unwrap().is_empty());
    assert_eq!(router.handle_mute("a", false).unwrap().len(), 2);
    assert!(router.is_muted("nobody"));
}

#[test]
fn screen_off_unpublishes_screen_tracks_only() {
    let mut router = Router::new(10);
    join(&mut router, "c", &["a", "b"]);
    router.handle_publish("a", TrackKind::Voice).unwrap();
    assert_eq!(router.handle_screen("a", true).unwrap().len(), 2);
    router.handle_publish("a", TrackKind::Screen).unwrap();
    let actions = router.handle_screen("a", false).unwrap();
    let unsubscribed: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Unsubscribe { track, .. } => Some(track.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(unsubscribed, vec!["screen_a_0".to_string()]);
    assert_eq!(router.tracks_of("a").len(), 1);
    let (second, _) = router.handle_publish("a", TrackKind::Screen).unwrap();
    assert_eq!(second.to_string(), "screen_a_1", "indices are never reused");
}

#[test]
fn only_bots_publish_captions_and_everyone_else_receives_them() {
    let mut router = Router::new(10);
    join(&mut router, "c", &["a", "b"]);
    router.handle_join("c", info("bot", Role::Bot)).unwrap();
    let caption = Caption {
        id: None,
        tail: String::new(),
        text: "hi".into(),
        speaker_session: "a".into(),
        speaker_name: None,
        start_ms: 0,
        end_ms: 10,
        is_final: true,
    };
    let receivers: Vec<String> = sends(&router.handle_caption("bot", caption.clone()).unwrap())
        .into_iter()
        .map(|(to, _)| to)
        .collect();
    assert_eq!(receivers, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(
        router.handle_caption("a", caption),
        Err(RouteError::NotABot)
    );
}

/// Issue 21, finding 7: a bot could caption anyone (or no one) under any name, at any size.
#[test]
fn captions_name_a_member_of_the_call_with_the_roster_name_and_are_size_capped() {
    let mut router = Router::new(10).with_max_caption_bytes(300);
    join(&mut router, "c", &["a"]);
    router.handle_join("c", info("bot", Role::Bot)).unwrap();
    join(&mut router, "other", &["x"]);
    let caption = |speaker: &str, name: Option<&str>, text: &str| Caption {
        id: Some("u1".into()),
        tail: String::new(),
        text: text.into(),
        speaker_session: speaker.into(),
        speaker_name: name.map(str::to_owned),
        start_ms: 0,
        end_ms: 10,
        is_final: true,
    };
    let sent = router
        .handle_caption("bot", caption("a", Some("The CEO"), "hello"))
        .unwrap();
    let relayed = sends(&sent);
    assert_eq!(relayed.len(), 1);
    match &relayed[0].1 {
        ServerMessage::Caption(caption) => {
            assert_eq!(caption.speaker_name.as_deref(), Some("name-a"));
        }
        other => panic!("{other:?}"),
    }
    for speaker in ["x", "nobody", ""] {
        assert_eq!(
            router.handle_caption("bot", caption(speaker, None, "hi")),
            Err(RouteError::UnknownSpeaker),
            "{speaker:?}"
        );
    }
    assert!(matches!(
        router.handle_caption("bot", caption("a", None, &"w".repeat(300))),
        Err(RouteError::CaptionTooLarge { .. })
    ));
}

#[test]
fn unknown_sessions_are_refused() {
    let mut router = Router::new(10);
    assert_eq!(
        router.handle_publish("x", TrackKind::Voice).unwrap_err(),
        RouteError::UnknownSession
    );
    assert!(router.handle_mute("x", true).is_err());
    assert!(router
        .handle_unpublish(&TrackId::new(TrackKind::Voice, "x", 0))
        .is_empty());
    assert_eq!(router.sessions("nope"), None);
}

#[test]
fn publications_beyond_the_track_limits_are_refused_and_a_stopped_share_frees_its_slot() {
    let mut router = Router::new(10).with_track_limits(1, 1);
    join(&mut router, "c", &["a", "b"]);
    router.handle_publish("a", TrackKind::Voice).unwrap();
    assert_eq!(
        router.handle_publish("a", TrackKind::Voice).unwrap_err(),
        RouteError::TrackLimit {
            kind: TrackKind::Voice,
            limit: 1
        }
    );
    assert_eq!(
        router
            .handle_publish("a", TrackKind::Voice)
            .unwrap_err()
            .code(),
        ErrorCode::TrackLimit
    );
    let (screen, _) = router.handle_publish("a", TrackKind::Screen).unwrap();
    assert!(router.handle_publish("a", TrackKind::Screen).is_err());
    router.handle_unpublish(&screen);
    router.handle_publish("a", TrackKind::Screen).unwrap();
    // Limits are per session: b still has both slots.
    router.handle_publish("b", TrackKind::Voice).unwrap();
    // No screen shares at all when the screen limit is 0.
    let mut router = Router::new(10).with_track_limits(1, 0);
    join(&mut router, "c", &["a"]);
    assert!(router.handle_publish("a", TrackKind::Screen).is_err());
}
