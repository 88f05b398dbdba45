//! Two real participants exchange espeak-ng speech through an in-process SFU over 127.0.0.1;
//! each must receive exactly the other's voice, attributed to them, and the decoded audio must
//! match what was sent.

mod common;

use std::time::Duration;

use calls_participant::{audio, TrackKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_exchange_voice() {
    let dir = tempfile::tempdir().unwrap();
    let (alice_words, bob_words) = alice_and_bob_words(dir.path());
    let sfu = start_sfu().await;
    let mut alice = join(&sfu, "call-voice", "Alice").await;
    let mut bob = join(&sfu, "call-voice", "Bob").await;
    assert_eq!(sfu.session_count(), 2);

    let lead_in = Duration::from_millis(1500);
    let alice_send = alice.send_voice(with_lead_in(&alice_words, lead_in));
    let bob_send = bob.send_voice(with_lead_in(&bob_words, lead_in));

    let from_bob = wait_track(&mut alice, bob.session_id(), TrackKind::Voice).await;
    let from_alice = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    assert_eq!(from_bob.owner_name.as_deref(), Some("Bob"));
    assert_eq!(from_alice.owner_name.as_deref(), Some("Alice"));

    let length = Duration::from_secs_f64(alice_words.len().max(bob_words.len()) as f64 / 48_000.0)
        + lead_in
        + Duration::from_secs(1);
    let idle = Duration::from_secs(2);
    let (heard_by_alice, heard_by_bob) = tokio::join!(
        from_bob.record_voice(length, idle),
        from_alice.record_voice(length, idle)
    );
    let (heard_by_alice, heard_by_bob) = (heard_by_alice.unwrap(), heard_by_bob.unwrap());
    alice_send.await.unwrap().unwrap();
    bob_send.await.unwrap().unwrap();

    let alice_to_bob = audio::similarity(&alice_words, &heard_by_bob);
    let bob_to_alice = audio::similarity(&bob_words, &heard_by_alice);
    let cross = audio::similarity(&alice_words, &heard_by_alice);
    println!(
        "similarity alice->bob {alice_to_bob:.3}, bob->alice {bob_to_alice:.3}, cross {cross:.3}"
    );
    assert!(alice_to_bob >= 0.8, "alice->bob similarity {alice_to_bob}");
    assert!(bob_to_alice >= 0.8, "bob->alice similarity {bob_to_alice}");
    assert!(cross < 0.5, "alice hears her own words? {cross}");

    let metrics = sfu.metrics().render();
    assert!(metrics.contains("sfu_rtc_rtp_packets_total{direction=\"out\",type=\"audio\"}"));
    // Both voices reached their receiver through the SFU's own SRTP (the fast path), and decoded
    // as sent above: the keys recovered from each DTLS handshake are the ones the clients expect.
    assert_eq!(sfu.metrics().fast_path_tracks.get(), 2, "{metrics}");
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}
