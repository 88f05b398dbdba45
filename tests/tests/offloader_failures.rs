//! Failures a person must be able to act on, against the real offloader and Docker: a runner
//! image that is not in the engine, a job killed for memory, and following a job's logs live. Each
//! runs in both backends (`::engine`, `::swarm`).

use std::time::{Duration, Instant};

use calls_e2e::in_both_modes;
use calls_e2e::offloader::{serial, test_job, test_job_image, Mode, Offloader, OffloaderSettings};
use calls_protocol::jobs::{InitRequest, InitResponse, JobState};
use serde_json::json;

const MISSING_IMAGE: &str = "calls-e2e-missing-image:never-built";

in_both_modes!(
    a_missing_runner_image_fails_the_job_with_a_clear_reason,
    a_job_over_its_memory_limit_fails_as_oom_killed,
    following_logs_streams_until_the_container_exits,
);

async fn a_missing_runner_image_fails_the_job_with_a_clear_reason(
    mode: Mode,
) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        image_allowlist: vec![MISSING_IMAGE.to_owned()],
        mode,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("noimage", settings).await?;
    let client = offloader.register("a").await?;

    // The on-demand check tells the operator before any job runs.
    let init: InitResponse = client
        .post_json(
            "/jobs/init",
            &InitRequest {
                runners: vec![test_job_image(), MISSING_IMAGE.to_owned()],
            },
        )
        .await?
        .ok_json()?;
    let present = |image: &str| {
        init.images
            .iter()
            .find(|s| s.image == image)
            .map(|s| s.present)
    };
    assert_eq!(present(&test_job_image()), Some(true), "{init:?}");
    assert_eq!(present(MISSING_IMAGE), Some(false), "{init:?}");
    // Per node: the engine itself, or the one node of the test swarm.
    assert_eq!(init.nodes.len(), 1, "{init:?}");
    assert_eq!(init.nodes[0].present, vec![test_job_image()]);
    assert_eq!(init.nodes[0].missing, vec![MISSING_IMAGE.to_owned()]);
    assert_eq!(init.nodes[0].node_id.is_empty(), mode == Mode::Engine);

    let mut spec = test_job("exit0", &[]);
    spec.runner = Some(MISSING_IMAGE.to_owned());
    let job = client.create_job(&spec).await?;
    assert_eq!(job.runner, MISSING_IMAGE);
    let job = client.wait_final(&job.id, Duration::from_secs(60)).await?;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let reason = job.failure_reason.unwrap_or_default();
    assert!(
        reason.starts_with("image missing") && reason.contains(MISSING_IMAGE),
        "{reason}"
    );
    Ok(())
}

async fn a_job_over_its_memory_limit_fails_as_oom_killed(mode: Mode) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        memory_mb: 64,
        mode,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("oom", settings).await?;
    let client = offloader.register("a").await?;

    let job = client
        .create_job(&test_job("hog_memory", &[("hog_mb", json!(512))]))
        .await?;
    let job = client.wait_final(&job.id, Duration::from_secs(60)).await?;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let reason = job.failure_reason.unwrap_or_default();
    assert!(
        reason.contains("OOM-killed") && reason.contains("64"),
        "the reason names the cause and the limit: {reason}"
    );
    Ok(())
}

async fn following_logs_streams_until_the_container_exits(mode: Mode) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        mode,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("follow", settings).await?;
    let client = offloader.register("a").await?;

    let job = client
        .create_job(&test_job("sleep", &[("sleep_seconds", json!(4))]))
        .await?;
    client
        .wait_for(&job.id, Duration::from_secs(60), "running", |j| {
            j.state == JobState::Running
        })
        .await?;
    let began = Instant::now();
    let reply = client
        .get(&format!("/jobs/{}/logs?follow=true", job.id))
        .await?;
    let waited = began.elapsed();
    assert!(
        reply.status.is_success(),
        "{} {}",
        reply.status,
        reply.text()
    );
    let text = reply.text();
    // The stream stayed open while the job ran and ended with its last line.
    assert!(text.contains("starting, behaviour Sleep"), "{text}");
    assert!(text.contains("slept 4s, exiting 0"), "{text}");
    assert!(
        waited >= Duration::from_secs(1),
        "returned after {waited:?}"
    );

    let bad = client.get(&format!("/jobs/{}/logs?tail=5", job.id)).await?;
    assert_eq!(bad.status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(bad.error()?.code, "bad_request");
    Ok(())
}
