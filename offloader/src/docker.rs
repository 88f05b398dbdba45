//! The thin bollard shell: every Docker call the offloader makes, and nothing else. Containers
//! are found by name (`calls-<type>-<job id>`) and labels (`app=calls-offloader`,
//! `calls.job_id`, `calls.job_type`, `calls.client_id`), which is also how operators find them.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use calls_protocol::job_env;
use futures::{Stream, StreamExt};

use crate::config::{Config, DataMount};
use crate::error::{Error, Result};
use crate::scheduler::{ContainerStatus, ObservedContainer};
use crate::store::JobRecord;

/// The label every job container carries; the reconciler only ever touches containers with it.
pub const APP_LABEL: (&str, &str) = ("app", "calls-offloader");

/// Connects with the local defaults (`DOCKER_HOST` or the Unix socket) and agrees on an API
/// version the engine supports (Debian's 20.10 speaks 1.41).
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_local_defaults()?;
    Ok(docker.negotiate_version().await?)
}

/// Why a container could not be created.
#[derive(Debug)]
pub enum CreateError {
    ImageMissing,
    Other(Error),
}

fn is_status(error: &DockerError, code: u16) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// The environment of a job container: `JOB_ID`, `JOB_TYPE`, `OFFLOADER_URL`, `JOB_TOKEN`, then
/// every `input_data` key upper-cased (strings as-is, other JSON values as JSON text). The fixed
/// names win over input keys of the same name.
pub fn job_env(job: &JobRecord, offloader_url: &str, job_token: &str) -> Vec<String> {
    let fixed = [
        (job_env::JOB_ID, job.id.clone()),
        (job_env::JOB_TYPE, job.job_type.as_str().to_string()),
        (job_env::OFFLOADER_URL, offloader_url.to_string()),
        (job_env::JOB_TOKEN, job_token.to_string()),
    ];
    let mut env: Vec<String> = fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for (key, value) in &job.input_data {
        let name = job_env::env_name(key);
        if fixed.iter().any(|(k, _)| *k == name) {
            continue;
        }
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        env.push(format!("{name}={text}"));
    }
    env
}

/// The label naming the store (offloader instance) a container belongs to: offloaders sharing
/// one Docker engine each reconcile and sweep only their own containers.
pub const INSTANCE_LABEL: &str = "calls.offloader_instance";

/// The labels of a job container.
pub fn job_labels(job: &JobRecord, instance: &str) -> HashMap<String, String> {
    HashMap::from([
        (APP_LABEL.0.to_string(), APP_LABEL.1.to_string()),
        (INSTANCE_LABEL.to_string(), instance.to_string()),
        ("calls.job_id".to_string(), job.id.clone()),
        (
            "calls.job_type".to_string(),
            job.job_type.as_str().to_string(),
        ),
        ("calls.client_id".to_string(), job.client_id.clone()),
    ])
}

/// The full create body of a job container (pure, so tests can check the hardening).
pub fn container_body(
    config: &Config,
    instance: &str,
    job: &JobRecord,
    job_token: &str,
) -> ContainerCreateBody {
    let runner = config.runner(job.job_type);
    let tmpfs_opts = format!("rw,nosuid,nodev,mode=1777,size={}m", config.tmpfs_size_mb);
    // /data always, /tmp when the root is read-only. Anonymous volumes start as a copy of the
    // image's directory (owner and mode included), so a non-root job can write them on every
    // kernel; tmpfs `mode=` is ignored on some sandboxed kernels.
    let mut scratch = vec!["/data"];
    if config.read_only_rootfs {
        scratch.push("/tmp");
    }
    let mut tmpfs = HashMap::new();
    let mut mounts = Vec::new();
    for target in scratch {
        match config.data_mount {
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
    let host_gateway =
        (config.network != "host").then(|| vec!["host.docker.internal:host-gateway".to_string()]);
    ContainerCreateBody {
        image: Some(job.runner.clone()),
        env: Some(job_env(job, &config.offloader_url, job_token)),
        labels: Some(job_labels(job, instance)),
        host_config: Some(HostConfig {
            network_mode: Some(config.network.clone()),
            nano_cpus: (runner.cpus > 0.0).then_some((runner.cpus * 1e9) as i64),
            memory: (runner.memory_mb > 0).then(|| runner.memory_mb as i64 * 1024 * 1024),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            // Job images run as an unprivileged user and need no capability (not even
            // NET_RAW, which would let a job craft packets on the job network).
            cap_drop: Some(vec!["ALL".to_string()]),
            pids_limit: (config.pids_limit > 0).then_some(config.pids_limit as i64),
            // Explicit rotation: the engine default may be unbounded json-file.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_string()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), config.log_max_size.clone()),
                    ("max-file".to_string(), config.log_max_files.to_string()),
                ])),
            }),
            readonly_rootfs: Some(config.read_only_rootfs),
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

pub async fn start(docker: &Docker, name: &str) -> Result<()> {
    Ok(docker.start_container(name, None).await?)
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

/// Parses Docker's RFC 3339 timestamps; the zero time (`0001-01-01T...`) means "never".
pub fn parse_docker_time(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let ms = (time.unix_timestamp_nanos() / 1_000_000) as i64;
    (ms > 0).then_some(ms)
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

/// The container's stdout and stderr, interleaved as Docker recorded them.
pub fn logs(docker: &Docker, name: &str, follow: bool) -> impl Stream<Item = Result<Bytes>> {
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        tail: "all".to_string(),
        ..Default::default()
    };
    docker
        .logs(name, Some(options))
        .map(|item| item.map(|out| out.into_bytes()).map_err(Error::from))
}

/// The log of a (usually exited) container, at most about `limit` bytes of it: see
/// [`BoundedLog`].
pub async fn collect_logs(docker: &Docker, name: &str, limit: usize) -> Result<Vec<u8>> {
    let mut log = BoundedLog::new(limit);
    let mut stream = std::pin::pin!(logs(docker, name, false));
    while let Some(chunk) = stream.next().await {
        log.push(&chunk?);
    }
    Ok(log.finish())
}

/// A log read in chunks, kept within a byte budget: the first half of the budget as it came,
/// and the last half as a ring, so memory stays bounded however much a job printed, while the
/// start (configuration, errors on start-up) and the end (why it stopped) survive.
pub struct BoundedLog {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    head_limit: usize,
    tail_limit: usize,
    omitted: u64,
}

impl BoundedLog {
    pub fn new(limit: usize) -> BoundedLog {
        let head_limit = limit / 2;
        BoundedLog {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_limit,
            tail_limit: limit - head_limit,
            omitted: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        let room = self.head_limit - self.head.len();
        let to_head = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        if bytes.len() > self.tail_limit {
            let skip = bytes.len() - self.tail_limit;
            self.omitted += (self.tail.len() + skip) as u64;
            self.tail.clear();
            bytes = &bytes[skip..];
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_limit);
        self.tail.drain(..overflow);
        self.omitted += overflow as u64;
        self.tail.extend(bytes);
    }

    /// The kept bytes, with a line saying how many were left out in between, if any.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.head;
        if self.omitted > 0 {
            out.extend_from_slice(
                format!(
                    "\n[calls-offloader: {} bytes of log omitted here (jobs.max_log_bytes)]\n",
                    self.omitted
                )
                .as_bytes(),
            );
        }
        out.extend(self.tail);
        out
    }
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
    use std::collections::BTreeMap;

    use calls_protocol::jobs::{JobState, JobType};

    use super::*;

    fn job() -> JobRecord {
        JobRecord {
            seq: 1,
            id: "abc".into(),
            client_id: "client-a".into(),
            owner: "owner-uid".into(),
            job_type: JobType::Transcribing,
            state: JobState::Starting,
            runner: "calls-transcriber:latest".into(),
            max_duration_sec: 60,
            input_data: BTreeMap::from([
                ("call_id".to_string(), serde_json::json!("c1")),
                ("threads".to_string(), serde_json::json!(2)),
            ]),
            job_token_hash: String::new(),
            created_at: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            failure_reason: None,
            stop_reason: None,
            reported_error: None,
            progress: None,
            counters: BTreeMap::new(),
            container_removed: false,
            work_done: false,
        }
    }

    #[test]
    fn bounded_logs_keep_the_start_and_the_end() {
        let mut log = BoundedLog::new(10);
        log.push(b"abc");
        assert_eq!(log.finish(), b"abc");
        let mut log = BoundedLog::new(10);
        for chunk in [&b"01234"[..], b"56", b"789abcdefgh", b"ij"] {
            log.push(chunk);
        }
        let text = String::from_utf8(log.finish()).expect("utf8");
        assert!(
            text.starts_with("01234\n[calls-offloader: 10 bytes"),
            "{text}"
        );
        assert!(text.ends_with("]\nfghij"), "{text}");
        let mut log = BoundedLog::new(8);
        for byte in 0..=255u8 {
            log.push(&[byte]);
        }
        let bytes = log.finish();
        assert_eq!(&bytes[..4], &[0, 1, 2, 3]);
        assert_eq!(&bytes[bytes.len() - 4..], &[252, 253, 254, 255]);
    }

    #[test]
    fn docker_times_parse_and_zero_means_never() {
        assert_eq!(
            parse_docker_time("2026-11-21T13:48:24.123456789Z"),
            Some(1_795_268_904_123)
        );
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time(""), None);
    }

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
        let targets: Vec<_> = host
            .mounts
            .expect("mounts")
            .into_iter()
            .map(|m| m.target.expect("target"))
            .collect();
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
