//! The `engine` backend: one container per job on the Docker engine the offloader talks to.
//! Containers are found by name (`calls-<type>-<job id>`) and labels (`app=calls-offloader`,
//! `calls.job_id`, `calls.job_type`, `calls.client_id`), which is also how operators find them.
//! Secrets reach the container in its environment (`docker inspect` shows them to whoever may
//! use the engine); swarm mode hands them over as files instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use calls_protocol::jobs::NodeImages;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{
    is_status, job_inputs, job_labels, parse_docker_time, CreateError, JobBackend, APP_LABEL,
    INSTANCE_LABEL,
};
use crate::config::{Config, DataMount, DockerMode};
use crate::error::{Error, Result};
use crate::scheduler::{ContainerStatus, ObservedContainer};
use crate::store::JobRecord;

/// Long enough for any job: a followed log stream lasts as long as the container runs.
pub(crate) const FOLLOW_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The engine backend: the Docker connection, the settings and this offloader's instance.
pub struct EngineBackend {
    docker: Docker,
    config: Arc<Config>,
    instance: String,
}

impl EngineBackend {
    pub fn new(docker: Docker, config: Arc<Config>, instance: String) -> EngineBackend {
        EngineBackend {
            docker,
            config,
            instance,
        }
    }
}

#[async_trait]
impl JobBackend for EngineBackend {
    fn mode(&self) -> DockerMode {
        DockerMode::Engine
    }

    fn docker(&self) -> &Docker {
        &self.docker
    }

    async fn create(&self, job: &JobRecord, job_token: &str) -> Result<(), CreateError> {
        let name = job.container_name();
        let body = container_body(&self.config, &self.instance, job, job_token);
        let mut created = create(&self.docker, body.clone(), &name).await;
        if let Err(CreateError::Other(_)) = &created {
            // A leftover container of the same name (a crash between create and persist):
            // remove it and try once more.
            remove(&self.docker, &name).await?;
            created = create(&self.docker, body, &name).await;
        }
        created
    }

    async fn start(&self, name: &str) -> Result<(), CreateError> {
        Ok(self.docker.start_container(name, None).await?)
    }

    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>> {
        status(&self.docker, name).await
    }

    async fn finished_at(&self, name: &str) -> Result<Option<i64>> {
        finished_at(&self.docker, name).await
    }

    async fn wait_exit(&self, name: &str) -> Result<Option<ContainerStatus>> {
        wait_exit(&self.docker, name).await
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<()> {
        stop_container(&self.docker, name, grace).await
    }

    async fn remove(&self, name: &str) -> Result<()> {
        remove(&self.docker, name).await
    }

    fn logs(&self, name: &str, follow: bool) -> BoxStream<'static, Result<Bytes>> {
        let docker = if follow {
            self.docker.clone().with_timeout(FOLLOW_TIMEOUT)
        } else {
            self.docker.clone()
        };
        container_logs(docker, name.to_string(), follow)
    }

    async fn list_jobs(&self) -> Result<Vec<ObservedContainer>> {
        list_job_containers(&self.docker, &self.instance).await
    }

    async fn images(&self, images: &[String]) -> Result<Vec<NodeImages>> {
        let node = self
            .docker
            .info()
            .await?
            .name
            .unwrap_or_else(|| "local".to_string());
        let mut out = NodeImages {
            node,
            node_id: String::new(),
            present: Vec::new(),
            missing: Vec::new(),
        };
        for image in images {
            if image_present(&self.docker, image).await? {
                out.present.push(image.clone());
            } else {
                out.missing.push(image.clone());
            }
        }
        Ok(vec![out])
    }
}

/// The full create body of a job container (pure, so tests can check the hardening).
pub fn container_body(
    config: &Config,
    instance: &str,
    job: &JobRecord,
    job_token: &str,
) -> ContainerCreateBody {
    let runner = config.runner(job.job_type);
    let tmpfs_opts = format!(
        "rw,nosuid,nodev,mode=1777,size={}m",
        config.docker.tmpfs_size_mb
    );
    // /data always, /tmp when the root is read-only. Anonymous volumes start as a copy of the
    // image's directory (owner and mode included), so a non-root job can write them on every
    // kernel; tmpfs `mode=` is ignored on some sandboxed kernels.
    let mut scratch = vec!["/data"];
    if config.docker.read_only_rootfs {
        scratch.push("/tmp");
    }
    let mut tmpfs = HashMap::new();
    let mut mounts = Vec::new();
    for target in scratch {
        match config.docker.data_mount {
            DataMount::Tmpfs => {
                tmpfs.insert(target.to_string(), tmpfs_opts.clone());
            }
            DataMount::Volume => mounts.push(Mount {
                target: Some(target.to_string()),
                typ: Some(MountType::VOLUME),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(job_labels(job, instance)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
    let host_gateway = (config.docker.network != "host")
        .then(|| vec!["host.docker.internal:host-gateway".to_string()]);
    ContainerCreateBody {
        image: Some(job.runner.clone()),
        env: Some(job_inputs(job, config, job_token).all_as_env()),
        labels: Some(job_labels(job, instance)),
        host_config: Some(HostConfig {
            network_mode: Some(config.docker.network.clone()),
            nano_cpus: (runner.cpus > 0.0).then_some((runner.cpus * 1e9) as i64),
            memory: (runner.memory_mb > 0).then(|| runner.memory_mb as i64 * 1024 * 1024),
            // Memory plus swap equal to memory: no swap at all. Docker's default (swap twice
            // the memory limit) would let a job push the host into swapping beyond its limit.
            memory_swap: (runner.memory_mb > 0).then(|| runner.memory_mb as i64 * 1024 * 1024),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            // Job images run as an unprivileged user and need no capability (not even
            // NET_RAW, which would let a job craft packets on the job network).
            cap_drop: Some(vec!["ALL".to_string()]),
            pids_limit: (config.docker.pids_limit > 0).then_some(config.docker.pids_limit as i64),
            // Explicit rotation: the engine default may be unbounded json-file.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_string()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), config.docker.log_max_size.clone()),
                    (
                        "max-file".to_string(),
                        config.docker.log_max_files.to_string(),
                    ),
                ])),
            }),
            readonly_rootfs: Some(config.docker.read_only_rootfs),
            tmpfs: Some(tmpfs),
            mounts: Some(mounts),
            extra_hosts: host_gateway,
            // docker-init reaps zombies and forwards SIGTERM to the job's process, which as
            // PID 1 would otherwise ignore it.
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the job's container (not started).
pub async fn create(
    docker: &Docker,
    body: ContainerCreateBody,
    name: &str,
) -> Result<(), CreateError> {
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match docker.create_container(Some(options), body).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Err(CreateError::ImageMissing),
        Err(e) => Err(CreateError::Other(e.into())),
    }
}

/// Sends a signal (`SIGTERM`, `SIGKILL`); a container that is already stopped or gone is fine.
pub async fn signal(docker: &Docker, name: &str, signal: &str) -> Result<()> {
    let options = KillContainerOptions {
        signal: signal.to_string(),
    };
    match docker.kill_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a container and its anonymous `/data` volume; a missing container is fine.
pub async fn remove(docker: &Docker, name: &str) -> Result<()> {
    let options = RemoveContainerOptions {
        v: true,
        force: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        // 409: removal already in progress.
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The container's status, `None` when it does not exist.
pub async fn status(docker: &Docker, name: &str) -> Result<Option<ContainerStatus>> {
    match docker.inspect_container(name, None).await {
        Ok(inspect) => {
            let state = inspect.state.unwrap_or_default();
            let running = state.running.unwrap_or(false)
                || state.restarting.unwrap_or(false)
                || state.paused.unwrap_or(false);
            let started = state
                .started_at
                .as_deref()
                .is_some_and(|t| !t.starts_with("0001-"));
            Ok(Some(if running {
                ContainerStatus::Running
            } else if !started && state.exit_code.unwrap_or(0) == 0 {
                ContainerStatus::Created
            } else {
                ContainerStatus::Exited {
                    exit_code: state.exit_code.unwrap_or(-1),
                    oom_killed: state.oom_killed.unwrap_or(false),
                }
            }))
        }
        Err(e) if is_status(&e, 404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// When the container exited (Unix ms), from Docker's record; `None` if unknown. Used so a job
/// that ended while the offloader was down gets its real end time.
pub async fn finished_at(docker: &Docker, name: &str) -> Result<Option<i64>> {
    let inspect = match docker.inspect_container(name, None).await {
        Ok(inspect) => inspect,
        Err(e) if is_status(&e, 404) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = inspect
        .state
        .and_then(|s| s.finished_at)
        .unwrap_or_default();
    Ok(parse_docker_time(&text))
}

/// Waits until the container is not running and returns its final status. Long waits survive
/// the client's request timeout by falling back to inspecting and waiting again.
pub async fn wait_exit(docker: &Docker, name: &str) -> Result<Option<ContainerStatus>> {
    loop {
        let options = WaitContainerOptions {
            condition: "not-running".to_string(),
        };
        let mut stream = std::pin::pin!(docker.wait_container(name, Some(options)));
        // The item (exit code or error) is not trusted: inspect below is the single source.
        let _ = stream.next().await;
        match status(docker, name).await? {
            Some(ContainerStatus::Running) => tokio::time::sleep(Duration::from_millis(200)).await,
            other => return Ok(other),
        }
    }
}

/// Every container labelled `app=calls-offloader` of this instance, with its job id and status.
pub async fn list_job_containers(
    docker: &Docker,
    instance: &str,
) -> Result<Vec<ObservedContainer>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{}={}", APP_LABEL.0, APP_LABEL.1),
            format!("{INSTANCE_LABEL}={instance}"),
        ],
    )]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let mut out = Vec::new();
    for summary in docker.list_containers(Some(options)).await? {
        let Some(id) = summary.id else { continue };
        let Some(status) = status(docker, &id).await? else {
            continue; // removed between list and inspect
        };
        out.push(ObservedContainer {
            job_id: summary
                .labels
                .as_ref()
                .and_then(|l| l.get("calls.job_id").cloned()),
            container_id: id,
            status,
        });
    }
    Ok(out)
}

/// The container's stdout and stderr, interleaved as Docker recorded them. The stream owns its
/// client, so it may outlive the caller.
pub fn container_logs(
    docker: Docker,
    name: String,
    follow: bool,
) -> BoxStream<'static, Result<Bytes>> {
    let stream = docker
        .logs(&name, Some(whole_log(follow)))
        .map(|item| item.map(|out| out.into_bytes()).map_err(Error::from))
        .boxed();
    owning_client(docker, stream)
}

/// Asks for a job's whole log, stdout and stderr, followed or not (containers and services alike).
pub(super) fn whole_log(follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        tail: "all".to_string(),
        ..Default::default()
    }
}

/// `stream`, holding on to the client it reads through so that it may outlive the caller.
pub(super) fn owning_client(
    docker: Docker,
    stream: BoxStream<'static, Result<Bytes>>,
) -> BoxStream<'static, Result<Bytes>> {
    futures::stream::unfold((docker, stream), |(docker, mut s)| async move {
        s.next().await.map(|item| (item, (docker, s)))
    })
    .boxed()
}

/// SIGTERM now, SIGKILL after `grace` (a no-op if it exited by then). A failed SIGTERM is
/// logged and the SIGKILL still follows.
pub async fn stop_container(docker: &Docker, name: &str, grace: Duration) -> Result<()> {
    if let Err(error) = signal(docker, name, "SIGTERM").await {
        tracing::warn!(container = name, %error, "SIGTERM failed");
    }
    tokio::time::sleep(grace).await;
    signal(docker, name, "SIGKILL").await
}

/// Whether an image exists in the local engine.
pub async fn image_present(docker: &Docker, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{job, mount_targets};
    use super::*;

    #[test]
    fn containers_are_labelled_hardened_and_get_the_job_environment() {
        let config = Config::load("", Vec::new()).expect("defaults");
        let body = container_body(&config, "inst1", &job(), "tok");
        let env = body.env.expect("env");
        for expected in [
            "JOB_ID=abc",
            "JOB_TYPE=transcribing",
            "OFFLOADER_URL=http://172.17.0.1:4545",
            "JOB_TOKEN=tok",
            "CALL_ID=c1",
            "THREADS=2",
            "BOT_TOKEN=bot-secret",
        ] {
            assert!(env.contains(&expected.to_string()), "{expected} in {env:?}");
        }
        let labels = body.labels.expect("labels");
        assert_eq!(labels["app"], "calls-offloader");
        assert_eq!(labels["calls.job_id"], "abc");
        assert_eq!(labels["calls.job_type"], "transcribing");
        assert_eq!(labels["calls.client_id"], "client-a");
        assert_eq!(labels[INSTANCE_LABEL], "inst1");
        let host = body.host_config.expect("host config");
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.memory, Some(4096 * 1024 * 1024));
        assert_eq!(
            host.memory_swap, host.memory,
            "no swap beyond the memory limit"
        );
        assert_eq!(host.nano_cpus, Some(2_000_000_000));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.pids_limit, Some(512));
        let log = host.log_config.expect("log config");
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let options = log.config.expect("log options");
        assert_eq!(options["max-size"], "10m");
        assert_eq!(options["max-file"], "3");
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        let targets = mount_targets(host.mounts);
        assert_eq!(targets, vec!["/data", "/tmp"]);
        let tmpfs_config = Config::load(
            "",
            vec![("OFFLOADER_DOCKER_DATA_MOUNT".into(), "tmpfs".into())],
        )
        .expect("valid");
        let host = container_body(&tmpfs_config, "inst1", &job(), "tok")
            .host_config
            .expect("host config");
        let tmpfs = host.tmpfs.expect("tmpfs");
        assert!(tmpfs.contains_key("/data") && tmpfs.contains_key("/tmp"));
        assert_eq!(host.mounts, Some(Vec::new()));
    }
}
