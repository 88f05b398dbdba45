//! Shared helpers of the SFU integration tests: an in-process SFU on 127.0.0.1, join tokens,
//! speech made with espeak-ng and sox, and waiting for participant events.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use calls_participant::{audio, Event, JoinOptions, Participant, RemoteTrack, Role, TrackKind};
use calls_sfu::{Config, RunningSfu};

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

pub async fn start_sfu() -> RunningSfu {
    let mut config = Config::for_local_test(SECRET);
    config.api_key = Some(calls_sfu::config::Secret::new("test-api-key-0123456789"));
    calls_sfu::start(config).await.expect("sfu starts")
}

pub fn token(call: &str, name: &str, role: Role) -> String {
    calls_sfu::token::mint(
        SECRET.as_bytes(),
        call,
        name,
        role,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .expect("token mints")
}

pub async fn join(sfu: &RunningSfu, call: &str, name: &str) -> Participant {
    let mut participant = Participant::join(
        &sfu.ws_url(),
        &token(call, name, Role::Participant),
        JoinOptions::default(),
    )
    .await
    .expect("join succeeds");
    participant
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("media connects");
    participant
}

/// Speaks `sentence` with espeak-ng and converts it to 48 kHz mono 16-bit with sox.
pub fn speech(dir: &Path, name: &str, sentence: &str) -> Vec<i16> {
    let raw = dir.join(format!("{name}-raw.wav"));
    let converted = dir.join(format!("{name}.wav"));
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg(sentence)
        .status()
        .expect("espeak-ng runs");
    assert!(status.success(), "espeak-ng failed");
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(&converted)
        .status()
        .expect("sox runs");
    assert!(status.success(), "sox failed");
    audio::read_wav(&converted).expect("wav reads")
}

/// Silence first, so the track is established before the words start.
pub fn with_lead_in(pcm: &[i16], lead_in: Duration) -> Vec<i16> {
    let mut out = vec![0i16; (lead_in.as_secs_f64() * 48_000.0) as usize];
    out.extend_from_slice(pcm);
    out
}

/// Waits for a remote track of `kind` owned by `owner`, skipping other events.
pub async fn wait_track(
    participant: &mut Participant,
    owner: &str,
    kind: TrackKind,
) -> RemoteTrack {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match participant.next_event_within(left).await {
            Some(Event::Track(track)) if track.owner() == owner && track.kind() == kind => {
                return track
            }
            Some(_) => continue,
            None => panic!("no {kind:?} track from {owner} arrived"),
        }
    }
}

/// Waits for an event matching `predicate`, skipping others.
pub async fn wait_event(
    participant: &mut Participant,
    what: &str,
    mut predicate: impl FnMut(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match participant.next_event_within(left).await {
            Some(event) if predicate(&event) => return event,
            Some(_) => continue,
            None => panic!("timed out waiting for {what}"),
        }
    }
}
