//! ICE settings that change what the SFU advertises: a hostname `ice_host_override` is resolved
//! at start (an unresolvable one is a start error) and calls work through it.

mod common;

use std::time::Duration;

use calls_participant::{JoinOptions, Participant, Role, TrackKind};
use calls_sfu::config::HostOverride;
use calls_sfu::Config;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostname_override_is_resolved_and_calls_work_through_it() {
    let mut config = Config::for_local_test(SECRET);
    config.ice.host_override = Some(HostOverride::Hostname("localhost".into()));
    let sfu = calls_sfu::start(config).await.expect("sfu starts");
    let join = |name: &'static str| {
        let url = sfu.ws_url();
        async move {
            Participant::join_connected(
                &url,
                &token("call-override", name, Role::Participant),
                JoinOptions::default(),
                Duration::from_secs(10),
            )
            .await
            .unwrap()
        }
    };
    let alice = join("Alice").await;
    let mut bob = join("Bob").await;
    let talking = alice.send_voice(vec![1000i16; 48_000 * 3]);
    let voice = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    assert!(voice.next_packet().await.is_some());
    talking.abort();
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    sfu.shutdown().await;

    let mut config = Config::for_local_test(SECRET);
    config.ice.host_override = Some(HostOverride::Hostname("no-such-host.invalid".into()));
    let error = calls_sfu::start(config).await.err().expect("start fails");
    assert!(error.to_string().contains("ice.host_override"), "{error}");
}
