//! ICE over TCP: a participant that cannot use UDP reaches the SFU through the shared ICE-TCP
//! port, and its voice is forwarded to a UDP participant.

mod common;

use std::time::Duration;

use calls_participant::{JoinOptions, Participant, Role, TrackKind};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tcp_only_client_connects_through_the_shared_tcp_port() {
    let sfu = start_sfu().await;
    let options = JoinOptions {
        tcp_only: true,
        ..JoinOptions::default()
    };
    let mut alice = Participant::join(
        &sfu.ws_url(),
        &token("call-tcp", "Alice", Role::Participant),
        options,
    )
    .await
    .unwrap();
    alice
        .wait_connected(Duration::from_secs(15))
        .await
        .expect("ice-tcp connects");
    let mut bob = join(&sfu, "call-tcp", "Bob").await;
    let talking = alice.send_voice(vec![4000i16; 48_000 * 3]);
    let voice = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    for _ in 0..20 {
        voice.next_packet().await.expect("voice over tcp flows");
    }
    talking.abort();
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}
