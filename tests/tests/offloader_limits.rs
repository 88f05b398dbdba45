//! The offloader's limits against the real binary (issue 11): runner names reach Docker only
//! when they are valid, configured image references (#2); unknown HTTP methods do not create
//! metric labels (#7); job containers drop every capability and have pid and log limits, and a
//! job's log is read within a budget (#11); a job type runs only its own images, and
//! `input_data` keys may not differ only in case (#12); one client cannot fill the whole queue,
//! and a job's artifacts have a count and a size quota (#13); slow clients cannot hold
//! connections, and connections are capped (#6).

use std::time::Duration;

use calls_e2e::docker;
use calls_e2e::offloader::{serial, test_job, test_job_image, Offloader, OffloaderSettings};
use calls_protocol::jobs::JobState;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn init_accepts_only_configured_image_references() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("initrefs", OffloaderSettings::default()).await?;
    let client = offloader.register("a").await?;
    // Docker API paths, queries and images nobody configured never reach Docker.
    for runner in [
        "../containers/x/json?",
        "../volumes/v",
        "../containers/x/archive?path=/etc/passwd",
        "calls-test-job:latest/../../info",
        "alpine:latest",
    ] {
        let reply = client
            .post_json("/jobs/init", &json!({ "runners": [runner] }))
            .await?;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{runner}: {}",
            reply.text()
        );
        assert_eq!(reply.error()?.code, "bad_request");
    }
    // A configured image is looked up and reported.
    let reply = client
        .post_json("/jobs/init", &json!({ "runners": [test_job_image()] }))
        .await?;
    let answer: serde_json::Value = reply.ok_json()?;
    assert_eq!(answer["images"][0]["image"], test_job_image());
    assert_eq!(answer["images"][0]["present"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_methods_share_one_metric_label() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("methods", OffloaderSettings::default()).await?;
    let anonymous = offloader.anonymous();
    for method in ["FOOBAR", "X-INJECTED", "BREW"] {
        let reply = anonymous
            .request(Method::from_bytes(method.as_bytes())?, "/version", None)
            .await?;
        assert!(reply.status.is_client_error(), "{method}: {}", reply.status);
    }
    let metrics = anonymous.get("/metrics").await?.text();
    for method in ["FOOBAR", "X-INJECTED", "BREW"] {
        assert!(
            !metrics.contains(method),
            "{method} became a label:\n{metrics}"
        );
    }
    let other: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("calls_offloader_api_requests_total{method=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(other, 3.0, "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn job_containers_are_locked_down_and_their_logs_bounded() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        extra_env: vec![("OFFLOADER_JOBS_MAX_LOG_BYTES".into(), "100".into())],
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("lockdown", settings).await?;
    let client = offloader.register("a").await?;
    // A failed job keeps its container, so an operator (and this test) can inspect it.
    let job = client.create_job(&test_job("exit1", &[])).await?;
    let job = client.wait_final(&job.id, Duration::from_secs(60)).await?;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let name = &job.container_name;
    let inspect = |format: &str| docker::inspect(name, format).unwrap_or_default();
    assert_eq!(inspect("{{json .HostConfig.CapDrop}}"), "[\"ALL\"]");
    assert_eq!(inspect("{{.HostConfig.PidsLimit}}"), "512");
    assert_eq!(inspect("{{.HostConfig.LogConfig.Type}}"), "json-file");
    assert_eq!(
        inspect("{{index .HostConfig.LogConfig.Config \"max-size\"}}"),
        "10m"
    );
    assert_eq!(
        inspect("{{index .HostConfig.LogConfig.Config \"max-file\"}}"),
        "3"
    );
    // The job ran (and failed as asked) without any capability.
    assert!(
        job.failure_reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("exited 1"),
        "{job:?}"
    );

    // Docker holds the whole log; the offloader kept its first and last 50 bytes.
    let full = docker::logs(name)?;
    assert!(
        full.len() > 150,
        "the test job logs enough to cut: {full:?}"
    );
    let kept = client.logs(&job.id).await?;
    assert!(
        kept.contains("bytes of log omitted here (jobs.max_log_bytes)"),
        "{kept}"
    );
    assert!(kept.len() < 100 + 100, "{} bytes kept: {kept}", kept.len());
    // The kept end is the last 50 bytes Docker streamed (stdout and stderr interleaved).
    let tail = kept
        .rsplit("(jobs.max_log_bytes)]\n")
        .next()
        .unwrap_or_default();
    assert_eq!(tail.len(), 50, "{kept:?}");
    // The kept head is the first 50 bytes; stdout and stderr race, so either stream's first line may lead.
    assert!(kept.starts_with("calls-test-job: "), "{kept:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn job_types_run_only_their_own_images_and_keys_differ_by_more_than_case(
) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        transcribing_image: calls_e2e::docker::image("transcriber"),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("pertype", settings).await?;
    let client = offloader.register("a").await?;
    let mut recording = test_job("exit0", &[]);
    recording.runner = Some(calls_e2e::docker::image("transcriber"));
    let reply = client.post_json("/jobs", &recording).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(
        reply.text().contains("not allowed for recording jobs"),
        "{}",
        reply.text()
    );

    let twins = test_job("exit0", &[("call_id", json!("a")), ("CALL_ID", json!("b"))]);
    let reply = client.post_json("/jobs", &twins).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.text().contains("only in case"), "{}", reply.text());
    assert!(client.jobs().await?.is_empty(), "nothing was stored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_get_a_queue_share_and_jobs_an_artifact_quota() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_concurrent: 1,
        max_queue_length: 4,
        extra_env: vec![
            ("OFFLOADER_JOBS_MAX_ARTIFACTS_PER_JOB".into(), "2".into()),
            (
                "OFFLOADER_JOBS_MAX_JOB_ARTIFACT_BYTES".into(),
                "3000".into(),
            ),
        ],
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("quotas", settings).await?;
    let greedy = offloader.register("greedy").await?;
    let other = offloader.register("other").await?;
    let running = greedy.create_job(&test_job("sleep", &[])).await?;
    let running = greedy
        .wait_for(&running.id, Duration::from_secs(60), "running", |j| {
            j.state == JobState::Running
        })
        .await?;
    // A queue of 4 with the default share of 0.5: two places for each client.
    for _ in 0..2 {
        greedy.create_job(&test_job("exit0", &[])).await?;
    }
    let reply = greedy.post_json("/jobs", &test_job("exit0", &[])).await?;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text()
    );
    assert!(
        reply.text().contains("jobs.client_queue_share"),
        "{}",
        reply.text()
    );
    other.create_job(&test_job("exit0", &[])).await?;

    // The running job's own token, as its container has it: 2 artifacts, 3000 bytes in all.
    let job = offloader.bearer(&docker::job_token(&running.container_name)?);
    let put = |name: &str, size: usize| {
        let job = job.clone();
        let path = format!("/jobs/{}/artifacts/{name}", running.id);
        async move { job.request(Method::PUT, &path, Some(vec![7u8; size])).await }
    };
    assert_eq!(put("one.bin", 1000).await?.status, StatusCode::CREATED);
    assert_eq!(put("two.bin", 1500).await?.status, StatusCode::CREATED);
    let third = put("three.bin", 10).await?;
    assert_eq!(third.status, StatusCode::CONFLICT, "{}", third.text());
    assert!(
        third.text().contains("jobs.max_artifacts_per_job"),
        "{}",
        third.text()
    );
    // Replacing one by name is fine while the total stays within 3000 bytes...
    assert_eq!(put("one.bin", 1400).await?.status, StatusCode::CREATED);
    // ...and refused beyond it, keeping the old file.
    let too_big = put("two.bin", 2000).await?;
    assert_eq!(
        too_big.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_big.text()
    );
    let listed = greedy
        .get(&format!("/jobs/{}/artifacts", running.id))
        .await?
        .ok_json::<serde_json::Value>()?;
    let sizes: Vec<u64> = listed["artifacts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["size"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(sizes, vec![1400, 1500], "{listed}");
    Ok(())
}

/// Reads until the server closes the connection (or `limit` passes); what it sent.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> anyhow::Result<(String, Duration)> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buffer),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => anyhow::bail!(
                "still open after {limit:?}, sent {:?}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    Ok((
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_connections_capped() -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let _serial = serial().await;
    let settings = OffloaderSettings {
        extra_env: vec![
            ("OFFLOADER_API_HEADER_READ_TIMEOUT".into(), "1s".into()),
            ("OFFLOADER_API_BODY_READ_TIMEOUT".into(), "1s".into()),
            ("OFFLOADER_API_MAX_CONNECTIONS".into(), "4".into()),
        ],
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("slowloris", settings).await?;
    let address = offloader
        .base_url()
        .trim_start_matches("http://")
        .to_owned();

    // Half a request head: closed after the header timeout instead of held.
    let mut partial = tokio::net::TcpStream::connect(&address).await?;
    partial
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let (_, held) = read_until_closed(&mut partial, Duration::from_secs(10)).await?;
    assert!(held < Duration::from_secs(5), "held for {held:?}");

    // A body that never completes: 400 naming the setting, within the body timeout.
    let mut slow_body = tokio::net::TcpStream::connect(&address).await?;
    slow_body
        .write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"clientID\"")
        .await?;
    let (answer, _) = read_until_closed(&mut slow_body, Duration::from_secs(10)).await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("api.body_read_timeout"), "{answer}");

    // Four idle connections fill the cap: a fifth is closed without an answer.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&address).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = tokio::net::TcpStream::connect(&address).await?;
    let _ = fifth
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (answer, _) = read_until_closed(&mut fifth, Duration::from_secs(10)).await?;
    assert!(answer.is_empty(), "{answer}");
    // The idle ones time out too, and then the API answers again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = offloader
        .metric("calls_offloader_api_connections_refused_total")
        .await?;
    assert!(refused >= 1.0, "{refused}");
    assert_eq!(
        offloader.anonymous().get("/version").await?.status,
        StatusCode::OK
    );
    Ok(())
}
