//! Renegotiation under contention: both participants add tracks at the same moment, so client
//! offers and SFU offers cross (glare). Everyone must still end up receiving everything.

mod common;

use std::time::Duration;

use calls_participant::{video, TrackKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_screen_shares_and_voices_all_arrive() {
    let sfu = start_sfu().await;
    let mut alice = join(&sfu, "call-glare", "Alice").await;
    let mut bob = join(&sfu, "call-glare", "Bob").await;
    let (alice_id, bob_id) = (alice.session_id().to_owned(), bob.session_id().to_owned());

    let alice_voice = alice.send_voice(vec![1500i16; 48_000 * 6]);
    let bob_voice = bob.send_voice(vec![1500i16; 48_000 * 6]);
    let (a, b) = tokio::join!(
        alice.start_screen(160, 120, 15),
        bob.start_screen(160, 120, 15)
    );
    a.unwrap();
    b.unwrap();

    for (receiver, owner) in [(&mut alice, &bob_id), (&mut bob, &alice_id)] {
        let mut voice = None;
        let mut screen = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while voice.is_none() || screen.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match receiver.next_event_within(left).await {
                Some(calls_participant::Event::Track(track)) if track.owner() == owner => {
                    match track.kind() {
                        TrackKind::Voice => voice = Some(track),
                        TrackKind::Screen => screen = Some(track),
                    }
                }
                Some(_) => continue,
                None => panic!(
                    "tracks missing: voice {} screen {}",
                    voice.is_some(),
                    screen.is_some()
                ),
            }
        }
        let voice = voice.unwrap();
        for _ in 0..10 {
            voice.next_packet().await.expect("voice flows");
        }
        let frames = screen
            .unwrap()
            .record_frames(Duration::from_secs(2), Duration::from_secs(2))
            .await
            .unwrap();
        assert!(
            frames.iter().filter(|f| video::pattern_matches(f)).count() >= 10,
            "{} frames",
            frames.len()
        );
    }
    alice_voice.abort();
    bob_voice.abort();
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}
