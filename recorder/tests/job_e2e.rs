//! The whole recorder job against a real SFU and a real offloader API, both in-process on 127.0.0.1 (the
//! offloader without Docker: the test plays the dispatcher and hands the job its token). Two people join; one
//! plays a tone, the other shares a screen for a while; the recorder joins as a bot, is stopped by a signal,
//! uploads `recording.mp4`, and the downloaded artifact is checked with ffprobe and ffmpeg.

use std::path::Path;
use std::time::{Duration, SystemTime};

use calls_participant::{JoinOptions, Participant, Role};
use calls_recorder::config::JobConfig;
use calls_recorder::job;
use calls_recorder::test_signal::tone;
use calls_recorder::I420Frame;
use serde_json::{json, Value};

mod common;
use common::{decode_audio, ffprobe_json, frame_at};

const SECRET: &str = "recorder-e2e-secret-0123456789abcdef";
const ADMIN: &str = "recorder-e2e-admin-0123456789abcdef";
const CLIENT_KEY: &str = "recorder-e2e-client-key-0123456789abcdef";
const CALL: &str = "call-recorded";

fn token(name: &str, role: Role) -> String {
    calls_sfu::token::mint(
        SECRET.as_bytes(),
        CALL,
        name,
        role,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .expect("token mints")
}

async fn join(url: &str, name: &str) -> Participant {
    let token = token(name, Role::Participant);
    let options = JoinOptions::default();
    Participant::join_connected(url, &token, options, Duration::from_secs(10))
        .await
        .expect("join succeeds and media connects")
}

/// The job as its client sees it: `GET /jobs/{id}` with the client's bearer header.
async fn job_view(
    http: &reqwest::Client,
    offloader_url: &str,
    job_id: &str,
    bearer: &str,
) -> Value {
    http.get(format!("{offloader_url}/jobs/{job_id}"))
        .header("authorization", bearer)
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("job body")
}

/// An offloader API on 127.0.0.1 with one recording job in `starting`; returns (base url, job id, job token,
/// client bearer header).
async fn start_offloader(dir: &Path) -> (String, String, String, String) {
    let env = vec![
        ("OFFLOADER_API_ADMIN_SECRET".to_owned(), ADMIN.to_owned()),
        (
            "OFFLOADER_STORE_DATA_DIR".to_owned(),
            dir.display().to_string(),
        ),
    ];
    let config = calls_offloader::Config::load("", env).expect("offloader config");
    let state = calls_offloader::AppState::new(config).expect("store opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = calls_offloader::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::new();
    let registered = http
        .post(format!("{base}/register"))
        .bearer_auth(ADMIN)
        .json(&json!({"clientID": "tests", "authKey": CLIENT_KEY}))
        .send()
        .await
        .expect("register");
    assert!(
        registered.status().is_success(),
        "{}",
        registered.text().await.unwrap_or_default()
    );
    let login: Value = http
        .post(format!("{base}/login"))
        .json(&json!({"clientID": "tests", "authKey": CLIENT_KEY}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let bearer = format!(
        "Bearer {}",
        login["bearerToken"].as_str().expect("bearerToken")
    );
    let job: Value = http
        .post(format!("{base}/jobs"))
        .header("authorization", &bearer)
        .json(&json!({"type": "recording", "input_data": {"call_id": CALL}}))
        .send()
        .await
        .expect("create job")
        .json()
        .await
        .expect("job body");
    let job_id = job["id"].as_str().expect("job id").to_owned();
    // What the dispatcher does when it starts the container.
    let job_token = calls_offloader::auth::new_token();
    assert!(state
        .store
        .mark_starting(&job_id, &calls_offloader::auth::token_hash(&job_token))
        .expect("store"));
    (base, job_id, job_token, bearer)
}

fn rms(samples: &[i16], from: f64, to: f64) -> f64 {
    let slice = &samples[(from * 48_000.0) as usize..(to * 48_000.0) as usize];
    (slice.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / slice.len() as f64).sqrt()
}

/// The participant library's share pattern is a bright vertical bar on black: count bright and dark pixels
/// along a row above the centre (where names are drawn when nobody shares).
fn bar_and_black(frame: &I420Frame) -> (usize, usize) {
    let row = &frame.planes()[0][100 * 1280..101 * 1280];
    (
        row.iter().filter(|&&y| y > 200).count(),
        row.iter().filter(|&&y| y < 30).count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recorder_job_records_a_call_and_uploads_a_playable_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sfu = calls_sfu::start(calls_sfu::Config::for_local_test(SECRET))
        .await
        .expect("sfu starts");
    let (offloader_url, job_id, job_token, client_bearer) =
        start_offloader(&dir.path().join("offloader")).await;

    let alice = join(&sfu.ws_url(), "Alice").await;
    let mut bob = join(&sfu.ws_url(), "Bob").await;

    let settings = [
        ("JOB_ID", job_id.clone()),
        ("JOB_TOKEN", job_token),
        ("OFFLOADER_URL", offloader_url.clone()),
        ("CALL_ID", CALL.to_owned()),
        ("SFU_URL", sfu.http_url()),
        ("BOT_TOKEN", token("Recorder", Role::Bot)),
        ("PROFILE", "low".to_owned()),
        ("OUTPUT_DIR", dir.path().join("data").display().to_string()),
    ];
    let config = JobConfig::from_lookup(|key| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    })
    .expect("valid settings");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let recorder = tokio::spawn(job::run(config, async {
        let _ = stopped.await;
    }));

    // The recording's time zero is when the bot's media connected, which is when it reports `started`.
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = job_view(&http, &offloader_url, &job_id, &client_bearer).await;
        if job["progress"] == "joined the call" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the recorder never reported started: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = tokio::time::Instant::now();
    // Alice: silence until 1.5 s, then a 2 s tone. Bob: shares a screen from 4 s to 7 s. Stop at 9 s.
    let mut pcm = vec![0i16; 72_000];
    pcm.extend(tone(440.0, 0.5, 0, 96_000));
    let voice = alice.send_voice(pcm);
    tokio::time::sleep_until(t0 + Duration::from_secs(4)).await;
    bob.start_screen(640, 360, 15).await.expect("share starts");
    tokio::time::sleep_until(t0 + Duration::from_secs(7)).await;
    bob.stop_screen().await.expect("share stops");
    tokio::time::sleep_until(t0 + Duration::from_secs(9)).await;
    let _ = voice.await;
    let _ = stop.send(());
    let outcome = tokio::time::timeout(Duration::from_secs(60), recorder)
        .await
        .expect("the job ends")
        .expect("the job task does not panic")
        .expect("the job succeeds");
    assert!(
        (outcome.recorded.as_secs_f64() - 9.0).abs() < 1.0,
        "{outcome:?}"
    );

    // The artifact, as a client downloads it.
    let artifact = http
        .get(format!(
            "{offloader_url}/jobs/{job_id}/artifacts/recording.mp4"
        ))
        .header("authorization", &client_bearer)
        .send()
        .await
        .expect("download");
    assert!(artifact.status().is_success(), "{}", artifact.status());
    let bytes = artifact.bytes().await.expect("artifact body");
    assert_eq!(bytes.len() as u64, outcome.bytes);
    let path = dir.path().join("downloaded.mp4");
    std::fs::write(&path, &bytes).expect("write");

    let probe = ffprobe_json(&path);
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert_eq!(codecs, ["h264", "aac"]);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!(
        (duration - outcome.recorded.as_secs_f64()).abs() < 1.0,
        "duration {duration}"
    );

    // Sound: the tone roughly 1.5–3.5 s after the bot joined, silence before and long after.
    let samples = decode_audio(&path);
    let tone_level = rms(&samples, 2.0, 3.0);
    assert!(tone_level > 3000.0, "tone level {tone_level}");
    for (from, to) in [(0.0, 1.0), (4.5, 8.0)] {
        let level = rms(&samples, from, to);
        assert!(level < 100.0, "silence expected in {from}..{to}: {level}");
    }

    // Picture: Bob's bar pattern while he shares, the names background otherwise.
    let (bright, dark) = bar_and_black(&frame_at(&path, 5.5, 1280, 720));
    assert!(
        bright >= 2 && dark >= 800,
        "share pattern at 5.5 s: {bright} bright, {dark} dark"
    );
    for at in [1.0, 8.3] {
        let (bright, dark) = bar_and_black(&frame_at(&path, at, 1280, 720));
        assert!(
            bright < 40 && dark < 100,
            "no share at {at} s: {bright} bright, {dark} dark"
        );
    }

    // What the offloader recorded about the job.
    let job = job_view(&http, &offloader_url, &job_id, &client_bearer).await;
    assert!(
        job["progress"]
            .as_str()
            .is_some_and(|p| p.starts_with("uploaded recording.mp4")),
        "{job}"
    );
    assert!(
        job["counters"]["video_frames_encoded"]
            .as_f64()
            .is_some_and(|n| n > 30.0),
        "{job}"
    );

    alice.leave().await.expect("alice leaves");
    bob.leave().await.expect("bob leaves");
    sfu.shutdown().await;
}
