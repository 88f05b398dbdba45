//! Keyframe requests travel receiver → SFU → sharer. The sharer emits keyframes only on its first
//! frame and on request (as a browser does), and the receiver joins after the share started, so
//! it missed the first keyframe: it decodes the pattern only if its PLI is relayed.

mod common;

use std::time::Duration;

use calls_participant::{video, KeyframePolicy, ScreenOptions, TrackKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_receiver_gets_a_keyframe_through_the_relay() {
    let sfu = start_sfu().await;
    let mut alice = join(&sfu, "call-keyframe", "Alice").await;
    let alice_id = alice.session_id().to_owned();
    alice
        .start_screen_with(ScreenOptions {
            keyframes: KeyframePolicy::OnRequestOnly,
            ..ScreenOptions::new(320, 240, 15)
        })
        .await
        .expect("share starts");
    // Let the share run on its own first: its only unrequested keyframe is long gone when Bob
    // arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = alice.screen_stats().expect("alice is sharing");
    assert!(before.frames >= 10, "share is not running: {before:?}");

    let mut bob = join(&sfu, "call-keyframe", "Bob").await;
    let screen = wait_track(&mut bob, &alice_id, TrackKind::Screen).await;
    let frames = screen
        .record_frames(Duration::from_secs(4), Duration::from_secs(3))
        .await
        .expect("frames record");
    let matching = frames.iter().filter(|f| video::pattern_matches(f)).count();
    let after = alice.screen_stats().expect("alice is sharing");
    let relayed = sfu
        .metrics()
        .keyframe_requests
        .with_label_values(&["relayed"])
        .get();
    println!(
        "bob decoded {} frames ({matching} show the pattern); alice before bob: {before:?}, \
         after: {after:?}; sfu relayed {relayed} keyframe requests",
        frames.len()
    );
    assert!(
        after.keyframe_requests >= 1,
        "no keyframe request reached the sharer: {after:?}"
    );
    assert!(relayed >= 1, "the sfu relayed no keyframe request");
    assert!(
        after.keyframes > before.keyframes,
        "the sharer sent no keyframe after bob joined: {before:?} → {after:?}"
    );
    assert!(
        matching >= 20,
        "bob decoded {} frames, {matching} with the pattern",
        frames.len()
    );

    bob.leave().await.expect("bob leaves");
    alice.leave().await.expect("alice leaves");
    sfu.shutdown().await;
}
