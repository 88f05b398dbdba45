//! The demo page in a real Firefox ESR (headless, fake microphone, driven over WebDriver BiDi),
//! opened from a join link the way `calls-sfu token ... --link` prints it. Firefox negotiates
//! Opus under its own payload type (109), so it hears a participant-library client only if the
//! SFU rewrites forwarded packets per receiver (issue 12). The test asserts what the person at the
//! page sees: the speaker is marked as speaking and their voice reached the page's audio meter;
//! the page's fake microphone reaches the client; every trickled candidate was accepted (an empty
//! `sdpMid` makes Firefox refuse them); and a bot whose token says it records the call makes the
//! page show "This call is being recorded." until it leaves.
//!
//! Skipped, with a message, when neither `firefox-esr` nor `firefox` is installed.
mod common;

#[path = "browser/bidi.rs"]
mod bidi;

use std::io::Write;
use std::time::{Duration, SystemTime};

use bidi::Firefox;
use calls_participant::{Event, JoinOptions, Participant, Role, TrackKind};
use calls_sfu::token::BotPurpose;
use common::*;

const CALL: &str = "call-firefox";
const PAGE_NAME: &str = "Dave in Firefox";

/// What the page's audio and connection look like, for failure reports.
const DIAGNOSTICS: &str = r#"(async () => {
  const report = { audio: state.audio ? state.audio.state : null, meters: [...state.meters.keys()], rtp: [] };
  if (state.pc) {
    (await state.pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" || s.type === "codec") report.rtp.push({ type: s.type, kind: s.kind, packets: s.packetsReceived, energy: s.totalAudioEnergy, pt: s.payloadType, mime: s.mimeType });
    });
  }
  return JSON.stringify(report);
})()"#;

/// Polls `expression` in the page until `accept` takes its value, for at most `within`.
async fn poll_page(
    firefox: &Firefox,
    what: &str,
    expression: &str,
    within: Duration,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let value = firefox.evaluate(expression).await.unwrap_or_else(|err| {
            panic!(
                "evaluating {expression}: {err:#}\n{}",
                firefox.stderr_tail()
            )
        });
        if accept(&value) {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            let log = firefox
                .evaluate("document.getElementById('log').textContent")
                .await
                .unwrap_or_default();
            let diagnostics = firefox.evaluate(DIAGNOSTICS).await.unwrap_or_default();
            panic!(
                "timed out waiting for {what}; last value {value}\n--- page log ---\n{log}\n\
                 --- page state ---\n{diagnostics}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firefox_hears_a_participant_and_sees_who_speaks_and_who_records() {
    let Some(binary) = bidi::find_firefox() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED firefox interop: no firefox-esr on PATH (scripts/install-deps.sh installs it)"
        );
        return;
    };
    let sfu = start_sfu().await;
    let firefox = Firefox::launch(&binary).await.expect("firefox starts");
    let link =
        calls_sfu::token::join_link(&sfu.http_url(), &token(CALL, PAGE_NAME, Role::Participant))
            .expect("a valid base url");

    let mut bob = join(&sfu, CALL, "Bob").await;
    firefox.navigate(&link).await.expect("the join link loads");
    poll_page(
        &firefox,
        "the page to join and connect",
        "document.getElementById('status').textContent",
        Duration::from_secs(30),
        |status| status.as_str().is_some_and(|s| s.starts_with("in call")),
    )
    .await;
    let Event::ParticipantJoined(page) = wait_event(
        &mut bob,
        "the page to join",
        |event| matches!(event, Event::ParticipantJoined(info) if info.name == PAGE_NAME),
    )
    .await
    else {
        unreachable!("wait_event returns a matching event")
    };

    // Bob speaks; the page must hear him.
    let dir = tempfile::tempdir().expect("tempdir");
    let sentence = speech(dir.path(), "bob", "Hello Firefox, this is Bob speaking.");
    let mut voice = with_lead_in(&[], Duration::from_millis(500));
    for _ in 0..3 {
        voice.extend_from_slice(&sentence);
        voice.extend(std::iter::repeat_n(0i16, 48_000 / 3));
    }
    let speaking = bob.send_voice(voice);
    let speakers = poll_page(
        &firefox,
        "the page to show Bob speaking",
        "JSON.stringify(window.callsDemo.speaking())",
        Duration::from_secs(20),
        |value| value.as_str().is_some_and(|list| list.contains("\"Bob\"")),
    )
    .await;
    let marked = firefox
        .evaluate("document.querySelector('#participants li.speaking') ? document.querySelector('#participants li.speaking').textContent : ''")
        .await
        .expect("evaluates");
    eprintln!("speaking: {speakers}; marked in the list: {marked}");

    // The page's fake microphone reaches Bob.
    let tone = wait_track(&mut bob, &page.session_id, TrackKind::Voice).await;
    let mut packets = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(_)) = tokio::time::timeout_at(until, tone.next_packet()).await {
        packets += 1;
    }
    assert!(
        packets >= 50,
        "bob got {packets} packets from firefox in 2 s"
    );

    let peak = firefox
        .evaluate("String(window.callsDemo.peakLevels()['Bob'])")
        .await
        .expect("evaluates");
    let peak: f64 = peak.as_str().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    assert!(peak > 0.05, "the loudest level heard from bob was {peak}");

    // A recording bot joins: the page must say so, and stop saying so when it leaves.
    let recorder_token = calls_sfu::token::mint_with_purpose(
        SECRET.as_bytes(),
        CALL,
        "Recorder",
        Role::Bot,
        Some(BotPurpose::Recording),
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .expect("bot token mints");
    let recorder = Participant::join(&sfu.ws_url(), &recorder_token, JoinOptions::default())
        .await
        .expect("the recorder joins");
    let notice = poll_page(
        &firefox,
        "the recording notice",
        "window.callsDemo.notice()",
        Duration::from_secs(10),
        |value| {
            value
                .as_str()
                .is_some_and(|text| text.contains("being recorded"))
        },
    )
    .await;
    eprintln!("notice: {notice}");
    recorder.leave().await.expect("the recorder leaves");
    poll_page(
        &firefox,
        "the recording notice to go",
        "window.callsDemo.notice()",
        Duration::from_secs(10),
        |value| value.as_str() == Some(""),
    )
    .await;

    let log = firefox
        .evaluate("document.getElementById('log').textContent")
        .await
        .expect("evaluates");
    let log = log.as_str().unwrap_or_default();
    assert!(
        !log.contains("bad candidate"),
        "firefox refused candidates:\n{log}"
    );
    speaking.abort();
    let metrics = sfu.metrics().render();
    assert!(
        metrics.contains("sfu_rtc_errors_total{type=\"rtp_codec_refused\"} 0\n"),
        "{metrics}"
    );
}
