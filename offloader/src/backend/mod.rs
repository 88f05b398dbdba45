//! The backend seam: how the runner and the API drive one job's workload, whatever runs it.
//! [`JobBackend`] is the one trait; [`engine::EngineBackend`] runs a container on the Docker
//! engine beside the offloader (`docker.mode = "engine"`), [`swarm::SwarmBackend`] a one-task
//! `replicated-job` service on the swarm that engine manages (`docker.mode = "swarm"`). The
//! scheduler and the reconciler (`scheduler.rs`) stay pure and shared: a backend only observes
//! ([`JobBackend::status`], [`JobBackend::list_jobs`]) and acts (create, stop, remove).
//!
//! A workload is named like the job's container (`calls-<type>-<id>`, [`JobRecord::container_name`])
//! and carries the same labels ([`job_labels`]) in both modes, which is how the reconciler and
//! operators find it. docs/adr/0002-job-backends.md maps the seam onto Kubernetes Jobs.
//!
//! **Architecture invariant:** nothing outside this module calls bollard for a job's workload.

pub mod engine;
pub mod swarm;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::Docker;
use bytes::Bytes;
use calls_protocol::job_env;
use calls_protocol::jobs::{is_secret_field, NodeImages};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::config::{Config, DockerMode};
use crate::error::{Error, Result};
use crate::scheduler::{ContainerStatus, ObservedContainer};
use crate::store::JobRecord;

/// The label every job workload carries; the reconciler only ever touches workloads with it.
pub const APP_LABEL: (&str, &str) = ("app", "calls-offloader");

/// The label naming the store (offloader instance) a workload belongs to: offloaders sharing
/// one Docker engine (or swarm) each reconcile and sweep only their own workloads.
pub const INSTANCE_LABEL: &str = "calls.offloader_instance";

/// Why a job's workload could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// The runner image is not on the engine (or, in swarm mode, on the node the task went to).
    ImageMissing,
    Other(Error),
}

impl From<Error> for CreateError {
    fn from(error: Error) -> Self {
        CreateError::Other(error)
    }
}

impl From<DockerError> for CreateError {
    fn from(error: DockerError) -> Self {
        CreateError::Other(error.into())
    }
}

/// One job's workload, driven by the runner. Names are workload names (`calls-<type>-<id>`),
/// or the ids [`JobBackend::list_jobs`] returned.
#[async_trait]
pub trait JobBackend: Send + Sync {
    fn mode(&self) -> DockerMode;

    /// The Docker engine (or swarm manager) this backend drives.
    fn docker(&self) -> &bollard::Docker;

    /// Whether Docker answers (`/healthz`).
    async fn ping(&self) -> Result<()> {
        self.docker().ping().await?;
        Ok(())
    }

    /// Creates the job's workload (not started). `job_token` is the job's bearer token.
    async fn create(&self, job: &JobRecord, job_token: &str) -> Result<(), CreateError>;

    /// Starts a created workload; in swarm mode also waits until a node runs its task, so a
    /// runner image missing there is reported as [`CreateError::ImageMissing`].
    async fn start(&self, name: &str) -> Result<(), CreateError>;

    /// The workload's status, `None` when it does not exist.
    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>>;

    /// When the workload exited (Unix ms), `None` if unknown or still running.
    async fn finished_at(&self, name: &str) -> Result<Option<i64>>;

    /// Waits until the workload is no longer running and returns its final status (`None`
    /// when it vanished).
    async fn wait_exit(&self, name: &str) -> Result<Option<ContainerStatus>>;

    /// SIGTERM now, SIGKILL after `grace` if it still runs; a workload already gone is fine.
    async fn stop(&self, name: &str, grace: Duration) -> Result<()>;

    /// Removes the workload with its scratch volumes (and, in swarm mode, its secrets); a
    /// missing one is fine.
    async fn remove(&self, name: &str) -> Result<()>;

    /// Stdout and stderr, interleaved as Docker recorded them; `follow` keeps the stream open
    /// until the workload ends.
    fn logs(&self, name: &str, follow: bool) -> BoxStream<'static, Result<Bytes>>;

    /// The log a backend read just before it removed a workload to stop it (swarm mode, a task
    /// on another node), once; `None` otherwise.
    fn take_saved_log(&self, _name: &str) -> Option<Vec<u8>> {
        None
    }

    /// Every workload labelled `app=calls-offloader` of this offloader instance.
    async fn list_jobs(&self) -> Result<Vec<ObservedContainer>>;

    /// Which of `images` each node that may run jobs has (one node, the engine itself, in
    /// engine mode).
    async fn images(&self, images: &[String]) -> Result<Vec<NodeImages>>;
}

/// Connects with the local defaults (`DOCKER_HOST` or the Unix socket) and agrees on an API
/// version the engine supports (Debian's 20.10 speaks 1.41).
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_local_defaults()?;
    Ok(docker.negotiate_version().await?)
}

/// The backend `config.docker.mode` names, for the offloader instance `instance`. Swarm mode checks
/// that the engine is a swarm manager.
pub async fn for_mode(
    config: Arc<Config>,
    docker: Docker,
    instance: String,
) -> Result<Arc<dyn JobBackend>> {
    Ok(match config.docker.mode {
        DockerMode::Engine => Arc::new(engine::EngineBackend::new(docker, config, instance)),
        DockerMode::Swarm => {
            Arc::new(swarm::SwarmBackend::connect(docker, config, instance).await?)
        }
    })
}

pub(crate) fn is_status(error: &DockerError, code: u16) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// A job's inputs as the workload gets them: plain environment variables, and the secrets
/// (`JOB_TOKEN` and every secret `input_data` field) as (variable name, value) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInputs {
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// (variable name, value): the backend decides whether they go into the environment
    /// (engine mode) or into files `/run/secrets/<lowercase name>` (swarm mode).
    pub secrets: Vec<(String, String)>,
}

impl JobInputs {
    /// Everything as environment entries (engine mode).
    pub fn all_as_env(&self) -> Vec<String> {
        let mut env = self.env.clone();
        env.extend(self.secrets.iter().map(|(k, v)| format!("{k}={v}")));
        env
    }
}

/// The inputs of a job: `JOB_ID`, `JOB_TYPE`, `OFFLOADER_URL`, `JOB_TOKEN` (and
/// `CALLS_CA_CERT_PEM` with `jobs.ca_cert_file`), then every
/// `input_data` key upper-cased (strings as-is, other JSON values as JSON text). The fixed names
/// win over input keys of the same name; `JOB_TOKEN` and inputs named like secrets
/// (`is_secret_field`) are secrets.
pub fn job_inputs(job: &JobRecord, config: &Config, job_token: &str) -> JobInputs {
    let fixed = [
        (job_env::JOB_ID, job.id.clone()),
        (job_env::JOB_TYPE, job.job_type.as_str().to_string()),
        (job_env::OFFLOADER_URL, config.jobs.offloader_url.clone()),
    ];
    let mut env: Vec<String> = fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The stack's CA (public), so the job trusts an https:// SFU and offloader it signed.
    if let Some(pem) = &config.jobs.job_ca_cert_pem {
        env.push(format!("{}={pem}", job_env::CA_CERT_PEM));
    }
    let mut secrets = vec![(job_env::JOB_TOKEN.to_string(), job_token.to_string())];
    for (key, value) in &job.input_data {
        let name = job_env::env_name(key);
        if job_env::RESERVED.contains(&name.as_str()) {
            continue;
        }
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if is_secret_field(&name) {
            secrets.push((name, text));
        } else {
            env.push(format!("{name}={text}"));
        }
    }
    JobInputs { env, secrets }
}

/// The labels of a job workload (container, service, volume, secret).
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

/// Parses Docker's RFC 3339 timestamps; the zero time (`0001-01-01T...`) means "never".
pub fn parse_docker_time(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let ms = (time.unix_timestamp_nanos() / 1_000_000) as i64;
    (ms > 0).then_some(ms)
}

/// The log of a (usually exited) workload, at most about `limit` bytes of it: see
/// [`BoundedLog`].
pub async fn collect_logs(backend: &dyn JobBackend, name: &str, limit: usize) -> Result<Vec<u8>> {
    let mut log = BoundedLog::new(limit);
    let mut stream = backend.logs(name, false);
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

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use calls_protocol::jobs::{JobState, JobType};

    use super::*;

    /// Where a spec's mounts go (`/data`, `/tmp`), in order.
    pub(crate) fn mount_targets(mounts: Option<Vec<bollard::models::Mount>>) -> Vec<String> {
        mounts
            .expect("mounts")
            .into_iter()
            .map(|m| m.target.expect("target"))
            .collect()
    }

    pub(crate) fn job() -> JobRecord {
        JobRecord {
            seq: 1,
            state: JobState::Starting,
            input_data: BTreeMap::from([
                ("call_id".to_string(), serde_json::json!("c1")),
                ("threads".to_string(), serde_json::json!(2)),
                ("bot_token".to_string(), serde_json::json!("bot-secret")),
            ])
            .into(),
            created_at: 0,
            ..JobRecord::queued(
                "abc",
                "client-a",
                "owner-uid",
                JobType::Transcribing,
                "calls-transcriber:latest",
            )
        }
    }

    #[test]
    fn secrets_are_split_from_the_plain_environment() {
        let config = Config::load(
            "",
            [(
                "OFFLOADER_JOBS_OFFLOADER_URL".to_string(),
                "http://x:1".to_string(),
            )],
        )
        .expect("valid");
        let inputs = job_inputs(&job(), &config, "tok");
        assert_eq!(
            inputs.env,
            vec![
                "JOB_ID=abc",
                "JOB_TYPE=transcribing",
                "OFFLOADER_URL=http://x:1",
                "CALL_ID=c1",
                "THREADS=2"
            ]
        );
        assert_eq!(
            inputs.secrets,
            vec![
                ("JOB_TOKEN".to_string(), "tok".to_string()),
                ("BOT_TOKEN".to_string(), "bot-secret".to_string())
            ]
        );
        let all = inputs.all_as_env();
        assert!(all.contains(&"JOB_TOKEN=tok".to_string()));
        assert!(all.contains(&"BOT_TOKEN=bot-secret".to_string()));
    }

    #[test]
    fn jobs_get_the_configured_ca_and_no_input_can_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = calls_tls::local_ca::new_ca(
            "test ca",
            std::time::SystemTime::now(),
            Duration::from_secs(3600),
        )
        .unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &ca.cert).unwrap();
        let config = Config::load(
            "",
            [(
                "OFFLOADER_JOBS_CA_CERT_FILE".to_string(),
                path.display().to_string(),
            )],
        )
        .expect("valid");
        let mut job = job();
        job.input_data.insert(
            "calls_ca_cert_pem".to_string(),
            serde_json::json!("attacker's CA"),
        );
        let inputs = job_inputs(&job, &config, "tok");
        let ca_env: Vec<_> = inputs
            .env
            .iter()
            .filter(|e| e.starts_with("CALLS_CA_CERT_PEM="))
            .collect();
        assert_eq!(ca_env, [&format!("CALLS_CA_CERT_PEM={}", ca.cert)]);

        // A file that is not a certificate is refused at start, naming it.
        std::fs::write(&path, "hello").unwrap();
        let error = Config::load(
            "",
            [(
                "OFFLOADER_JOBS_CA_CERT_FILE".to_string(),
                path.display().to_string(),
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("ca.pem"), "{error}");
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
}
