//! The life of single jobs against the real offloader binary and the real Docker engine: exit 0,
//! exit 1 with retention, max duration, stop through the API, and artifact upload/download. The
//! first four run in both backends (`<test>::engine`, `<test>::swarm`: a single-node swarm on
//! this engine, one `replicated-job` service per job).

use std::time::Duration;

use calls_e2e::artifact::artifact_bytes;
use calls_e2e::docker;
use calls_e2e::in_both_modes;
use calls_e2e::offloader::{serial, test_job, Mode, Offloader, OffloaderSettings};
use calls_e2e::swarm;
use calls_protocol::jobs::{ArtifactList, JobState};
use reqwest::{Method, StatusCode};
use serde_json::json;

const FINAL: Duration = Duration::from_secs(60);

in_both_modes!(
    job_exiting_0_succeeds_and_its_container_is_removed,
    job_exiting_1_fails_with_its_log_lines_and_is_swept_after_retention,
    jobs_past_their_max_duration_are_stopped_and_failed,
    stopping_a_running_job_through_the_api_cancels_it,
);

fn settings(mode: Mode) -> OffloaderSettings {
    OffloaderSettings {
        mode,
        ..OffloaderSettings::default()
    }
}

/// Polls until the workload `name` (container or service) is gone, or fails after `timeout`.
async fn wait_container_gone(mode: Mode, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while swarm::workload_state(mode, name).is_some() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{} workload {name} still exists after {timeout:?}",
            mode.as_str()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

async fn job_exiting_0_succeeds_and_its_container_is_removed(mode: Mode) -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("exit0", settings(mode)).await?;
    let client = offloader.register("a").await?;

    let created = client.create_job(&test_job("exit0", &[])).await?;
    assert!(
        matches!(created.state, JobState::Queued | JobState::Starting),
        "{created:?}"
    );
    assert_eq!(
        created.container_name,
        format!("calls-recording-{}", created.id)
    );

    let job = client.wait_final(&created.id, FINAL).await?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.exit_code, Some(0));
    assert!(job.failure_reason.is_none(), "{job:?}");
    let (started, finished) = (
        job.started_at.expect("started"),
        job.finished_at.expect("finished"),
    );
    assert!(job.created_at <= started && started <= finished, "{job:?}");
    // The job reported `started`, then progress with its counter.
    assert_eq!(job.counters.get("test_job_ticks"), Some(&1.0), "{job:?}");
    assert_eq!(job.progress.as_deref(), Some("all work done"));

    wait_container_gone(mode, &job.container_name, Duration::from_secs(15)).await?;
    assert!(swarm::workloads_with_label(mode, &Offloader::label_of(&client))?.is_empty());

    // The counter the job reported is exported on /metrics.
    let metrics = offloader.anonymous().get("/metrics").await?.text();
    let reported = metrics.lines().find(|l| {
        l.starts_with("calls_offloader_job_reported_total") && l.contains("test_job_ticks")
    });
    assert!(reported.is_some_and(|l| l.ends_with(" 1")), "{reported:?}");
    Ok(())
}

async fn job_exiting_1_fails_with_its_log_lines_and_is_swept_after_retention(
    mode: Mode,
) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        failed_job_retention: "8s".into(),
        sweep_interval: "1s".into(),
        ..settings(mode)
    };
    let offloader = Offloader::start("exit1", settings).await?;
    let client = offloader.register("a").await?;

    let created = client
        .create_job(&test_job("exit1", &[("exit_code", json!(3))]))
        .await?;
    let job = client.wait_final(&created.id, FINAL).await?;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_eq!(job.exit_code, Some(3));
    let reason = job.failure_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("failing on purpose with exit code 3"),
        "the reason should quote the job's last log lines: {reason:?}"
    );

    // The container (or service) and its logs stay for the operator (`docker ps -a --filter
    // status=exited`, `docker service ps`).
    let status = swarm::workload_state(mode, &job.container_name).unwrap_or_default();
    assert!(
        swarm::is_failed_state(mode, &status),
        "failed workloads are kept: {status:?}"
    );
    let docker_logs = swarm::workload_logs(mode, &job.container_name)?;
    assert!(
        docker_logs.contains("calls-test-job: about to fail"),
        "{docker_logs}"
    );
    let api_logs = client.logs(&job.id).await?;
    assert!(
        api_logs.contains("calls-test-job: about to fail"),
        "stdout: {api_logs}"
    );
    assert!(
        api_logs.contains("failing on purpose with exit code 3"),
        "stderr: {api_logs}"
    );

    // After the retention period the sweeper removes the container; the record stays final.
    wait_container_gone(mode, &job.container_name, Duration::from_secs(30)).await?;
    let after = client.job(&job.id).await?;
    assert_eq!(after.state, JobState::Failed);
    Ok(())
}

async fn jobs_past_their_max_duration_are_stopped_and_failed(mode: Mode) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        stop_grace_period: "3s".into(),
        ..settings(mode)
    };
    let offloader = Offloader::start("maxdur", settings).await?;
    let client = offloader.register("a").await?;

    // One job leaves on SIGTERM; the other ignores it and must be killed after the grace period.
    let mut polite = test_job("sleep", &[]);
    polite.max_duration_sec = Some(3);
    let mut stubborn = test_job("ignore_sigterm", &[]);
    stubborn.max_duration_sec = Some(3);
    let polite = client.create_job(&polite).await?;
    let stubborn = client.create_job(&stubborn).await?;

    for (created, min_secs) in [(&polite, 3), (&stubborn, 6)] {
        let job = client.wait_final(&created.id, FINAL).await?;
        assert_eq!(job.state, JobState::Failed, "{job:?}");
        assert!(
            job.failure_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("max duration exceeded")),
            "{job:?}"
        );
        let ran_ms = job.finished_at.expect("finished") - job.started_at.expect("started");
        assert!(
            ran_ms >= min_secs * 1000 - 500,
            "{} ran {ran_ms} ms, expected at least {min_secs} s",
            job.id
        );
        assert!(ran_ms < 30_000, "{} ran {ran_ms} ms", job.id);
    }
    let polite_logs = client.logs(&polite.id).await?;
    assert!(polite_logs.contains("received SIGTERM"), "{polite_logs}");
    let stubborn_logs = client.logs(&stubborn.id).await?;
    assert!(
        stubborn_logs.contains("received SIGTERM, ignoring it"),
        "{stubborn_logs}"
    );
    Ok(())
}

async fn stopping_a_running_job_through_the_api_cancels_it(mode: Mode) -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("stop", settings(mode)).await?;
    let client = offloader.register("a").await?;

    let created = client.create_job(&test_job("sleep", &[])).await?;
    // Running, and the job itself has reported progress (so it really is up).
    client
        .wait_for(&created.id, FINAL, "running with progress", |job| {
            job.state == JobState::Running
                && job
                    .counters
                    .get("test_job_ticks")
                    .is_some_and(|t| *t >= 1.0)
        })
        .await?;
    let running: Vec<_> = swarm::workloads_with_label(mode, &Offloader::label_of(&client))?
        .into_iter()
        .filter(|row| row.state == "running")
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    // What the operator sees: the documented name and labels, a hardened container.
    let row = &running[0];
    assert_eq!(row.name, format!("calls-recording-{}", created.id));
    assert_eq!(row.job_id, created.id);
    // The job's container: itself in engine mode, its task's in swarm mode.
    let inspect = |format: &str| match mode {
        Mode::Engine => docker::inspect(&row.name, format),
        Mode::Swarm => swarm::task_container_inspect(&row.name, format),
    };
    assert_eq!(
        inspect("{{.Config.Image}}").as_deref(),
        Some(calls_e2e::offloader::test_job_image().as_str())
    );
    let labels = inspect("{{json .Config.Labels}}").unwrap_or_default();
    for needle in [
        r#""app":"calls-offloader""#,
        r#""calls.job_type":"recording""#,
    ] {
        assert!(labels.contains(needle), "{needle} in {labels}");
    }
    let hardening =
        inspect("{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.CapDrop}}").unwrap_or_default();
    assert!(
        hardening.starts_with("true "),
        "read-only root: {hardening}"
    );
    assert!(hardening.contains("ALL"), "{hardening}");
    if mode == Mode::Engine {
        // Swarm sets no-new-privileges only on engines with API 1.46 and later.
        let options = inspect("{{json .HostConfig.SecurityOpt}}").unwrap_or_default();
        assert!(options.contains("no-new-privileges"), "{options}");
    }
    // The job token reached the job (it reports progress with it) but not the environment
    // in swarm mode, where it is a secret file.
    let env = inspect("{{json .Config.Env}}").unwrap_or_default();
    assert_eq!(
        env.contains("JOB_TOKEN="),
        mode == Mode::Engine,
        "JOB_TOKEN in the environment: {env}"
    );
    if mode == Mode::Swarm {
        let service = swarm::service_inspect(&row.name).unwrap_or_default();
        assert!(!service.contains("JOB_TOKEN="), "{service}");
        assert!(
            service.contains("\"job_token\""),
            "a secret file: {service}"
        );
    }

    let job = client
        .stop_and_wait(&created.id, Duration::from_secs(30))
        .await?;
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    let logs = client.logs(&job.id).await?;
    assert!(logs.contains("received SIGTERM"), "graceful stop: {logs}");

    // Stopping a finished job is a conflict and changes nothing.
    let again = client.stop(&created.id).await?;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(again.error()?.code, "conflict");
    assert_eq!(client.job(&job.id).await?.state, JobState::Cancelled);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_job_that_delivers_its_work_succeeds() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("record", OffloaderSettings::default()).await?;
    let client = offloader.register("a").await?;

    // Like the recorder: runs until stopped, then uploads its file and reports `finished`.
    let spec = test_job(
        "record",
        &[
            ("artifact_bytes", json!(200_000)),
            ("artifact_seed", json!(9)),
        ],
    );
    let created = client.create_job(&spec).await?;
    client
        .wait_for(&created.id, FINAL, "running", |job| {
            job.state == JobState::Running
        })
        .await?;
    let job = client
        .stop_and_wait(&created.id, Duration::from_secs(30))
        .await?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.progress.as_deref(), Some("artifact delivered"));
    let download = client
        .get(&format!("/jobs/{}/artifacts/output.bin", job.id))
        .await?;
    assert_eq!(download.status, StatusCode::OK, "{}", download.text());
    assert!(download.body.as_ref() == artifact_bytes(9, 200_000).as_slice());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_artifact_downloads_byte_identical_with_ranges() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("artifact", OffloaderSettings::default()).await?;
    let client = offloader.register("a").await?;

    let len = 3 * 1024 * 1024 + 17;
    let spec = test_job(
        "upload",
        &[
            ("artifact_bytes", json!(len)),
            ("artifact_seed", json!(42)),
            ("artifact_name", json!("recording.mp4")),
        ],
    );
    let created = client.create_job(&spec).await?;
    let job = client.wait_final(&created.id, FINAL).await?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let expected = artifact_bytes(42, len);

    let list: ArtifactList = client
        .get(&format!("/jobs/{}/artifacts", job.id))
        .await?
        .ok_json()?;
    assert_eq!(list.artifacts.len(), 1, "{list:?}");
    let info = &list.artifacts[0];
    assert_eq!(info.name, "recording.mp4");
    assert_eq!(info.size, len as u64);
    let expected_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&expected))
    };
    assert_eq!(info.sha256, expected_sha);

    let path = format!("/jobs/{}/artifacts/recording.mp4", job.id);
    let whole = client.get(&path).await?;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.text());
    assert!(
        whole.body.as_ref() == expected.as_slice(),
        "download differs from upload"
    );

    let part = client
        .request_with(Method::GET, &path, None, &[("Range", "bytes=1000-1999")])
        .await?;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert!(part.body.as_ref() == &expected[1000..2000]);
    let content_range = part
        .headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(content_range, format!("bytes 1000-1999/{len}"));

    let tail = client
        .request_with(Method::GET, &path, None, &[("Range", "bytes=-10")])
        .await?;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert!(tail.body.as_ref() == &expected[len - 10..]);

    let beyond = format!("bytes={}-", len + 5);
    let unsatisfiable = client
        .request_with(Method::GET, &path, None, &[("Range", beyond.as_str())])
        .await?;
    assert_eq!(unsatisfiable.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let missing = client
        .get(&format!("/jobs/{}/artifacts/nope.bin", job.id))
        .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error()?.code, "not_found");

    // Succeeded: the container is gone, the artifact stays.
    wait_container_gone(Mode::Engine, &job.container_name, Duration::from_secs(15)).await?;
    assert_eq!(client.get(&path).await?.status, StatusCode::OK);
    Ok(())
}
