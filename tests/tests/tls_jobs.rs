//! Jobs in the TLS configuration (issue 17): a TLS-only stack — the SFU on `https://`/`wss://` and
//! the offloader on `https://`, both with a certificate of a local CA for the Docker bridge address,
//! nothing listening in plain HTTP — runs a real `calls-recorder` and a real `calls-transcriber`
//! job. The job containers trust the CA only because the offloader hands it to them
//! (`jobs.ca_cert_file` → `CALLS_CA_CERT_PEM`): each joins the call over WSS, reports to the offloader
//! over HTTPS, and succeeds with its artifact (an MP4 with H.264 and AAC; a transcript holding the
//! spoken words).

use std::time::Duration;

use calls_e2e::call::{wait_joined, CallStack};
use calls_e2e::mp4;
use calls_e2e::offloader::OffloaderSettings;
use calls_e2e::speech::speak;
use calls_protocol::jobs::{JobState, JobType};
use serde_json::json;

const SECRET: &str = "tls-jobs-secret-0123456789abcdef0123";

async fn plain_http_is_refused(stack: &CallStack) {
    let plain = stack.sfu.http_url().replacen("https://", "http://", 1);
    let answer = reqwest::get(format!("{plain}/healthz")).await;
    assert!(
        answer.map_or(true, |r| !r.status().is_success()),
        "the SFU answers plain HTTP"
    );
    let plain = stack
        .offloader
        .base_url()
        .replacen("https://", "http://", 1);
    let answer = reqwest::get(format!("{plain}/healthz")).await;
    assert!(
        answer.map_or(true, |r| !r.status().is_success()),
        "the offloader answers plain HTTP"
    );
}

/// Alice says `words` in the job's call, the job is stopped `after` her last word and must succeed;
/// returns its `artifact`, downloaded.
async fn speak_then_download(
    stack: &CallStack,
    job: &calls_protocol::jobs::Job,
    words: Vec<i16>,
    after: Duration,
    finish_within: Duration,
    artifact: &str,
) -> anyhow::Result<calls_e2e::client::Reply> {
    let alice = stack.join("Alice").await?;
    wait_joined(&stack.client, job).await?;
    alice.send_voice(words).await??;
    tokio::time::sleep(after).await;
    stack.client.stop(&job.id).await?;
    let done = stack.client.wait_final(&job.id, finish_within).await?;
    let logs = stack.client.logs(&job.id).await.unwrap_or_default();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}\n{logs}");
    let reply = stack
        .client
        .get(&format!("/jobs/{}/artifacts/{artifact}", job.id))
        .await?
        .ok()?;
    alice.leave().await?;
    Ok(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_job_succeeds_against_a_tls_only_stack() -> anyhow::Result<()> {
    let settings = OffloaderSettings {
        recording_image: calls_e2e::docker::image("recorder"),
        stop_grace_period: "30s".into(),
        memory_mb: 1024,
        ..OffloaderSettings::default()
    };
    let stack = CallStack::start_tls(
        "recorder", "tls-rec", SECRET, "tls-rec", settings, "tls-rec",
    )
    .await?;
    assert!(stack.sfu.http_url().starts_with("https://"));
    assert!(stack.offloader.base_url().starts_with("https://"));
    plain_http_is_refused(&stack).await;

    let dir = tempfile::tempdir()?;
    let words = speak(
        dir.path(),
        "alice",
        "Recorded over an encrypted connection.",
    )?;
    let job = stack.recording_job("low").await?;
    let reply = speak_then_download(
        &stack,
        &job,
        words,
        Duration::from_secs(1),
        Duration::from_secs(120),
        "recording.mp4",
    )
    .await?;
    let path = dir.path().join("recording.mp4");
    std::fs::write(&path, &reply.body)?;
    let probe = mp4::probe(&path)?;
    let codecs: Vec<&str> = probe.streams.iter().map(|s| s.codec.as_str()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{probe:?}");
    stack.sfu.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transcription_job_succeeds_against_a_tls_only_stack() -> anyhow::Result<()> {
    let settings = OffloaderSettings::transcriber();
    let stack = CallStack::start_tls(
        "transcriber",
        "tls-tr",
        SECRET,
        "tls-tr",
        settings,
        "tls-tr",
    )
    .await?;
    plain_http_is_refused(&stack).await;
    let dir = tempfile::tempdir()?;
    let words = speak(
        dir.path(),
        "alice",
        "The quick brown fox jumps over the lazy dog.",
    )?;
    let job = stack
        .create_job(
            JobType::Transcribing,
            &[("model", json!("tiny.en")), ("language", json!("en"))],
        )
        .await?;
    let reply = speak_then_download(
        &stack,
        &job,
        words,
        Duration::from_secs(2),
        Duration::from_secs(900),
        "transcript.txt",
    )
    .await?;
    let text = reply.text().to_lowercase();
    assert!(
        text.contains("fox") && text.contains("dog"),
        "transcript: {text}"
    );
    stack.sfu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_offloader_refuses_to_start_with_a_missing_key_file_and_names_it() -> anyhow::Result<()>
{
    let bridge = calls_e2e::docker::bridge_gateway();
    let mut tls = calls_e2e::offloader::TestTls::new(&[bridge])?;
    tls.key_file = tls.key_file.with_file_name("no-such-key.pem");
    let settings = OffloaderSettings {
        tls: Some(tls),
        ..OffloaderSettings::default()
    };
    let error = calls_e2e::offloader::Offloader::start("tls-badkey", settings)
        .await
        .err()
        .expect("the offloader does not start")
        .to_string();
    assert!(
        error.contains("cannot read key file") && error.contains("no-such-key.pem"),
        "{error}"
    );
    Ok(())
}
