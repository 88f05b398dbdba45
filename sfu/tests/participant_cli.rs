//! The `calls-participant` program (run in-process through `calls_participant::cli`) against a
//! real SFU: one instance sends an espeak-ng sentence and the screen test pattern, another records
//! with `--record-dir`, and a bot publishes a caption. The recorder must write the speaker's voice
//! as `Speaker.wav` (16-bit 48 kHz mono, matching what was sent), count decoded pattern frames for
//! the sharer, and list participants, tracks, packets and the caption in summary.json.

mod common;

use std::time::Duration;

use calls_participant::cli::{self, Args};
use calls_participant::{audio, Caption, Event, JoinOptions, Participant, Role};
use common::*;

fn args(sfu: &calls_sfu::RunningSfu, call: &str, name: &str) -> Args {
    Args {
        sfu: sfu.http_url(),
        call: call.to_owned(),
        token: token(call, name, Role::Participant),
        name: name.to_owned(),
        send_audio: None,
        send_screen: false,
        record_dir: None,
        duration: None,
        ca_cert: None,
        relay_only: false,
        connect_timeout: Duration::from_secs(15),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_records_voices_screens_and_captions() {
    let dir = tempfile::tempdir().unwrap();
    let words = speech(
        dir.path(),
        "speaker",
        "Seven silver swans swam silently seaward.",
    );
    let wav = dir.path().join("speaker-lead-in.wav");
    audio::write_wav(&wav, &with_lead_in(&words, Duration::from_millis(1500))).unwrap();
    let record_dir = dir.path().join("recorded");
    let sfu = start_sfu().await;
    let call = "call-cli";

    let mut recorder = args(&sfu, call, "Recorder");
    recorder.record_dir = Some(record_dir.clone());
    recorder.duration = Some(Duration::from_secs(11));
    let recording = tokio::spawn(cli::run(recorder, std::future::pending()));
    for _ in 0..100 {
        if sfu.session_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut speaker = args(&sfu, call, "Speaker");
    speaker.send_audio = Some(wav);
    speaker.send_screen = true;
    speaker.duration = Some(Duration::from_secs(8));
    let speaking = tokio::spawn(cli::run(speaker, std::future::pending()));

    let bot_token = token(call, "Captioner", Role::Bot);
    let mut bot = Participant::join(&sfu.ws_url(), &bot_token, JoinOptions::default())
        .await
        .expect("bot joins");
    bot.wait_connected(Duration::from_secs(10)).await.unwrap();
    // A caption must name a member of the call (issue 21, finding 7).
    let speaker_session = match bot
        .initial_participants()
        .iter()
        .find(|p| p.name == "Speaker")
    {
        Some(info) => info.session_id.clone(),
        None => match wait_event(
            &mut bot,
            "the speaker joining",
            |event| matches!(event, Event::ParticipantJoined(info) if info.name == "Speaker"),
        )
        .await
        {
            Event::ParticipantJoined(info) => info.session_id,
            _ => unreachable!(),
        },
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    bot.publish_caption(Caption {
        id: None,
        tail: String::new(),
        text: "seven silver swans".into(),
        speaker_session,
        speaker_name: Some("Speaker".into()),
        start_ms: 0,
        end_ms: 1500,
        is_final: true,
    })
    .await
    .unwrap();

    let spoke = speaking.await.unwrap().expect("speaker run succeeds");
    let recorded = recording.await.unwrap().expect("recorder run succeeds");
    bot.leave().await.unwrap();
    assert!(
        spoke.errors.is_empty(),
        "speaker errors: {:?}",
        spoke.errors
    );
    assert!(
        recorded.errors.is_empty(),
        "recorder errors: {:?}",
        recorded.errors
    );

    let heard = audio::read_wav(&record_dir.join("Speaker.wav")).expect("Speaker.wav written");
    // read_wav insists on 16-bit 48 kHz; the canonical header says mono at byte 22.
    let header = std::fs::read(record_dir.join("Speaker.wav")).unwrap();
    assert_eq!(u16::from_le_bytes([header[22], header[23]]), 1, "mono");
    let score = audio::similarity(&words, &heard);
    println!("recorded Speaker.wav similarity {score:.3}");
    assert!(score >= 0.8, "similarity {score}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record_dir.join("summary.json")).unwrap())
            .expect("summary.json is JSON");
    println!("{summary:#}");
    let seen: Vec<&str> = summary["participants_seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        seen.contains(&"Speaker") && seen.contains(&"Captioner"),
        "{seen:?}"
    );
    let tracks = summary["tracks_received"].as_array().unwrap();
    let kind_of = |kind: &str| {
        tracks
            .iter()
            .find(|t| t["kind"] == kind && t["owner_name"] == "Speaker")
            .unwrap_or_else(|| panic!("no {kind} track from Speaker"))
    };
    assert_eq!(kind_of("voice")["wav"], "Speaker.wav");
    assert!(kind_of("voice")["packets"].as_u64().unwrap() > 150);
    let frames = summary["screen_frames_decoded"]["Speaker"]
        .as_u64()
        .unwrap();
    let pattern = kind_of("screen")["pattern_frames"].as_u64().unwrap();
    assert!(frames >= 30, "decoded screen frames {frames}");
    assert!(
        pattern * 10 >= frames * 9,
        "{pattern} of {frames} frames show the pattern"
    );
    assert!(summary["packets_received"].as_u64().unwrap() > 200);
    assert_eq!(
        summary["captions_received"][0]["text"],
        "seven silver swans"
    );
    sfu.shutdown().await;
}
