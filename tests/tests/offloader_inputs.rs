//! Issue 21 finding 3 and issue 16 item 4, against the real binary: a job's `input_data` may hold
//! only the inputs its runner reads. Variables that steer a program (`http_proxy`, `ld_preload`,
//! `path`, `rust_log`...) and typos (`PROFLE`) are a 400 naming the accepted keys, and create
//! nothing; the runner's own inputs are accepted.

use calls_e2e::client::{Client, Reply};
use calls_e2e::offloader::{serial, test_job, Offloader, OffloaderSettings};
use calls_protocol::jobs::{CreateJobRequest, JobType};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn only_the_runners_inputs_reach_a_job() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Transcribing jobs run the test job image as if it were our transcriber: the protocol's
    // list applies to them. Recording jobs keep the test job's own list (a foreign runner).
    let settings = OffloaderSettings {
        extra_env: vec![(
            "OFFLOADER_RUNNERS_TRANSCRIBING_FOREIGN_RUNNERS".into(),
            String::new(),
        )],
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("inputs", settings).await?;
    let client = offloader.register("inputs").await?;
    let transcribing = |pairs: &[(&str, &str)]| CreateJobRequest {
        job_type: JobType::Transcribing,
        runner: None,
        max_duration_sec: None,
        input_data: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect(),
    };
    for key in [
        "http_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ld_preload",
        "path",
        "rust_log",
        "PROFLE",
    ] {
        let error = refused(&client, &transcribing(&[("call_id", "c"), (key, "x")]), key)
            .await?
            .error()?;
        assert!(
            error.error.contains("is not an input of this job")
                && error.error.contains("transcribing jobs read call_id"),
            "{key}: {}",
            error.error
        );
        refused(&client, &test_job("exit0", &[(key, json!("x"))]), key).await?;
    }
    assert!(
        client.jobs().await?.is_empty(),
        "no refused request created a job"
    );

    let job = client
        .create_job(&transcribing(&[
            ("call_id", "c"),
            ("model", "tiny.en"),
            ("log_filter", "info"),
        ]))
        .await?;
    assert_eq!(job.input_data.len(), 3, "{job:?}");
    let job = client
        .create_job(&test_job("exit0", &[("sleep_seconds", json!(1))]))
        .await?;
    assert_eq!(job.job_type, JobType::Recording);
    Ok(())
}

/// Posts `spec` to `/jobs` and checks that it is refused as a bad request (`key` names the case).
async fn refused(client: &Client, spec: &CreateJobRequest, key: &str) -> anyhow::Result<Reply> {
    let reply = client.post_json("/jobs", spec).await?;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{key}: {}",
        reply.text()
    );
    Ok(reply)
}
