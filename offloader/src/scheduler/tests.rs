//! Unit tests of the pure scheduler, exit classification and reconciler: no Docker, no clock.

use super::*;

fn waiting(jobs: &[(&str, &str)]) -> Vec<Waiting> {
    jobs.iter()
        .map(|(id, owner)| Waiting {
            job_id: id.to_string(),
            owner: owner.to_string(),
        })
        .collect()
}

#[test]
fn admit_fills_free_slots_in_fifo_order() {
    let queued = waiting(&[("j0", "a"), ("j1", "a"), ("j2", "a"), ("j3", "a")]);
    // One client alone may use every slot (nobody else waits).
    assert_eq!(admit(&[], 2, 1, &queued), ["j0", "j1"]);
    assert_eq!(admit(&["a"], 2, 1, &queued), ["j0"]);
    assert!(admit(&["a", "a"], 2, 1, &queued).is_empty());
    assert!(
        admit(&["a", "a", "a"], 2, 1, &queued).is_empty(),
        "over the limit admits nothing"
    );
    assert!(admit(&[], 2, 1, &[]).is_empty());
}

#[test]
fn a_client_over_its_run_share_lets_others_go_first() {
    let queued = waiting(&[("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c")]);
    // `a` holds one of two slots, its share: the free slot goes to b, although a's job is older.
    assert_eq!(admit(&["a"], 2, 1, &queued), ["b1"]);
    // Three free slots: b and c first, then a again (no slot stays idle).
    assert_eq!(admit(&["a"], 4, 1, &queued), ["b1", "c1", "a2"]);
    // Within its share, a client's older job goes first.
    assert_eq!(admit(&[], 4, 2, &queued), ["a2", "a3", "b1", "c1"]);
    assert_eq!(admit(&["a", "a"], 3, 2, &queued), ["b1"]);
}

fn facts(exit_code: Option<i64>) -> ExitFacts<'static> {
    ExitFacts {
        exit_code,
        max_duration_sec: 60,
        memory_mb: 256,
        ..Default::default()
    }
}

#[test]
fn exit_zero_succeeds_and_non_zero_quotes_the_last_log_lines() {
    assert_eq!(classify_exit(&facts(Some(0))), (JobState::Succeeded, None));
    let logs = "line 1\nline 2\n\nline 3\nline 4\nline 5\nline 6\nfatal: cannot join call\n";
    let (state, reason) = classify_exit(&ExitFacts {
        log_tail: logs,
        ..facts(Some(1))
    });
    assert_eq!(state, JobState::Failed);
    assert_eq!(
        reason.as_deref(),
        Some("exited 1: line 3\nline 4\nline 5\nline 6\nfatal: cannot join call")
    );
}

#[test]
fn reported_error_and_signal_appear_in_the_reason() {
    let (_, reason) = classify_exit(&ExitFacts {
        reported_error: Some("bad join token"),
        log_tail: "boom",
        ..facts(Some(137))
    });
    assert_eq!(
        reason.as_deref(),
        Some("exited 137 (signal 9): bad join token; last log lines: boom")
    );
}

#[test]
fn max_duration_and_oom_have_actionable_reasons() {
    let (state, reason) = classify_exit(&ExitFacts {
        stop_reason: Some(StopReason::MaxDuration),
        ..facts(Some(0))
    });
    assert_eq!(state, JobState::Failed);
    assert!(reason.expect("reason").starts_with("max duration exceeded"));
    let (state, reason) = classify_exit(&ExitFacts {
        oom_killed: true,
        ..facts(Some(137))
    });
    assert_eq!(state, JobState::Failed);
    assert_eq!(
        reason.as_deref(),
        Some("container OOM-killed (memory limit 256 MB): raise the runner's memory_mb")
    );
}

#[test]
fn user_stop_cancels_unless_the_job_finished_its_work() {
    let stopped = |code| ExitFacts {
        stop_reason: Some(StopReason::User),
        ..facts(code)
    };
    assert_eq!(classify_exit(&stopped(Some(143))).0, JobState::Cancelled);
    assert_eq!(classify_exit(&stopped(Some(137))).0, JobState::Cancelled);
    assert_eq!(classify_exit(&stopped(None)).0, JobState::Cancelled);
    assert_eq!(
        classify_exit(&stopped(Some(0))).0,
        JobState::Cancelled,
        "clean exit on SIGTERM"
    );
    let finished = ExitFacts {
        work_done: true,
        ..stopped(Some(0))
    };
    assert_eq!(classify_exit(&finished).0, JobState::Succeeded);
    let finished_but_crashed = ExitFacts {
        work_done: true,
        ..stopped(Some(1))
    };
    assert_eq!(classify_exit(&finished_but_crashed).0, JobState::Cancelled);
}

#[test]
fn vanished_container_fails_with_a_reason() {
    let (state, reason) = classify_exit(&facts(None));
    assert_eq!(state, JobState::Failed);
    assert!(reason.expect("reason").contains("disappeared"));
}

#[test]
fn long_reasons_keep_their_end() {
    let logs = "x".repeat(5000);
    let (_, reason) = classify_exit(&ExitFacts {
        log_tail: &logs,
        ..facts(Some(2))
    });
    let reason = reason.expect("reason");
    assert!(reason.chars().count() <= REASON_MAX_CHARS + 1);
    assert!(reason.starts_with('…') && reason.ends_with('x'));
}

fn record(id: &str, state: JobState) -> RecordView {
    RecordView {
        job_id: id.into(),
        state,
        container_removed: false,
    }
}

fn container(id: &str, job: Option<&str>, status: ContainerStatus) -> ObservedContainer {
    ObservedContainer {
        container_id: id.into(),
        job_id: job.map(Into::into),
        status,
    }
}

#[test]
fn reconcile_rewatches_running_and_finalizes_exited_containers() {
    let records = [
        record("run", JobState::Running),
        record("stop", JobState::Stopping),
        record("done", JobState::Running),
        record("oom", JobState::Stopping),
    ];
    let containers = [
        container("c1", Some("run"), ContainerStatus::Running),
        container("c2", Some("stop"), ContainerStatus::Running),
        container(
            "c3",
            Some("done"),
            ContainerStatus::Exited {
                exit_code: 3,
                oom_killed: false,
            },
        ),
        container(
            "c4",
            Some("oom"),
            ContainerStatus::Exited {
                exit_code: 137,
                oom_killed: true,
            },
        ),
    ];
    assert_eq!(
        reconcile(&records, &containers),
        vec![
            Action::Watch {
                job_id: "run".into()
            },
            Action::Watch {
                job_id: "stop".into()
            },
            Action::Finalize {
                job_id: "done".into(),
                exit_code: Some(3),
                oom_killed: false
            },
            Action::Finalize {
                job_id: "oom".into(),
                exit_code: Some(137),
                oom_killed: true
            },
        ]
    );
}

#[test]
fn reconcile_requeues_jobs_that_never_started() {
    let records = [
        record("nocontainer", JobState::Starting),
        record("created", JobState::Starting),
        record("started", JobState::Starting),
        record("waiting", JobState::Queued),
    ];
    let containers = [
        container("c1", Some("created"), ContainerStatus::Created),
        container("c2", Some("started"), ContainerStatus::Running),
    ];
    assert_eq!(
        reconcile(&records, &containers),
        vec![
            Action::Requeue {
                job_id: "nocontainer".into(),
                remove_container: None
            },
            Action::Requeue {
                job_id: "created".into(),
                remove_container: Some("c1".into())
            },
            Action::MarkRunningAndWatch {
                job_id: "started".into()
            },
        ]
    );
}

#[test]
fn reconcile_removes_orphans_and_leftovers_but_keeps_failed_containers() {
    let records = [
        record("ok", JobState::Succeeded),
        record("bad", JobState::Failed),
        record("gone", JobState::Cancelled),
        record("lost", JobState::Running),
    ];
    let containers = [
        container(
            "c1",
            Some("ok"),
            ContainerStatus::Exited {
                exit_code: 0,
                oom_killed: false,
            },
        ),
        container(
            "c2",
            Some("bad"),
            ContainerStatus::Exited {
                exit_code: 1,
                oom_killed: false,
            },
        ),
        container("c3", Some("stranger"), ContainerStatus::Running),
        container("c4", None, ContainerStatus::Created),
    ];
    assert_eq!(
        reconcile(&records, &containers),
        vec![
            Action::RemoveContainer {
                container_id: "c1".into(),
                job_id: Some("ok".into())
            },
            Action::MarkContainerRemoved {
                job_id: "gone".into()
            },
            Action::Finalize {
                job_id: "lost".into(),
                exit_code: None,
                oom_killed: false
            },
            Action::RemoveContainer {
                container_id: "c3".into(),
                job_id: None
            },
            Action::RemoveContainer {
                container_id: "c4".into(),
                job_id: None
            },
        ]
    );
}

#[test]
fn reconcile_of_a_consistent_world_does_nothing() {
    let mut done = record("done", JobState::Succeeded);
    done.container_removed = true;
    let records = [record("q", JobState::Queued), done];
    assert!(reconcile(&records, &[]).is_empty());
}
