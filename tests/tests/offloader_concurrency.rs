//! Concurrency and queueing against the real offloader and Docker: with a limit of 2, five jobs
//! never run more than two containers at once and start in submission order; a full queue
//! answers 429 without storing the job.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use calls_e2e::docker;
use calls_e2e::offloader::{serial, test_job, Offloader, OffloaderSettings};
use calls_protocol::jobs::{JobList, JobState};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn five_jobs_with_a_limit_of_two_run_two_at_a_time_in_fifo_order() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_concurrent: 2,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("fifo", settings).await?;
    let client = offloader.register("a").await?;
    let label = Offloader::label_of(&client);

    // Watch `docker ps` (the operator's view) the whole time the jobs run.
    let stop_watching = Arc::new(AtomicBool::new(false));
    let max_running = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, max, label) = (stop_watching.clone(), max_running.clone(), label.clone());
        std::thread::spawn(move || -> anyhow::Result<usize> {
            let mut samples = 0;
            while !stop.load(Ordering::SeqCst) && samples < 2_000 {
                let running = docker::running_with_label(&label)?.len();
                max.fetch_max(running, Ordering::SeqCst);
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(samples)
        })
    };

    let mut ids = Vec::new();
    for i in 0..5 {
        let spec = test_job("sleep", &[("sleep_seconds", json!(3)), ("index", json!(i))]);
        ids.push(client.create_job(&spec).await?.id);
    }
    let queued: JobList = client.get("/jobs?state=queued").await?.ok_json()?;
    assert!(
        queued.jobs.iter().all(|job| job.state == JobState::Queued),
        "the state filter returns only queued jobs: {queued:?}"
    );

    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(client.wait_final(id, Duration::from_secs(120)).await?);
    }
    stop_watching.store(true, Ordering::SeqCst);
    let samples = watcher.join().expect("the watcher thread does not panic")?;

    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    }
    let max = max_running.load(Ordering::SeqCst);
    assert!(max <= 2, "{max} containers ran at once (limit 2)");
    assert_eq!(
        max, 2,
        "the limit should be used, not just respected ({samples} samples)"
    );

    // FIFO: no job overtakes an earlier one. Jobs admitted in the same dispatch round (two free
    // slots at once) start concurrently, so their order may flip by a container start time;
    // overtaking a queued job would show as a whole round (≈ the 3 s job length) of difference.
    // The same holds for the finishes: equal jobs finish in the order they were submitted.
    let starts: Vec<i64> = jobs
        .iter()
        .map(|j| j.started_at.expect("started"))
        .collect();
    let finishes: Vec<i64> = jobs
        .iter()
        .map(|j| j.finished_at.expect("finished"))
        .collect();
    for (what, times) in [("started", &starts), ("finished", &finishes)] {
        for (i, earlier) in times.iter().enumerate() {
            for (j, later) in times.iter().enumerate().skip(i + 1) {
                assert!(
                    later + 1_000 > *earlier,
                    "job {j} {what} {} ms before job {i}, submitted earlier: {times:?}",
                    earlier - later
                );
            }
        }
    }
    for (i, job) in jobs.iter().enumerate().skip(2) {
        let earliest_finish = jobs[..i]
            .iter()
            .filter_map(|j| j.finished_at)
            .min()
            .expect("earlier jobs finished");
        assert!(
            job.started_at.expect("started") >= earliest_finish,
            "job {i} started before any slot was free: {jobs:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_429_and_stores_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_concurrent: 1,
        max_queue_length: 1,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("queuefull", settings).await?;
    let client = offloader.register("a").await?;

    let running = client.create_job(&test_job("sleep", &[])).await?;
    client
        .wait_for(&running.id, Duration::from_secs(60), "running", |job| {
            job.state == JobState::Running
        })
        .await?;
    let queued = client.create_job(&test_job("sleep", &[])).await?;
    assert_eq!(client.job(&queued.id).await?.state, JobState::Queued);

    let reply = client.post_json("/jobs", &test_job("exit0", &[])).await?;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text()
    );
    let error = reply.error()?;
    assert_eq!(error.code, "queue_full");
    assert!(!error.error.is_empty());
    assert_eq!(
        client.jobs().await?.len(),
        2,
        "the refused job is not stored"
    );

    // Stopping the queued job cancels it without ever starting a container.
    let job = client
        .stop_and_wait(&queued.id, Duration::from_secs(30))
        .await?;
    assert_eq!(job.state, JobState::Cancelled);
    assert!(job.started_at.is_none(), "{job:?}");
    Ok(())
}
