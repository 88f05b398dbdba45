//! The recorder end to end with real containers (issue 4, "Done when"): an in-process SFU and the
//! real `calls-offloader` binary, both on the Docker bridge address, and the `calls-recorder:latest`
//! image started by the offloader as a recording job. Two participants join a call and each speaks a
//! different espeak-ng sentence at a known time while one shares the moving test pattern for part
//! of the call; a client asks the offloader for a recording, stops it through the API after ~20 s,
//! downloads `recording.mp4` and checks it with ffprobe and ffmpeg: streams, size, frame rate,
//! duration, each sentence found by cross-correlation at its time, silence between, the pattern
//! exactly while it was shared, and while nobody shares, the backdrop's tiles with the speaker's tile
//! outlined while only Alice speaks and none outlined in the silence. A second test kills the recorder container mid-call and expects a
//! `failed` job whose reason says so.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use calls_e2e::call::{wait_joined, CallStack};
use calls_e2e::client::Client;
use calls_e2e::offloader::{serial, OffloaderSettings};
use calls_e2e::{docker, mp4, speech};
use calls_participant::video::{bar_position, pattern_frame, VideoFrame, BAR_STEP};
use calls_participant::{Event, Participant, Role};
use calls_protocol::jobs::{Job, JobState};
use calls_recorder::backdrop::{grid, Rect, HIGHLIGHT, TILE};
use calls_recorder::Yuv;
use tokio::time::Instant;

const SECRET: &str = "recorder-e2e-token-secret-0123456789abcdef";
const CALL: &str = "call-recorded-e2e";

/// The recorder image under test (`calls-recorder:$TAG`, see `docker::image`).
fn recorder_image() -> String {
    calls_e2e::docker::image("recorder")
}
/// The `low` profile: what the file must have.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: f64 = 15.0;
/// The shared screen's size; recorded frames are scaled back to it before looking for the pattern.
const SHARE: (u32, u32) = (640, 360);

const SENTENCE_A: &str = "The quick brown fox jumps over the lazy dog.";
const SENTENCE_B: &str = "Seven silver boats sail north at midnight.";
/// The script, in seconds after the recorder joined.
const A_AT: f64 = 1.5;
const SHARE_FROM: f64 = 5.0;
const B_AT: f64 = 8.0;
const SHARE_UNTIL: f64 = 12.5;
const STOP_AT: f64 = 20.0;

async fn start_stack(tag: &str) -> anyhow::Result<CallStack> {
    let settings = OffloaderSettings {
        recording_image: recorder_image(),
        // Finalising and uploading happen between SIGTERM and SIGKILL.
        stop_grace_period: "30s".into(),
        memory_mb: 1024,
        ..OffloaderSettings::default()
    };
    CallStack::start("recorder", tag, SECRET, CALL, settings, "recorder").await
}

/// Asks the offloader for a recording of the call (low profile); the bot token is a secret field.
async fn request_recording(stack: &CallStack) -> anyhow::Result<Job> {
    let job = stack.recording_job("low").await?;
    assert_eq!(job.runner, recorder_image());
    assert_eq!(job.secret_fields, ["bot_token"], "{job:?}");
    assert!(!job.input_data.contains_key("bot_token"), "{job:?}");
    Ok(job)
}

fn seconds_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_job_records_both_voices_and_the_share_at_the_right_times() -> anyhow::Result<()>
{
    let _serial = serial().await;
    let dir = tempfile::tempdir()?;
    let sentence_a = speech::speak(dir.path(), "a", SENTENCE_A)?;
    let sentence_b = speech::speak(dir.path(), "b", SENTENCE_B)?;
    let (a_end, b_end) = (
        A_AT + speech::duration_of(&sentence_a).as_secs_f64(),
        B_AT + speech::duration_of(&sentence_b).as_secs_f64(),
    );
    assert!(
        a_end < SHARE_FROM && b_end < SHARE_UNTIL,
        "the sentences fit the script"
    );

    let stack = start_stack("rec").await?;
    let mut alice = stack.join("Alice").await?;
    let mut bob = stack.join("Bob").await?;
    let job = request_recording(&stack).await?;
    let t0 = wait_joined(&stack.client, &job).await?;
    eprintln!("recorder joined; job {}", job.id);

    // The script. Each step waits for its time on the recorder's clock (t0).
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    tokio::time::sleep_until(at(A_AT)).await;
    let voice_a = alice.send_voice(sentence_a.clone());
    tokio::time::sleep_until(at(SHARE_FROM)).await;
    bob.start_screen(SHARE.0, SHARE.1, 15).await?;
    tokio::time::sleep_until(at(B_AT)).await;
    let voice_b = bob.send_voice(sentence_b.clone());
    tokio::time::sleep_until(at(SHARE_UNTIL)).await;
    bob.stop_screen().await?;
    voice_a.await??;
    voice_b.await??;

    // The image's health check sees the heartbeat (first check 10 s after the container started).
    tokio::time::sleep_until(at(15.0)).await;
    let health = docker::inspect(&job.container_name, "{{.State.Health.Status}}");
    assert_eq!(health.as_deref(), Some("healthy"), "docker health status");

    tokio::time::sleep_until(at(STOP_AT)).await;
    let stop = stack.client.stop(&job.id).await?;
    let recorded = seconds_since(t0);
    assert!(stop.status.is_success(), "{} {}", stop.status, stop.text());
    let done = stack
        .client
        .wait_final(&job.id, Duration::from_secs(60))
        .await?;
    let logs = stack.client.logs(&job.id).await.unwrap_or_default();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}\nlogs:\n{logs}");
    eprintln!(
        "job succeeded {:.1} s after the stop request: {:?}",
        seconds_since(t0) - recorded,
        done.progress
    );
    for phase in [
        "joined call",
        "first audio",
        "first screen frame",
        "uploaded",
    ] {
        assert!(
            logs.contains(phase),
            "no {phase:?} line in the logs:\n{logs}"
        );
    }
    assert!(
        done.progress
            .as_deref()
            .is_some_and(|p| p.starts_with("uploaded recording.mp4")),
        "{done:?}"
    );

    // The bot was in the call as a bot.
    let bot_joined = drain_events(&mut alice).into_iter().any(|e| {
        matches!(e, Event::ParticipantJoined(info) if info.role == Role::Bot && info.name == "Recorder")
    });
    assert!(bot_joined, "Alice saw the recorder join as a bot");

    let path = dir.path().join("recording.mp4");
    download(&stack.client, &job.id, &path).await?;
    let reported = done
        .counters
        .get("seconds_recorded")
        .copied()
        .unwrap_or(0.0);
    check_streams(&path, recorded, reported)?;
    check_sound(&path, &sentence_a, &sentence_b, a_end, b_end)?;
    check_pictures(&path)?;
    check_backdrop(&path, a_end)?;

    alice.leave().await?;
    bob.leave().await?;
    stack.sfu.shutdown().await;
    drop(stack.offloader);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_recorder_container_fails_the_job_with_a_reason() -> anyhow::Result<()> {
    let _serial = serial().await;
    let stack = start_stack("reckill").await?;
    let alice = stack.join("Alice").await?;
    let job = request_recording(&stack).await?;
    wait_joined(&stack.client, &job).await?;
    let voice = alice.send_voice(vec![3000; 48_000 * 2]);
    tokio::time::sleep(Duration::from_secs(3)).await;

    docker::kill(&job.container_name)?;
    let done = stack
        .client
        .wait_final(&job.id, Duration::from_secs(30))
        .await?;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let reason = done.failure_reason.clone().unwrap_or_default();
    eprintln!("failure reason: {reason}");
    assert!(
        reason.starts_with("exited 137 (signal 9)"),
        "the reason says the container was killed: {reason}"
    );
    // The last log lines follow; which ones depends on the WebRTC stack's chatter at that moment.
    assert!(
        reason.lines().count() >= 2 && (reason.contains(" INFO ") || reason.contains(" WARN ")),
        "the reason quotes the recorder's last log lines: {reason}"
    );
    // Nothing was delivered, and the container is kept for debugging.
    let artifact = stack
        .client
        .get(&format!("/jobs/{}/artifacts/recording.mp4", job.id))
        .await?;
    assert_eq!(artifact.status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(
        docker::inspect(&job.container_name, "{{.State.Status}}").as_deref(),
        Some("exited")
    );

    let _ = voice.await;
    alice.leave().await?;
    stack.sfu.shutdown().await;
    Ok(())
}

/// Every event already buffered for `participant`.
fn drain_events(participant: &mut Participant) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(Some(event)) = participant.next_event().now_or_never() {
        events.push(event);
    }
    events
}

/// Polls a future once: `Some(output)` when it is ready right away.
trait NowOrNever: std::future::Future + Sized {
    fn now_or_never(self) -> Option<Self::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(self);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}

impl<F: std::future::Future> NowOrNever for F {}

async fn download(client: &Client, job_id: &str, path: &Path) -> anyhow::Result<()> {
    let reply = client
        .get(&format!("/jobs/{job_id}/artifacts/recording.mp4"))
        .await?;
    if !reply.status.is_success() {
        bail!("artifact download: {} {}", reply.status, reply.text());
    }
    std::fs::write(path, &reply.body)?;
    Ok(())
}

/// One H.264 and one AAC stream, the profile's size and rate, and a duration within 1 s of the
/// recorded time: from the recorder's `started` report (as the test saw it) to the stop request.
/// The recorder's own `seconds_recorded` counter must agree too.
fn check_streams(path: &Path, recorded: f64, reported: f64) -> anyhow::Result<()> {
    let probe = mp4::probe(path)?;
    let codecs: Vec<&str> = probe.streams.iter().map(|s| s.codec.as_str()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{probe:?}");
    let video = &probe.streams[0];
    assert_eq!((video.width, video.height), (WIDTH, HEIGHT), "{probe:?}");
    assert!((video.frame_rate - FPS).abs() < 0.01, "{probe:?}");
    eprintln!(
        "duration {:.2} s, recorded {recorded:.2} s, the recorder counted {reported:.2} s",
        probe.duration
    );
    assert!(
        (probe.duration - recorded).abs() < 1.0,
        "duration {:.2} s for {recorded:.2} s recorded",
        probe.duration
    );
    assert!(
        (reported - recorded).abs() < 1.0,
        "the recorder counted {reported:.2} s for {recorded:.2} s recorded"
    );
    Ok(())
}

/// Each sentence found where it was spoken (by waveform cross-correlation), silence around them.
fn check_sound(
    path: &Path,
    sentence_a: &[i16],
    sentence_b: &[i16],
    a_end: f64,
    b_end: f64,
) -> anyhow::Result<()> {
    let audio = mp4::decode_audio(path)?;
    for (name, clip, expected) in [("A", sentence_a, A_AT), ("B", sentence_b, B_AT)] {
        let found = speech::locate(clip, &audio).context("the recording is long enough")?;
        eprintln!("sentence {name}: sent at {expected:.2} s, found {found:?}");
        assert!(
            (found.at - expected).abs() < 0.75,
            "sentence {name} sent at {expected} s, found at {:.2} s",
            found.at
        );
        assert!(
            found.waveform > 0.5,
            "sentence {name} is in the recording: {found:?}"
        );
    }
    let level = |from: f64, to: f64| speech::rms(&audio, from, to);
    for (from, to) in [(A_AT + 0.3, a_end - 0.3), (B_AT + 0.3, b_end - 0.3)] {
        assert!(
            level(from, to) > 500.0,
            "speech in {from:.1}..{to:.1}: {}",
            level(from, to)
        );
    }
    for (from, to) in [
        (0.2, A_AT - 0.3),
        (a_end + 0.6, B_AT - 0.3),
        (b_end + 0.6, STOP_AT - 0.5),
    ] {
        assert!(
            level(from, to) < 100.0,
            "silence in {from:.1}..{to:.1}: {}",
            level(from, to)
        );
    }
    Ok(())
}

/// Sampled twice a second: the moving pattern while it was shared (allowing 1.5 s for the share
/// to reach the recorder and 0.5 s for its end), never outside. While shared, each sampled picture
/// (scaled back to the share's size) is within 30 dB PSNR of the pattern frame the sender drew, so a
/// cheaper pipeline cannot pass by blurring or dropping the share.
fn check_pictures(path: &Path) -> anyhow::Result<()> {
    let frames = mp4::sample_frames(path, 2, SHARE.0, SHARE.1)?;
    let psnr: Vec<f64> = frames.iter().map(|data| pattern_psnr(data)).collect();
    let bars: Vec<Option<u32>> = frames
        .into_iter()
        .map(|data| {
            bar_position(&VideoFrame {
                width: SHARE.0,
                height: SHARE.1,
                data,
            })
        })
        .collect();
    eprintln!("pattern bar per half second: {bars:?}");
    let time = |k: usize| k as f64 / 2.0;
    let during: Vec<Option<u32>> = (0..bars.len())
        .filter(|&k| time(k) >= SHARE_FROM + 1.5 && time(k) <= SHARE_UNTIL - 0.5)
        .map(|k| bars[k])
        .collect();
    assert!(
        during.len() >= 10 && during.iter().all(Option::is_some),
        "the pattern while shared: {during:?}"
    );
    let during_psnr: Vec<f64> = (0..psnr.len())
        .filter(|&k| time(k) >= SHARE_FROM + 1.5 && time(k) <= SHARE_UNTIL - 0.5)
        .map(|k| psnr[k])
        .collect();
    eprintln!("luma PSNR against the sent pattern while shared, dB: {during_psnr:.1?}");
    assert!(
        during_psnr.iter().all(|db| *db >= 30.0),
        "the recorded share is the sent pattern (PSNR >= 30 dB): {during_psnr:.1?}"
    );
    let mut positions: Vec<u32> = during.iter().flatten().copied().collect();
    positions.dedup();
    assert!(
        positions.len() >= during.len() / 2,
        "the pattern moves: {during:?}"
    );
    for (k, bar) in bars.iter().enumerate() {
        let t = time(k);
        if t < SHARE_FROM || (t > SHARE_UNTIL + 1.0 && t < STOP_AT - 0.5) {
            assert_eq!(*bar, None, "no pattern at {t} s: {bars:?}");
        }
    }
    Ok(())
}

/// While nobody shares: the backdrop's two tiles (Alice, then Bob: alphabetical, both were there
/// before the recorder), Alice's outlined in the middle of her sentence (only she speaks, nobody
/// shares), neither before anyone spoke nor in the silence at the end.
fn check_backdrop(path: &Path, a_end: f64) -> anyhow::Result<()> {
    let layout = grid(2, WIDTH, HEIGHT);
    let frames = mp4::sample_frames(path, 2, WIDTH, HEIGHT)?;
    let outlined = |t: f64| -> Vec<bool> {
        let frame = &frames[(t * 2.0).round() as usize];
        layout
            .tiles
            .iter()
            .map(|tile| {
                let colour = left_border(frame, *tile, layout.border);
                let near = |c: Yuv| {
                    colour.y.abs_diff(c.y) <= 16
                        && colour.u.abs_diff(c.u) <= 16
                        && colour.v.abs_diff(c.v) <= 16
                };
                assert!(
                    near(HIGHLIGHT) || near(TILE),
                    "at {t} s the edge of {tile:?} is {colour:?}: no tile there"
                );
                near(HIGHLIGHT)
            })
            .collect()
    };
    let middle_of_a = ((A_AT + a_end) / 2.0 * 2.0).round() / 2.0;
    for (t, expected) in [
        (1.0, [false, false]),
        (middle_of_a, [true, false]),
        (STOP_AT - 1.5, [false, false]),
    ] {
        let seen = outlined(t);
        eprintln!("backdrop at {t} s: outlined {seen:?}");
        assert_eq!(seen, expected, "tiles outlined at {t} s (Alice, Bob)");
    }
    Ok(())
}

/// The average colour down the middle of a tile's left border, from a packed I420 frame.
fn left_border(frame: &[u8], tile: Rect, border: u32) -> Yuv {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let chroma = w.div_ceil(2);
    let x = (tile.x + border / 2) as usize;
    let rows = (tile.y + tile.height / 3) as usize..(tile.y + 2 * tile.height / 3) as usize;
    let count = rows.len();
    let (mut y, mut u, mut v) = (0usize, 0usize, 0usize);
    for row in rows {
        y += usize::from(frame[row * w + x]);
        let c = (row / 2) * chroma + x / 2;
        u += usize::from(frame[w * h + c]);
        v += usize::from(frame[w * h + chroma * h.div_ceil(2) + c]);
    }
    // Averages of bytes are bytes.
    Yuv {
        y: (y / count) as u8,
        u: (u / count) as u8,
        v: (v / count) as u8,
    }
}

/// Luma PSNR (dB) of a sampled picture against the sender's pattern frame it shows: the pattern frame
/// whose bar columns best match the picture's column brightness (the bar moves [`BAR_STEP`] pixels a
/// frame, so there are `width / BAR_STEP` candidates).
fn pattern_psnr(picture: &[u8]) -> f64 {
    let (width, height) = (SHARE.0 as usize, SHARE.1 as usize);
    let columns: Vec<f64> = (0..width)
        .map(|x| {
            (0..height)
                .map(|y| f64::from(picture[y * width + x]))
                .sum::<f64>()
                / height as f64
        })
        .collect();
    let best = (0..SHARE.0 / BAR_STEP)
        .map(|index| pattern_frame(SHARE.0, SHARE.1, u64::from(index)))
        .min_by(|a, b| {
            let error = |frame: &VideoFrame| -> f64 {
                columns
                    .iter()
                    .enumerate()
                    .map(|(x, mean)| (mean - f64::from(frame.luma()[x])).powi(2))
                    .sum()
            };
            error(a).total_cmp(&error(b))
        })
        .expect("there is at least one candidate");
    mp4::luma_psnr(picture, best.luma(), width * height)
}
