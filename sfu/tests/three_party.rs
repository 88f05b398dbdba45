//! Three real participants in one call over 127.0.0.1: two speak different espeak-ng sentences,
//! the third only listens. Every participant must receive exactly the other speakers' voices,
//! attributed to them by owner session and display name, and the decoded audio must match what
//! was sent. The HTTP API (`/version`, `/healthz`, `/metrics`) is checked on the same SFU, and
//! the media counters must have moved by the end of the call.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use calls_participant::{audio, Event, Participant, TrackKind};
use common::*;
use tokio::task::JoinHandle;

/// A voice heard by one participant.
struct Heard {
    owner: String,
    owner_name: Option<String>,
    pcm: Vec<i16>,
}

/// Reads `participant`'s events for `window`, decoding every voice track that arrives in it.
fn listen(mut participant: Participant, window: Duration) -> JoinHandle<(Participant, Vec<Heard>)> {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + window;
        let mut recorders = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match participant.next_event_within(left).await {
                Some(Event::Track(track)) if track.kind() == TrackKind::Voice => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    recorders.push(tokio::spawn(async move {
                        let pcm = track.record_voice(left, left).await.expect("voice decodes");
                        Heard {
                            owner: track.owner().to_owned(),
                            owner_name: track.owner_name.clone(),
                            pcm,
                        }
                    }));
                }
                Some(_) => continue,
                None => break,
            }
        }
        let mut heard = Vec::new();
        for recorder in recorders {
            heard.push(recorder.await.expect("recorder task"));
        }
        (participant, heard)
    })
}

fn peak(pcm: &[i16]) -> i32 {
    pcm.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(0)
}

/// The value of one exposition line such as `name{labels} 42`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_clients_hear_exactly_the_other_speakers() {
    let dir = tempfile::tempdir().unwrap();
    let (alice_words, bob_words) = alice_and_bob_words(dir.path());
    let sfu = start_sfu().await;
    let http = reqwest::Client::new();

    let version: serde_json::Value = http
        .get(format!("{}/version", sfu.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .expect("/version is JSON");
    assert!(version["buildVersion"].is_string(), "{version}");
    assert!(version["buildHash"].is_string(), "{version}");
    let health = get(&http, &format!("{}/healthz", sfu.http_url())).await;
    assert!(health.status().is_success());

    let call = "call-three";
    let alice = join(&sfu, call, "Alice").await;
    let bob = join(&sfu, call, "Bob").await;
    let carol = join(&sfu, call, "Carol").await;
    let names: HashMap<String, &str> = [
        (alice.session_id().to_owned(), "Alice"),
        (bob.session_id().to_owned(), "Bob"),
        (carol.session_id().to_owned(), "Carol"),
    ]
    .into();
    let words: HashMap<&str, &[i16]> =
        [("Alice", &alice_words[..]), ("Bob", &bob_words[..])].into();

    let lead_in = Duration::from_millis(1500);
    let alice_send = alice.send_voice(with_lead_in(&alice_words, lead_in));
    let bob_send = bob.send_voice(with_lead_in(&bob_words, lead_in));
    let longest = alice_words.len().max(bob_words.len()) as f64 / 48_000.0;
    let window = lead_in + Duration::from_secs_f64(longest) + Duration::from_secs(3);
    let listeners = [
        ("Alice", listen(alice, window)),
        ("Bob", listen(bob, window)),
        ("Carol", listen(carol, window)),
    ];

    let during = get_text(&http, &format!("{}/metrics", sfu.http_url())).await;
    assert_eq!(metric(&during, "sfu_rtc_sessions_total"), 3.0);

    let mut participants = Vec::new();
    for (listener, task) in listeners {
        let (participant, heard) = task.await.expect("listener task");
        let mut speakers: Vec<&str> = Vec::new();
        for voice in &heard {
            let owner = names.get(&voice.owner).copied().unwrap_or("a stranger");
            assert_ne!(owner, listener, "{listener} received their own voice");
            assert_eq!(
                voice.owner_name.as_deref(),
                Some(owner),
                "track name of {owner}"
            );
            match words.get(owner) {
                Some(sent) => {
                    let score = audio::similarity(sent, &voice.pcm);
                    println!("{listener} hears {owner}: similarity {score:.3}");
                    assert!(
                        score >= 0.8,
                        "{listener} hears {owner} with similarity {score}"
                    );
                    let other = words
                        .iter()
                        .find(|(name, _)| **name != owner)
                        .map(|(_, w)| *w);
                    let cross = audio::similarity(other.expect("two speakers"), &voice.pcm);
                    assert!(
                        cross < 0.5,
                        "{owner}'s track at {listener} sounds like the other speaker ({cross})"
                    );
                    speakers.push(owner);
                }
                // A participant who never spoke may still publish a track; it must stay silent.
                None => assert!(
                    peak(&voice.pcm) < 200,
                    "{owner} is silent but {listener} hears sound"
                ),
            }
        }
        speakers.sort_unstable();
        let mut expected: Vec<&str> = ["Alice", "Bob"]
            .into_iter()
            .filter(|n| *n != listener)
            .collect();
        expected.sort_unstable();
        assert_eq!(speakers, expected, "voices {listener} received");
        participants.push(participant);
    }
    alice_send.await.unwrap().unwrap();
    bob_send.await.unwrap().unwrap();

    let after = get_text(&http, &format!("{}/metrics", sfu.http_url())).await;
    let audio_in = metric(
        &after,
        "sfu_rtc_rtp_packets_total{direction=\"in\",type=\"audio\"}",
    );
    let audio_out = metric(
        &after,
        "sfu_rtc_rtp_packets_total{direction=\"out\",type=\"audio\"}",
    );
    let bytes_out = metric(
        &after,
        "sfu_rtc_rtp_bytes_total{direction=\"out\",type=\"audio\"}",
    );
    println!("audio packets in {audio_in}, out {audio_out}, bytes out {bytes_out}");
    // Two speakers of about 4-5 s each at 50 packets/s, each forwarded to two receivers.
    assert!(audio_in >= 300.0, "audio packets in: {audio_in}");
    assert!(
        audio_out >= 1.5 * audio_in,
        "audio packets out {audio_out} for {audio_in} in"
    );
    assert!(bytes_out > audio_out * 20.0, "audio bytes out {bytes_out}");
    assert!(
        metric(
            &after,
            "sfu_rtc_rtp_tracks_total{direction=\"in\",type=\"audio\"}"
        ) >= 2.0
    );
    assert!(metric(&after, "sfu_ws_connections_total") >= 3.0);
    assert!(
        metric(
            &after,
            "sfu_ws_messages_total{direction=\"in\",type=\"join\"}"
        ) >= 3.0
    );
    assert!(after.contains("process_cpu_seconds_total"));
    assert!(after.contains("process_resident_memory_bytes"));

    for participant in participants {
        participant.leave().await.unwrap();
    }
    wait_for_sessions(&sfu, 0).await;
    sfu.shutdown().await;
}

/// Polls `/metrics` until the live-session gauge reads `expected`.
async fn wait_for_sessions(sfu: &calls_sfu::RunningSfu, expected: usize) {
    let url = format!("{}/metrics", sfu.http_url());
    for _ in 0..100 {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        if metric(&text, "sfu_rtc_sessions_total") == expected as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sfu_rtc_sessions_total never reached {expected}");
}
