//! The pure core of the runner: which queued jobs start now, what a container's exit means for
//! its job, and how the store and Docker are brought back in line after a restart. No Docker, no
//! clock, no I/O: the shell (`runner.rs`) observes, calls these, and performs the actions.
//!
//! **Architecture invariant:** every decision about a job's final state is made by
//! [`classify_exit`], and every restart repair by [`reconcile`].

use calls_protocol::jobs::JobState;

use crate::store::StopReason;

/// A queued job as admission sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub job_id: String,
    /// The client registration that owns it.
    pub owner: String,
}

/// The queued jobs (given oldest first) that start now, in start order, given the owners of
/// the active jobs. Each free slot goes to the oldest job whose owner holds fewer than
/// `per_client` slots; only when no such job waits does it go to the oldest job at all (a slot
/// never idles while anything waits). So one client keeps the host to itself only while nobody
/// else is waiting, and the next free slots go to the others first.
pub fn admit(
    active_owners: &[&str],
    max_concurrent: usize,
    per_client: usize,
    queued: &[Waiting],
) -> Vec<String> {
    let free = max_concurrent.saturating_sub(active_owners.len());
    let mut held: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for owner in active_owners {
        *held.entry(owner).or_default() += 1;
    }
    let mut waiting: Vec<&Waiting> = queued.iter().collect();
    let mut started = Vec::new();
    while started.len() < free && !waiting.is_empty() {
        let pick = waiting
            .iter()
            .position(|job| held.get(job.owner.as_str()).copied().unwrap_or(0) < per_client)
            .unwrap_or(0);
        let job = waiting.remove(pick);
        *held.entry(job.owner.as_str()).or_default() += 1;
        started.push(job.job_id.clone());
    }
    started
}

/// What is known when a job's container is gone or exited.
#[derive(Debug, Clone, Default)]
pub struct ExitFacts<'a> {
    /// `None` when the container vanished or never ran.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub stop_reason: Option<StopReason>,
    /// The error the job reported through the status API, if any.
    pub reported_error: Option<&'a str>,
    /// The job reported `finished` (its work is delivered) before it exited.
    pub work_done: bool,
    /// The end of the container's combined stdout/stderr.
    pub log_tail: &'a str,
    pub memory_mb: u64,
    pub max_duration_sec: u64,
}

/// Number of log lines quoted in a failure reason.
pub const REASON_LOG_LINES: usize = 5;
const REASON_MAX_CHARS: usize = 1500;

/// The final state and failure reason of a job whose container ended.
pub fn classify_exit(facts: &ExitFacts<'_>) -> (JobState, Option<String>) {
    if facts.stop_reason == Some(StopReason::MaxDuration) {
        return (
            JobState::Failed,
            Some(format!(
                "max duration exceeded ({} s): the job was stopped; raise max_duration_sec or the runner's max_duration",
                facts.max_duration_sec
            )),
        );
    }
    if facts.oom_killed {
        let limit = if facts.memory_mb > 0 {
            format!(" (memory limit {} MB)", facts.memory_mb)
        } else {
            String::new()
        };
        return (
            JobState::Failed,
            Some(format!(
                "container OOM-killed{limit}: raise the runner's memory_mb"
            )),
        );
    }
    match (facts.exit_code, facts.stop_reason) {
        (Some(0), None) => (JobState::Succeeded, None),
        (Some(0), Some(StopReason::User)) if facts.work_done => (JobState::Succeeded, None),
        (_, Some(StopReason::User)) => (JobState::Cancelled, None),
        (None, _) => (
            JobState::Failed,
            Some("container disappeared before it exited (removed outside the offloader?)".into()),
        ),
        (Some(code), _) => {
            let mut reason = format!("exited {code}");
            if code > 128 && code < 160 {
                reason.push_str(&format!(" (signal {})", code - 128));
            }
            if let Some(error) = facts.reported_error.filter(|e| !e.trim().is_empty()) {
                reason.push_str(&format!(": {}", error.trim()));
            }
            let tail = last_lines(facts.log_tail, REASON_LOG_LINES);
            if !tail.is_empty() {
                reason.push_str(if facts.reported_error.is_some() {
                    "; last log lines: "
                } else {
                    ": "
                });
                reason.push_str(&tail);
            }
            (JobState::Failed, Some(truncate(&reason, REASON_MAX_CHARS)))
        }
    }
}

/// The last `n` non-empty lines of `text`, joined with newlines.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let start = text.chars().count() - max_chars;
    format!("…{}", text.chars().skip(start).collect::<String>())
}

/// A job as the reconciler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    pub job_id: String,
    pub state: JobState,
    pub container_removed: bool,
}

/// A container's state as Docker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerStatus {
    /// Created but never started.
    Created,
    /// Running, paused or restarting.
    Running,
    Exited {
        exit_code: i64,
        oom_killed: bool,
    },
}

/// A container labelled `app=calls-offloader`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedContainer {
    pub container_id: String,
    /// The `calls.job_id` label, if present.
    pub job_id: Option<String>,
    pub status: ContainerStatus,
}

/// What the shell must do to bring store and Docker in line.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The container runs and the record says so: watch it again (max duration, exit).
    Watch { job_id: String },
    /// The container was started but the crash came before `running` was persisted.
    MarkRunningAndWatch { job_id: String },
    /// The container exited (or is gone) while we were down: decide the final state.
    Finalize {
        job_id: String,
        exit_code: Option<i64>,
        oom_killed: bool,
    },
    /// The job never really started: remove the leftover container (if any), back to `queued`.
    Requeue {
        job_id: String,
        remove_container: Option<String>,
    },
    /// A container with no record, or the leftover of a finished job that should be gone.
    RemoveContainer {
        container_id: String,
        job_id: Option<String>,
    },
    /// The record thinks its container exists but Docker has none: note it.
    MarkContainerRemoved { job_id: String },
}

/// Compares the store's jobs with Docker's containers and returns the repairs, in order.
/// Queued jobs need no action: the dispatcher picks them up.
pub fn reconcile(records: &[RecordView], containers: &[ObservedContainer]) -> Vec<Action> {
    let mut actions = Vec::new();
    for record in records {
        let container = containers
            .iter()
            .find(|c| c.job_id.as_deref() == Some(record.job_id.as_str()));
        let job_id = record.job_id.clone();
        match (record.state, container.map(|c| &c.status)) {
            (JobState::Queued, None) => {}
            (JobState::Queued, Some(_)) => actions.push(Action::Requeue {
                job_id,
                remove_container: container.map(|c| c.container_id.clone()),
            }),
            (JobState::Starting, None) => actions.push(Action::Requeue {
                job_id,
                remove_container: None,
            }),
            (JobState::Starting | JobState::Running, Some(ContainerStatus::Created)) => actions
                .push(Action::Requeue {
                    job_id,
                    remove_container: container.map(|c| c.container_id.clone()),
                }),
            (JobState::Starting, Some(ContainerStatus::Running)) => {
                actions.push(Action::MarkRunningAndWatch { job_id })
            }
            (JobState::Running | JobState::Stopping, Some(ContainerStatus::Running)) => {
                actions.push(Action::Watch { job_id })
            }
            (
                JobState::Starting | JobState::Running | JobState::Stopping,
                Some(ContainerStatus::Exited {
                    exit_code,
                    oom_killed,
                }),
            ) => actions.push(Action::Finalize {
                job_id,
                exit_code: Some(*exit_code),
                oom_killed: *oom_killed,
            }),
            (JobState::Stopping, Some(ContainerStatus::Created)) => {
                actions.push(Action::Finalize {
                    job_id,
                    exit_code: None,
                    oom_killed: false,
                })
            }
            (JobState::Running | JobState::Stopping, None) => actions.push(Action::Finalize {
                job_id,
                exit_code: None,
                oom_killed: false,
            }),
            (JobState::Failed, Some(_)) => {} // kept for its retention period
            (JobState::Succeeded | JobState::Cancelled, Some(_)) => {
                actions.push(Action::RemoveContainer {
                    container_id: container
                        .map(|c| c.container_id.clone())
                        .expect("matched Some(_) above"),
                    job_id: Some(job_id),
                })
            }
            (state, None) if state.is_final() && !record.container_removed => {
                actions.push(Action::MarkContainerRemoved { job_id })
            }
            (_, None) => {}
        }
    }
    for container in containers {
        let known = container
            .job_id
            .as_deref()
            .is_some_and(|id| records.iter().any(|r| r.job_id == id));
        if !known {
            actions.push(Action::RemoveContainer {
                container_id: container.container_id.clone(),
                job_id: None,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests;
