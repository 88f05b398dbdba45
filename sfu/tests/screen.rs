//! A VP8 screen share of the moving test pattern reaches the other participant, decodes to the
//! pattern, and stopping and restarting the share works.

mod common;

use std::time::Duration;

use calls_participant::{video, Event, TrackKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn screen_share_reaches_others_and_decodes_to_the_pattern() {
    let sfu = start_sfu().await;
    let mut alice = join(&sfu, "call-screen", "Alice").await;
    let mut bob = join(&sfu, "call-screen", "Bob").await;
    let alice_id = alice.session_id().to_owned();

    alice.start_screen(320, 240, 15).await.unwrap();
    wait_event(&mut bob, "screen on", |e| {
        matches!(e, Event::ScreenState { session_id, screen_on: true } if *session_id == alice_id)
    })
    .await;
    let screen = wait_track(&mut bob, &alice_id, TrackKind::Screen).await;
    assert_eq!(screen.owner_name.as_deref(), Some("Alice"));
    let frames = screen
        .record_frames(Duration::from_secs(3), Duration::from_secs(2))
        .await
        .unwrap();
    let matching: Vec<u32> = frames.iter().filter_map(video::bar_position).collect();
    println!(
        "decoded {} frames, {} show the pattern",
        frames.len(),
        matching.len()
    );
    assert!(frames.len() >= 20, "only {} frames decoded", frames.len());
    assert!(
        matching.len() * 10 >= frames.len() * 9,
        "{} of {} frames show the pattern",
        matching.len(),
        frames.len()
    );
    assert!((frames[0].width, frames[0].height) == (320, 240));
    let distinct: std::collections::BTreeSet<u32> = matching.iter().copied().collect();
    assert!(distinct.len() >= 10, "the bar does not move: {distinct:?}");

    alice.stop_screen().await.unwrap();
    wait_event(&mut bob, "screen off", |e| {
        matches!(e, Event::ScreenState { session_id, screen_on: false } if *session_id == alice_id)
    })
    .await;
    // The old track stops delivering.
    let after_stop = screen
        .record_frames(Duration::from_secs(1), Duration::from_millis(800))
        .await
        .unwrap();
    assert!(
        after_stop.len() <= 2,
        "{} frames after stop",
        after_stop.len()
    );

    alice.start_screen(320, 240, 15).await.unwrap();
    let again = wait_track(&mut bob, &alice_id, TrackKind::Screen).await;
    assert_ne!(again.id, screen.id, "a restarted share is a new track");
    let frames = again
        .record_frames(Duration::from_secs(2), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(frames.iter().filter(|f| video::pattern_matches(f)).count() >= 10);

    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}
