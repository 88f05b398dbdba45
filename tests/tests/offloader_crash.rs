//! Crash safety against the real offloader and Docker: SIGKILL the offloader while two jobs run
//! and one is queued, let one job finish while it is down, restart it on the same data directory,
//! and check that every job reaches its correct final state with no orphan on either side. Runs in
//! both backends (`::engine` with containers, `::swarm` with one service per job).

use std::collections::BTreeSet;
use std::time::Duration;

use calls_e2e::in_both_modes;
use calls_e2e::offloader::{serial, test_job, Mode, Offloader, OffloaderSettings};
use calls_e2e::swarm;
use calls_protocol::jobs::JobState;
use serde_json::json;

in_both_modes!(sigkill_and_restart_loses_and_orphans_nothing);

async fn sigkill_and_restart_loses_and_orphans_nothing(mode: Mode) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_concurrent: 2,
        mode,
        ..OffloaderSettings::default()
    };
    let mut offloader = Offloader::start("crash", settings).await?;
    let client = offloader.register("a").await?;
    let label = Offloader::label_of(&client);

    // A fails while the offloader is down, B outlives the restart, C waits in the queue.
    let a = client
        .create_job(&test_job(
            "sleep",
            &[("sleep_seconds", json!(3)), ("final_exit_code", json!(1))],
        ))
        .await?;
    let b = client
        .create_job(&test_job("sleep", &[("sleep_seconds", json!(12))]))
        .await?;
    let c = client.create_job(&test_job("exit0", &[])).await?;
    for id in [&a.id, &b.id] {
        client
            .wait_for(id, Duration::from_secs(60), "running", |job| {
                job.state == JobState::Running
            })
            .await?;
    }
    assert_eq!(client.job(&c.id).await?.state, JobState::Queued);

    offloader.kill();
    // A exits (code 1) while nobody watches.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !swarm::workload_state(mode, &a.container_name)
        .is_some_and(|state| swarm::is_failed_state(mode, &state))
    {
        anyhow::ensure!(std::time::Instant::now() < deadline, "job A never exited");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    offloader.restart().await?;

    let a_done = client.wait_final(&a.id, Duration::from_secs(60)).await?;
    assert_eq!(a_done.state, JobState::Failed, "{a_done:?}");
    assert_eq!(a_done.exit_code, Some(1));
    assert!(
        a_done
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("failing on purpose after sleeping")),
        "{a_done:?}"
    );
    let b_done = client.wait_final(&b.id, Duration::from_secs(60)).await?;
    assert_eq!(
        b_done.state,
        JobState::Succeeded,
        "B was watched again: {b_done:?}"
    );
    let c_done = client.wait_final(&c.id, Duration::from_secs(60)).await?;
    assert_eq!(
        c_done.state,
        JobState::Succeeded,
        "C resumed from the queue: {c_done:?}"
    );
    assert!(
        c_done.started_at.expect("started") >= a_done.finished_at.expect("finished"),
        "C took a slot only once A's was free: {a_done:?} {c_done:?}"
    );

    // No container without a record, no record without its container.
    let jobs = client.jobs().await?;
    let records: BTreeSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(
        records,
        BTreeSet::from([a.id.clone(), b.id.clone(), c.id.clone()])
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let containers = swarm::workloads_with_label(mode, &label)?;
        let by_job: BTreeSet<String> = containers.iter().map(|row| row.job_id.clone()).collect();
        let orphans: Vec<_> = by_job.difference(&records).collect();
        assert!(
            orphans.is_empty(),
            "containers without a record: {orphans:?}"
        );
        // Failed jobs keep their container; succeeded ones lose it.
        let expected = BTreeSet::from([a.id.clone()]);
        if by_job == expected {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "containers {containers:?}, expected only the failed job's"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = offloader.log_text();
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}
