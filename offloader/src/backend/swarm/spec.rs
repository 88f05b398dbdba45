//! The pure half of the swarm backend: a job's service spec (what Swarm is asked to run) and
//! how a task's state reads (placed, ended, exit code), unit-tested without Docker.

use std::collections::HashMap;

use bollard::models::{
    Limit, Mount, MountTmpfsOptions, MountType, MountVolumeOptions, NetworkAttachmentConfig,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecPrivileges,
    TaskSpecContainerSpecSecrets, TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};

use crate::backend::job_labels;
use crate::config::{Config, DataMount};
use crate::store::JobRecord;

/// A per-job secret mounted as `/run/secrets/<file>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretFile {
    pub id: String,
    pub name: String,
    pub file: String,
}

pub fn placement(config: &Config) -> Option<TaskSpecPlacement> {
    (!config.docker.swarm_constraints.is_empty()).then(|| TaskSpecPlacement {
        constraints: Some(config.docker.swarm_constraints.clone()),
        ..Default::default()
    })
}

/// The full spec of a job's service (pure, so tests can check it): the same image, labels,
/// limits and hardening as a job container where Swarm offers them, the plain inputs in the
/// environment and the secrets as files.
pub fn service_spec(
    config: &Config,
    instance: &str,
    job: &JobRecord,
    env: &[String],
    secrets: &[SecretFile],
) -> ServiceSpec {
    let runner = config.runner(job.job_type);
    let labels = job_labels(job, instance);
    let mounts = scratch_mounts(config, &labels);
    let secrets = secrets.iter().map(secret_mount).collect();
    ServiceSpec {
        name: Some(job.container_name()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(job.runner.clone()),
                labels: Some(labels),
                env: Some(env.to_vec()),
                read_only: Some(config.docker.read_only_rootfs),
                mounts: Some(mounts),
                secrets: Some(secrets),
                init: Some(true),
                capability_drop: Some(vec!["ALL".to_string()]),
                // Honoured by engines with API 1.46 and later; older ones ignore the field.
                privileges: Some(TaskSpecContainerSpecPrivileges {
                    no_new_privileges: Some(true),
                    ..Default::default()
                }),
                stop_signal: Some("SIGTERM".to_string()),
                stop_grace_period: Some(config.jobs.stop_grace_period.as_nanos() as i64),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: (runner.cpus > 0.0).then_some((runner.cpus * 1e9) as i64),
                    memory_bytes: (runner.memory_mb > 0)
                        .then(|| runner.memory_mb as i64 * 1024 * 1024),
                    pids: (config.docker.pids_limit > 0).then_some(config.docker.pids_limit as i64),
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                max_attempts: Some(0),
                ..Default::default()
            }),
            placement: placement(config),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(config.docker.network.clone()),
                ..Default::default()
            }]),
            log_driver: Some(TaskSpecLogDriver {
                name: Some("json-file".to_string()),
                options: Some(HashMap::from([
                    ("max-size".to_string(), config.docker.log_max_size.clone()),
                    (
                        "max-file".to_string(),
                        config.docker.log_max_files.to_string(),
                    ),
                ])),
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `/data`, and `/tmp` on a read-only root: tmpfs or volumes labelled like the job.
fn scratch_mounts(config: &Config, labels: &HashMap<String, String>) -> Vec<Mount> {
    let mut scratch = vec!["/data"];
    if config.docker.read_only_rootfs {
        scratch.push("/tmp");
    }
    scratch
        .into_iter()
        .map(|target| match config.docker.data_mount {
            DataMount::Tmpfs => Mount {
                target: Some(target.to_string()),
                typ: Some(MountType::TMPFS),
                tmpfs_options: Some(MountTmpfsOptions {
                    size_bytes: Some(config.docker.tmpfs_size_mb as i64 * 1024 * 1024),
                    mode: Some(0o1777),
                    ..Default::default()
                }),
                ..Default::default()
            },
            DataMount::Volume => Mount {
                target: Some(target.to_string()),
                typ: Some(MountType::VOLUME),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        })
        .collect()
}

/// A per-job secret as a file under `/run/secrets/`.
fn secret_mount(secret: &SecretFile) -> TaskSpecContainerSpecSecrets {
    TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            name: Some(secret.file.clone()),
            uid: Some("0".to_string()),
            gid: Some("0".to_string()),
            // Readable by the job's unprivileged user; the tmpfs is the container's own.
            mode: Some(0o444),
        }),
        secret_id: Some(secret.id.clone()),
        secret_name: Some(secret.name.clone()),
    }
}

pub fn task_state(task: &Task) -> TaskState {
    task.status
        .as_ref()
        .and_then(|s| s.state)
        .unwrap_or(TaskState::NEW)
}

pub fn task_error(task: &Task) -> String {
    task.status
        .as_ref()
        .and_then(|s| s.err.clone())
        .unwrap_or_default()
}

pub fn task_container(task: &Task) -> Option<String> {
    task.status
        .as_ref()?
        .container_status
        .as_ref()?
        .container_id
        .clone()
        .filter(|id| !id.is_empty())
}

/// The container's exit code, when the task had a container that ended.
pub fn task_exit_code(task: &Task) -> Option<i64> {
    task_container(task)?;
    task.status.as_ref()?.container_status.as_ref()?.exit_code
}

/// A task that will not run (any more).
pub fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
}

/// A task a node has accepted (its container is being prepared, started or runs).
pub fn is_placed(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::ACCEPTED
            | TaskState::PREPARING
            | TaskState::READY
            | TaskState::STARTING
            | TaskState::RUNNING
    )
}

/// The newest task of a service (highest version index, then latest creation).
pub fn newest(tasks: Vec<Task>) -> Option<Task> {
    tasks.into_iter().max_by_key(|t| {
        (
            t.job_iteration.as_ref().and_then(|v| v.index).unwrap_or(0),
            t.created_at.clone().unwrap_or_default(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tests::{job, mount_targets};
    use crate::backend::{job_inputs, INSTANCE_LABEL};

    #[test]
    fn a_job_service_is_a_one_task_job_with_the_limits_labels_and_secret_files() {
        let config = Config::load(
            "",
            vec![(
                "OFFLOADER_DOCKER_SWARM_CONSTRAINTS".into(),
                "node.labels.calls-jobs==true".into(),
            )],
        )
        .expect("valid");
        let inputs = job_inputs(&job(), &config, "tok");
        let secrets = vec![SecretFile {
            id: "sid".into(),
            name: "calls-transcribing-abc-secret0".into(),
            file: "job_token".into(),
        }];
        let spec = service_spec(&config, "inst1", &job(), &inputs.env, &secrets);
        assert_eq!(spec.name.as_deref(), Some("calls-transcribing-abc"));
        let labels = spec.labels.expect("labels");
        assert_eq!(labels["app"], "calls-offloader");
        assert_eq!(labels["calls.job_id"], "abc");
        assert_eq!(labels[INSTANCE_LABEL], "inst1");
        let mode = spec.mode.expect("mode").replicated_job.expect("a job");
        assert_eq!(
            (mode.max_concurrent, mode.total_completions),
            (Some(1), Some(1))
        );
        let task = spec.task_template.expect("task");
        assert_eq!(
            task.restart_policy.and_then(|r| r.condition),
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let limits = task.resources.and_then(|r| r.limits).expect("limits");
        assert_eq!(limits.nano_cpus, Some(2_000_000_000));
        assert_eq!(limits.memory_bytes, Some(4096 * 1024 * 1024));
        assert_eq!(limits.pids, Some(512));
        assert_eq!(
            task.placement.and_then(|p| p.constraints),
            Some(vec!["node.labels.calls-jobs==true".to_string()])
        );
        let container = task.container_spec.expect("container");
        let env = container.env.expect("env");
        assert!(env.contains(&"CALL_ID=c1".to_string()), "{env:?}");
        assert!(
            !env.iter()
                .any(|e| e.starts_with("JOB_TOKEN") || e.starts_with("BOT_TOKEN")),
            "secrets stay out of the environment: {env:?}"
        );
        let files = container.secrets.expect("secrets");
        assert_eq!(files.len(), 1);
        let file = files[0].file.clone().expect("file");
        assert_eq!(file.name.as_deref(), Some("job_token"));
        assert_eq!(container.read_only, Some(true));
        assert_eq!(container.init, Some(true));
        assert_eq!(container.capability_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(container.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(container.stop_grace_period, Some(30_000_000_000));
        let targets = mount_targets(container.mounts);
        assert_eq!(targets, vec!["/data", "/tmp"]);
    }

    #[test]
    fn task_states_split_into_waiting_placed_and_ended() {
        assert!(!is_placed(TaskState::PENDING) && !is_terminal(TaskState::PENDING));
        assert!(is_placed(TaskState::PREPARING) && !is_terminal(TaskState::PREPARING));
        assert!(is_placed(TaskState::RUNNING));
        for state in [TaskState::COMPLETE, TaskState::FAILED, TaskState::REJECTED] {
            assert!(is_terminal(state) && !is_placed(state), "{state:?}");
        }
    }
}
