//! Interop with a WebRTC stack that is not webrtc-rs: Python aiortc (from PyPI, installed by
//! this test into a virtual environment under the target dir) joins a call, publishes a tone and
//! must hear a participant-library client speaking. aiortc offers Opus as payload type 96, not
//! the 111 the SFU registers, so this fails unless the SFU rewrites forwarded packets to the
//! payload type each receiver negotiated (issue 12). The other direction (aiortc's tone reaching
//! the client) is checked too, and the SFU must count no refused or failed writes.
//!
//! Skipped, with a message, when no `python3` is installed.
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use calls_participant::{Event, Role, TrackKind};
use common::*;

const CALL: &str = "call-aiortc";
const CLIENT_NAME: &str = "Eve in aiortc";
const CLIENT_SECONDS: &str = "14";

/// A Python with aiortc, websockets and numpy: a virtual environment kept in the target dir
/// (created and filled from PyPI on first use), or `None` after saying why the test is skipped.
/// Made once per test process: the tests of this file run in parallel and would otherwise race
/// to create the same virtual environment ("File exists").
fn python_with_aiortc() -> Option<PathBuf> {
    static PYTHON: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_python_with_aiortc).clone()
}

fn make_python_with_aiortc() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aiortc-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import aiortc, websockets, numpy"])
            .status()
            .is_ok_and(|status| status.success())
    };
    if ready(&python) {
        return Some(python);
    }
    if Command::new("python3").arg("--version").output().is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED aiortc interop: no python3 (apt-get install python3 python3-venv)"
        );
        return None;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "python3 -m venv failed (apt-get install python3-venv)"
    );
    let output = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "aiortc==1.16.0",
            "websockets",
            "numpy",
        ])
        .output()
        .expect("pip runs");
    assert!(
        output.status.success(),
        "pip install aiortc failed (PyPI unreachable?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(ready(&python), "aiortc installed but does not import");
    Some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aiortc_client_offering_other_payload_types_hears_and_is_heard() {
    let Some(python) = python_with_aiortc() else {
        return;
    };
    let sfu = start_sfu().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sentence = speech(
        dir.path(),
        "bob",
        "Can you hear me through the forwarding unit?",
    );
    let mut voice = with_lead_in(&[], Duration::from_secs(1));
    for _ in 0..4 {
        voice.extend_from_slice(&sentence);
        voice.extend(std::iter::repeat_n(0i16, 48_000 / 2));
    }

    let mut bob = join(&sfu, CALL, "Bob").await;
    let speaking = bob.send_voice(voice);
    let client = tokio::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/aiortc/client.py"
        ))
        .arg(sfu.ws_url())
        .arg(token(CALL, CLIENT_NAME, Role::Participant))
        .arg(CLIENT_SECONDS)
        .kill_on_drop(true)
        .output();
    let client = tokio::spawn(client);

    let joined = wait_event(
        &mut bob,
        "the aiortc client to join",
        |event| matches!(event, Event::ParticipantJoined(info) if info.name == CLIENT_NAME),
    )
    .await;
    let Event::ParticipantJoined(eve) = joined else {
        unreachable!("wait_event returns a matching event")
    };
    let tone = wait_track(&mut bob, &eve.session_id, TrackKind::Voice).await;
    let mut tone_packets = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(_)) = tokio::time::timeout_at(until, tone.next_packet()).await {
        tone_packets += 1;
    }

    let output = tokio::time::timeout(Duration::from_secs(60), client)
        .await
        .expect("the aiortc client finishes")
        .expect("the client task does not panic")
        .expect("the aiortc client runs");
    speaking.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "aiortc client failed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no report from the aiortc client:\n{stdout}\n{stderr}"));
    eprintln!("aiortc report: {report}; bob got {tone_packets} packets of the tone");

    let offered = report["offered_opus_pt"].as_u64();
    assert!(
        offered.is_some_and(|pt| pt != u64::from(calls_rtc::codecs::OPUS_PAYLOAD_TYPE)),
        "the client must offer Opus under another payload type than the SFU's, or this test \
         proves nothing: {report}"
    );
    assert_eq!(
        report["answered_opus_pt"].as_u64(),
        offered,
        "the SFU answers with the client's payload type"
    );
    assert!(
        tone_packets >= 100,
        "bob got {tone_packets} packets of the tone"
    );
    let frames = report["frames"].as_u64().unwrap_or(0);
    let loud = report["loud_frames"].as_u64().unwrap_or(0);
    // Bob speaks about 8 s of the 14 the client listens: 50 frames a second.
    assert!(
        frames >= 250,
        "the aiortc client decoded {frames} frames of bob's voice"
    );
    assert!(
        loud >= 75,
        "only {loud} of {frames} frames the aiortc client heard had sound"
    );

    let metrics = sfu.metrics().render();
    for refused in ["rtp_codec_refused", "rtp_write"] {
        assert!(
            metrics.contains(&format!("sfu_rtc_errors_total{{type=\"{refused}\"}} 0\n")),
            "the sfu counted {refused} errors:\n{metrics}"
        );
    }
}

/// Issue 11, finding 4: every track a session publishes adds a transceiver, two tasks and a
/// renegotiation to every other member, and there was no limit. With the defaults (one voice, one
/// screen per session) a client publishing two voices gets `track_limit` for the second, and the
/// others receive only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_voice_track_is_refused_with_track_limit() {
    let Some(python) = python_with_aiortc() else {
        return;
    };
    let sfu = start_sfu().await;
    let mut bob = join(&sfu, "call-aiortc-limit", "Bob").await;
    let client = tokio::spawn(
        tokio::process::Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/aiortc/client.py"
            ))
            .arg(sfu.ws_url())
            .arg(token("call-aiortc-limit", CLIENT_NAME, Role::Participant))
            .args(["8", "2"])
            .kill_on_drop(true)
            .output(),
    );
    let Event::ParticipantJoined(eve) = wait_event(
        &mut bob,
        "the aiortc client",
        |event| matches!(event, Event::ParticipantJoined(info) if info.name == CLIENT_NAME),
    )
    .await
    else {
        unreachable!("wait_event returns a matching event")
    };
    let mut voices = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(Some(event)) = tokio::time::timeout_at(until, bob.next_event()).await {
        if let Event::Track(track) = event {
            if track.owner() == eve.session_id && track.kind() == TrackKind::Voice {
                voices += 1;
            }
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(60), client)
        .await
        .expect("the aiortc client finishes")
        .expect("the client task does not panic")
        .expect("the aiortc client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    eprintln!("aiortc report: {report}; bob got {voices} voice track(s) from it");
    assert_eq!(voices, 1, "bob must receive exactly one of the two voices");
    assert!(
        report["errors"]
            .as_array()
            .is_some_and(|codes| codes.iter().any(|code| code == "track_limit")),
        "the client was not told: {report}"
    );
    assert!(sfu
        .metrics()
        .render()
        .contains("sfu_rtc_errors_total{type=\"track_limit\"} 1"));
}
