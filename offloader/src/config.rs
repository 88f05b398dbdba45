//! Configuration in two steps: [`KEYS`]' defaults, the TOML file (unknown keys rejected) laid over
//! them and `OFFLOADER_*` environment overrides on top, then validation into a [`Config`] with real
//! types, one function and one struct per file section. [`KEYS`] is the single list of settings and
//! the only place a default is written: it drives the env overrides, fills every key neither the
//! file nor the environment sets, and is what docs/offloader.md documents (a test checks each row,
//! default included). Durations use the stack's one format (`calls_protocol::duration`); the admin
//! secret is a redacting `Secret`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use calls_protocol::duration::parse_duration;
use calls_protocol::jobs::JobType;
use calls_protocol::secret::Secret;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The prefix of every environment override: `OFFLOADER_` + dotted key upper-cased with `_`.
pub const ENV_PREFIX: &str = "OFFLOADER_";

/// How an override value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// Comma-separated in the environment, a TOML array in the file.
    List,
}

/// Every setting: dotted TOML key, kind, default (as written in the file), description.
pub const KEYS: &[(&str, Kind, &str, &str)] = &[
    ("api.listen_address", Kind::Str, "\"0.0.0.0:4545\"", "address the HTTP API listens on"),
    ("api.tls_cert_file", Kind::Str, "\"\"", "PEM certificate (then its chain) to serve the API over HTTPS; re-read when the file changes; empty = plain HTTP"),
    ("api.tls_key_file", Kind::Str, "\"\"", "PEM private key of api.tls_cert_file"),
    ("api.admin_secret", Kind::Str, "\"\"", "secret that authorises /register and /unregister of any client, sent as a bearer token or as the password of Basic auth with an empty user (≥ 32 chars; empty disables admin)"),
    ("api.self_registration", Kind::Bool, "false", "let anyone register a client without the admin secret, and register an unknown client on its first request with Basic credentials (Mattermost's `allow_self_registration`)"),
    ("api.token_ttl", Kind::Str, "\"24h\"", "lifetime of bearer tokens from /login"),
    ("api.max_json_body_bytes", Kind::Int, "1048576", "body limit of JSON routes (413 above it)"),
    ("api.header_read_timeout", Kind::Str, "\"10s\"", "time a client has to send a request's line and headers (also between requests on a kept-alive connection) before the connection is closed"),
    ("api.body_read_timeout", Kind::Str, "\"30s\"", "time a JSON body may take to arrive, and the longest pause between two chunks of an artifact upload (408-style 400 and the upload dropped)"),
    ("api.max_connections", Kind::Int, "1024", "connections served at once; further ones are closed at once and counted in calls_offloader_api_connections_refused_total"),
    ("api.max_connections_per_address", Kind::Int, "128", "connections served at once from one source address (an IPv6 /64); further ones are closed at once and counted in calls_offloader_api_connections_refused_total"),
    ("api.write_timeout", Kind::Str, "\"10s\"", "longest time an answer may wait for the client to read it (no byte accepted by the socket) before the connection is closed, so a client that stops reading cannot hold a connection and its queued answers"),
    ("api.key_cache_ttl", Kind::Str, "\"10m\"", "how long a verified client key is remembered (as a keyed hash, in memory) so Basic auth runs argon2 at most once per key and period; \"0s\" disables"),
    ("api.max_key_verifications", Kind::Int, "2", "argon2 key verifications running at once (≈ 19 MiB each); further ones wait up to 10 s, then 503"),
    ("api.auth_failure_limit", Kind::Int, "10", "failed key verifications per minute for one (client id, source address) pair before that pair gets 429 `rate_limited`; other addresses, and a right key from elsewhere, are not affected"),
    ("api.max_tokens_per_client", Kind::Int, "20", "live bearer tokens per client: a /login beyond it revokes that client's oldest token"),
    ("store.data_dir", Kind::Str, "\"/var/lib/calls-offloader\"", "SQLite store, job logs and artifacts (absolute path)"),
    ("jobs.max_concurrent", Kind::Int, "2", "jobs whose containers run at the same time"),
    ("jobs.max_queue_length", Kind::Int, "50", "queued jobs waiting for a slot; 429 when full"),
    ("jobs.client_queue_share", Kind::Float, "0.5", "fraction of jobs.max_queue_length one client may fill (at least 1 job); 429 beyond it"),
    ("jobs.client_run_share", Kind::Float, "0.5", "fraction of jobs.max_concurrent (at least 1 slot) one client holds before a free slot goes first to another client's queued job"),
    ("jobs.max_jobs_per_client", Kind::Int, "1000", "jobs one client may have stored (any state, until deleted or swept); 429 beyond it"),
    ("jobs.max_input_bytes", Kind::Int, "16384", "size of a job's input_data as JSON; 413 above it"),
    ("jobs.max_artifacts_per_job", Kind::Int, "32", "artifacts one job may store (409 beyond it; replacing one by name is fine)"),
    ("jobs.max_job_artifact_bytes", Kind::Int, "21474836480", "total size of one job's artifacts (413 beyond it)"),
    ("jobs.stop_grace_period", Kind::Str, "\"30s\"", "time between SIGTERM and SIGKILL on stop or max duration"),
    ("jobs.failed_job_retention", Kind::Str, "\"30d\"", "how long failed containers (and their volume) are kept"),
    ("jobs.finished_job_retention", Kind::Str, "\"30d\"", "how long final job records, logs and artifacts are kept"),
    ("jobs.sweep_interval", Kind::Str, "\"1m\"", "period of the retention sweeper"),
    ("jobs.max_artifact_bytes", Kind::Int, "10737418240", "size limit of one uploaded artifact"),
    ("jobs.image_allowlist", Kind::List, "[]", "images a job of any type may name as runner (prefer the per-type `runners.<type>.image_allowlist`)"),
    ("jobs.ca_cert_file", Kind::Str, "\"\"", "PEM CA certificate handed to every job (as CALLS_CA_CERT_PEM) so it trusts an SFU and offloader whose certificates this CA signed (a stack's local CA); empty = public roots only"),
    ("jobs.offloader_url", Kind::Str, "\"http://172.17.0.1:4545\"", "OFFLOADER_URL given to jobs: how a container reaches this API"),
    ("docker.mode", Kind::Str, "\"engine\"", "where jobs run: `engine` (a container on the Docker engine beside the offloader) or `swarm` (a one-task `replicated-job` service on a Docker Swarm the engine manages; see \"Swarm mode\")"),
    ("docker.swarm_constraints", Kind::List, "[]", "swarm mode: placement constraints of job services, e.g. `[\"node.labels.calls-jobs==true\"]`"),
    ("docker.swarm_start_timeout", Kind::Str, "\"60s\"", "swarm mode: how long a job's task may take to be placed on a node and start before the job fails"),
    ("docker.network", Kind::Str, "\"bridge\"", "network of job containers (`bridge`, `host` or a network name)"),
    ("docker.read_only_rootfs", Kind::Bool, "true", "run job containers with a read-only root filesystem (/tmp then gets a scratch mount like /data)"),
    ("docker.data_mount", Kind::Str, "\"volume\"", "what /data (and /tmp on a read-only root) is: `volume` (anonymous, a copy of the image's directory, removed with the container) or `tmpfs`"),
    ("docker.pids_limit", Kind::Int, "512", "most processes and threads a job container may have (0 = no limit)"),
    ("docker.log_max_size", Kind::Str, "\"10m\"", "json-file log size at which Docker rotates a job container's log (`max-size`)"),
    ("docker.log_max_files", Kind::Int, "3", "rotated log files Docker keeps per job container (`max-file`)"),
    ("jobs.max_log_bytes", Kind::Int, "8388608", "bytes of a finished job's log the offloader reads and keeps (the first and the last half; the middle is replaced by a marker)"),
    ("docker.tmpfs_size_mb", Kind::Int, "1024", "size of each tmpfs when docker.data_mount = \"tmpfs\""),
    ("runners.recording.image", Kind::Str, "\"calls-recorder:latest\"", "default image of recording jobs"),
    ("runners.recording.max_duration", Kind::Str, "\"6h\"", "default and largest max duration of recording jobs"),
    ("runners.recording.image_allowlist", Kind::List, "[]", "further images recording jobs may name as runner"),
    ("runners.recording.foreign_runners", Kind::List, "[]", "image patterns (`*` matches any run of characters) of other programs recording jobs may run, e.g. Mattermost's `[\"mattermost/calls-recorder:v*\"]` (docs/mattermost.md); their jobs accept `foreign_input_keys` instead of this project's recorder inputs"),
    ("runners.recording.foreign_input_keys", Kind::List, "[\"site_url\", \"call_id\", \"post_id\", \"thread_id\", \"recording_id\", \"auth_token\", \"width\", \"height\", \"video_rate\", \"audio_rate\", \"frame_rate\", \"video_preset\", \"output_format\"]", "the only `input_data` keys a recording job running a foreign runner may have (default: what Mattermost's calls-recorder reads)"),
    ("runners.recording.cpus", Kind::Float, "1.0", "CPU limit of a recording container (0 = none)"),
    ("runners.recording.memory_mb", Kind::Int, "2048", "memory limit of a recording container (0 = none)"),
    ("runners.transcribing.image", Kind::Str, "\"calls-transcriber:latest\"", "default image of transcribing jobs"),
    ("runners.transcribing.max_duration", Kind::Str, "\"2h\"", "default and largest max duration of transcribing jobs"),
    ("runners.transcribing.image_allowlist", Kind::List, "[]", "further images transcribing jobs may name as runner"),
    ("runners.transcribing.foreign_runners", Kind::List, "[]", "image patterns of other programs transcribing jobs may run, e.g. `[\"mattermost/calls-transcriber:v*\"]`; their jobs accept `foreign_input_keys`"),
    ("runners.transcribing.foreign_input_keys", Kind::List, "[\"site_url\", \"call_id\", \"post_id\", \"auth_token\", \"transcription_id\", \"transcribe_api\", \"transcribe_api_options\", \"model_size\", \"output_format\", \"num_threads\", \"live_captions_on\", \"live_captions_model_size\", \"live_captions_num_transcribers\", \"live_captions_num_threads_per_transcriber\", \"live_captions_language\", \"webvtt_omit_speaker\", \"text_compact_silence_threshold_ms\", \"text_compact_max_segment_duration_ms\"]", "the only `input_data` keys a transcribing job running a foreign runner may have (default: what Mattermost's calls-transcriber reads)"),
    ("runners.transcribing.cpus", Kind::Float, "2.0", "CPU limit of a transcribing container (0 = none)"),
    ("runners.transcribing.memory_mb", Kind::Int, "4096", "memory limit of a transcribing container (0 = none)"),
    ("webhooks.max_attempts", Kind::Int, "5", "delivery attempts per webhook call"),
    ("webhooks.initial_backoff", Kind::Str, "\"1s\"", "wait before the first retry; doubles each retry"),
    ("webhooks.timeout", Kind::Str, "\"10s\"", "timeout of one webhook request"),
    ("webhooks.allow_private", Kind::Bool, "false", "let webhooks reach loopback, private, link-local and reserved addresses (only for closed networks: otherwise a client could make the offloader call internal services)"),
];

/// The env var name of a dotted key: `jobs.max_concurrent` → `OFFLOADER_JOBS_MAX_CONCURRENT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The file as deserialized after [`KEYS`]' defaults, the file and the environment are merged:
/// every field is present (a key missing from all three takes its row's default), so nothing
/// below writes a default again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: RawApi,
    store: RawStore,
    jobs: RawJobs,
    docker: RawDocker,
    runners: RawRunners,
    webhooks: RawWebhooks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen_address: String,
    tls_cert_file: String,
    tls_key_file: String,
    admin_secret: Secret,
    self_registration: bool,
    token_ttl: String,
    max_json_body_bytes: u64,
    key_cache_ttl: String,
    header_read_timeout: String,
    body_read_timeout: String,
    max_connections: u64,
    max_connections_per_address: u64,
    write_timeout: String,
    max_tokens_per_client: u64,
    max_key_verifications: u64,
    auth_failure_limit: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    data_dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    max_concurrent: u64,
    max_queue_length: u64,
    client_queue_share: f64,
    client_run_share: f64,
    max_jobs_per_client: u64,
    max_input_bytes: u64,
    max_artifacts_per_job: u64,
    max_job_artifact_bytes: u64,
    stop_grace_period: String,
    failed_job_retention: String,
    finished_job_retention: String,
    sweep_interval: String,
    max_artifact_bytes: u64,
    max_log_bytes: u64,
    image_allowlist: Vec<String>,
    offloader_url: String,
    ca_cert_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    mode: String,
    swarm_constraints: Vec<String>,
    swarm_start_timeout: String,
    network: String,
    read_only_rootfs: bool,
    data_mount: String,
    tmpfs_size_mb: u64,
    pids_limit: u64,
    log_max_size: String,
    log_max_files: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunners {
    recording: RawRunner,
    transcribing: RawRunner,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunner {
    image: String,
    image_allowlist: Vec<String>,
    foreign_runners: Vec<String>,
    foreign_input_keys: Vec<String>,
    max_duration: String,
    cpus: f64,
    memory_mb: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    max_attempts: u64,
    initial_backoff: String,
    timeout: String,
    allow_private: bool,
}

/// Where jobs run (`docker.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerMode {
    /// One container per job on the engine the offloader talks to.
    Engine,
    /// One `replicated-job` service per job on the swarm that engine manages.
    Swarm,
}

impl DockerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DockerMode::Engine => "engine",
            DockerMode::Swarm => "swarm",
        }
    }
}

/// What `/data` inside a job container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMount {
    Volume,
    Tmpfs,
}

/// Image and limits of one job type.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    pub image: String,
    /// Further images jobs of this type may run.
    pub image_allowlist: Vec<String>,
    /// Image patterns (`*` wildcards) of other programs jobs of this type may run.
    pub foreign_runners: Vec<String>,
    /// The `input_data` keys (as written, compared case-insensitively) such jobs accept.
    pub foreign_input_keys: Vec<String>,
    pub max_duration: Duration,
    pub cpus: f64,
    pub memory_mb: u64,
}

/// The validated configuration, one struct per file section.
#[derive(Debug, Clone)]
pub struct Config {
    pub api: ApiConfig,
    /// `store.data_dir`: SQLite store, logs and artifacts.
    pub data_dir: PathBuf,
    pub jobs: JobsConfig,
    pub docker: DockerConfig,
    pub runners: BTreeMap<JobType, RunnerConfig>,
    pub webhooks: WebhooksConfig,
}

/// `[api]`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen_address: SocketAddr,
    /// Serve the API over TLS with these files.
    pub tls: Option<calls_tls::CertFiles>,
    pub admin_secret: Option<Secret>,
    pub self_registration: bool,
    pub token_ttl: Duration,
    pub max_json_body_bytes: usize,
    pub key_cache_ttl: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// How long a response write may make no progress before the connection is closed.
    pub write_timeout: Duration,
    pub max_tokens_per_client: usize,
    pub max_key_verifications: usize,
    pub auth_failure_limit: u32,
}

/// `[jobs]`.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// PEM of `jobs.ca_cert_file`, read (and checked) at start, handed to jobs.
    pub job_ca_cert_pem: Option<String>,
    pub max_concurrent: usize,
    pub max_queue_length: usize,
    /// Queued places one client may hold (from `jobs.client_queue_share`).
    pub max_queue_per_client: usize,
    /// Run slots one client holds before others' queued jobs go first (from
    /// `jobs.client_run_share`).
    pub max_running_per_client: usize,
    pub max_jobs_per_client: usize,
    pub max_input_bytes: usize,
    pub max_artifacts_per_job: usize,
    pub max_job_artifact_bytes: u64,
    pub stop_grace_period: Duration,
    pub failed_job_retention: Duration,
    pub finished_job_retention: Duration,
    pub sweep_interval: Duration,
    pub max_artifact_bytes: u64,
    pub max_log_bytes: usize,
    pub image_allowlist: Vec<String>,
    pub offloader_url: String,
}

/// `[docker]`.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub mode: DockerMode,
    /// Placement constraints of job services (swarm mode).
    pub swarm_constraints: Vec<String>,
    /// How long a job's task may take to start (swarm mode).
    pub swarm_start_timeout: Duration,
    pub network: String,
    pub read_only_rootfs: bool,
    pub data_mount: DataMount,
    pub tmpfs_size_mb: u64,
    pub pids_limit: u64,
    pub log_max_size: String,
    pub log_max_files: u64,
}

/// `[webhooks]`.
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub timeout: Duration,
    pub allow_private: bool,
}

impl Config {
    /// Parses `toml_text` (may be empty), applies the `OFFLOADER_*` pairs of `env` and validates.
    pub fn load(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let file: toml::Table = toml::from_str(toml_text)
            .map_err(|e| Error::Config(format!("config file: {}", e.message())))?;
        let mut value = defaults();
        merge(&mut value, file);
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((key, kind, _, _)) = KEYS.iter().find(|(k, ..)| env_name(k) == name) else {
                return Err(Error::Config(format!(
                    "unknown environment override {name} (OFFLOADER_{rest} matches no setting)"
                )));
            };
            set_path(&mut value, key, parse_env(&name, &raw, *kind)?);
        }
        let raw = RawConfig::deserialize(toml::Value::Table(value))
            .map_err(|e| Error::Config(e.message().to_string()))?;
        validate(raw)
    }

    /// The runner settings of a job type (every type has one: validation fills them all).
    pub fn runner(&self, job_type: JobType) -> &RunnerConfig {
        self.runners
            .get(&job_type)
            .expect("validate() inserts a runner for every JobType")
    }

    /// True when `image` may run as some job type (`POST /jobs/init`).
    pub fn image_allowed(&self, image: &str) -> bool {
        JobType::ALL
            .iter()
            .any(|job_type| self.image_allowed_for(*job_type, image))
    }

    /// True when a job of `job_type` may run `image`: its type's image or allowlist, the
    /// allowlist of every type, or one of its type's foreign runner patterns. Another type's
    /// default image is not enough.
    pub fn image_allowed_for(&self, job_type: JobType, image: &str) -> bool {
        let runner = self.runner(job_type);
        runner.image == image
            || runner.image_allowlist.iter().any(|i| i == image)
            || self.jobs.image_allowlist.iter().any(|i| i == image)
            || self.is_foreign_runner(job_type, image)
    }

    /// True when `image` matches one of `job_type`'s foreign runner patterns: its jobs get the
    /// operator's `foreign_input_keys` instead of this project's inputs.
    pub fn is_foreign_runner(&self, job_type: JobType, image: &str) -> bool {
        self.runner(job_type)
            .foreign_runners
            .iter()
            .any(|pattern| matches_pattern(pattern, image))
    }

    /// True when a job of `job_type` running `image` may be given the input `key`: for a
    /// foreign runner, a key of its `foreign_input_keys`; else an input of this project's job
    /// binary of that type (`job_env::input_names`). Compared case-insensitively, as keys become
    /// upper-cased environment names.
    pub fn input_key_allowed(&self, job_type: JobType, image: &str, key: &str) -> bool {
        if self.is_foreign_runner(job_type, image) {
            self.runner(job_type)
                .foreign_input_keys
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(key))
        } else {
            calls_protocol::job_env::is_input_of(job_type, key)
        }
    }

    /// Every image the offloader may run (defaults first, then the allowlist), deduplicated.
    pub fn all_images(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for image in self
            .runners
            .values()
            .flat_map(|r| std::iter::once(&r.image).chain(r.image_allowlist.iter()))
            .chain(self.jobs.image_allowlist.iter())
        {
            if !out.contains(image) {
                out.push(image.clone());
            }
        }
        out
    }
}

/// Glob match where `*` stands for any run of characters (none included) and everything else
/// for itself: `mattermost/calls-recorder:v*` matches `mattermost/calls-recorder:v0.8.5`.
pub fn matches_pattern(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        // No `*`: the whole text must equal the pattern.
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A table of every [`KEYS`] row's default, the base the file and the environment are merged on.
fn defaults() -> toml::Table {
    let mut table = toml::Table::new();
    for (key, _, default, _) in KEYS {
        // Every default is a TOML value: `defaults_are_toml_values_that_validate` checks each row.
        let value = toml::from_str::<toml::Table>(&format!("v = {default}"))
            .ok()
            .and_then(|mut row| row.remove("v"))
            .unwrap_or_else(|| toml::Value::String((*default).to_string()));
        set_path(&mut table, key, value);
    }
    table
}

/// Lays `overlay` over `base`: tables merge key by key, any other value replaces. Keys `base` lacks
/// are kept, so an unknown key in the file still reaches `deny_unknown_fields`.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(overlay)) => merge(inner, overlay),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts
        .pop()
        .expect("KEYS entries are non-empty dotted paths");
    let mut cursor = table;
    for part in parts {
        let entry = cursor
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        cursor = entry
            .as_table_mut()
            .expect("entry was just made a table when it was not one");
    }
    cursor.insert(last.to_string(), value);
}

fn parse_env(name: &str, raw: &str, kind: Kind) -> Result<toml::Value> {
    let bad = |what: &str| Error::Config(format!("{name}={raw:?} is not {what}"));
    Ok(match kind {
        Kind::Str => toml::Value::String(raw.to_string()),
        Kind::Int => toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
        Kind::Float => toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
        Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => toml::Value::Boolean(true),
            "false" | "0" | "no" => toml::Value::Boolean(false),
            _ => return Err(bad("a boolean (true/false)")),
        },
        Kind::List => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}

fn duration(key: &str, text: &str) -> Result<Duration> {
    parse_duration(text).map_err(|e| Error::Config(format!("{key} = {text:?}: {e}")))
}

/// A timeout of at least 100 ms (shorter ones would close every connection).
fn timeout(key: &str, text: &str) -> Result<Duration> {
    Ok(duration(key, text)?.max(Duration::from_millis(100)))
}

fn positive(key: &str, value: u64) -> Result<u64> {
    if value == 0 {
        return Err(Error::Config(format!("{key} must be at least 1")));
    }
    Ok(value)
}

/// A count of at least 1, capped at `max` (a larger one would only waste memory).
fn count(key: &str, value: u64, max: u64) -> Result<usize> {
    Ok(positive(key, value)?.min(max) as usize)
}

/// A fraction in (0, 1].
fn share(key: &str, value: f64) -> Result<f64> {
    if !(value > 0.0 && value <= 1.0) {
        return Err(Error::Config(format!(
            "{key} = {value} must be above 0 and at most 1"
        )));
    }
    Ok(value)
}

/// Every entry of a list setting a Docker image reference.
fn image_references(key: &str, images: &[String]) -> Result<()> {
    match images
        .iter()
        .find(|i| !crate::image_ref::is_valid_reference(i))
    {
        Some(bad) => Err(Error::Config(format!(
            "{key} entry {bad:?} is not a Docker image reference (name[:tag][@digest])"
        ))),
        None => Ok(()),
    }
}

/// Both TLS files or neither (they are read when the server starts).
fn tls_files(cert: String, key: String) -> Result<Option<calls_tls::CertFiles>> {
    let given = |value: String| {
        Some(value)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    };
    match (given(cert), given(key)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(calls_tls::CertFiles { cert, key })),
        (Some(_), None) => Err(Error::Config(
            "api.tls_key_file is required when api.tls_cert_file is set".into(),
        )),
        (None, Some(_)) => Err(Error::Config(
            "api.tls_cert_file is required when api.tls_key_file is set".into(),
        )),
    }
}

/// The PEM of `jobs.ca_cert_file`, checked to hold certificates; an error names the file.
fn job_ca_cert(path: String) -> Result<Option<String>> {
    if path.trim().is_empty() {
        return Ok(None);
    }
    calls_tls::read_certificates("jobs.ca_cert_file certificate", std::path::Path::new(&path))
        .map_err(|error| Error::Config(error.to_string()))?;
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|error| Error::Config(format!("cannot read jobs.ca_cert_file {path}: {error}")))
}

fn validate(raw: RawConfig) -> Result<Config> {
    Ok(Config {
        api: api(raw.api)?,
        data_dir: data_dir(raw.store)?,
        jobs: jobs(raw.jobs)?,
        docker: docker(raw.docker)?,
        runners: BTreeMap::from([
            (
                JobType::Recording,
                runner(JobType::Recording, raw.runners.recording)?,
            ),
            (
                JobType::Transcribing,
                runner(JobType::Transcribing, raw.runners.transcribing)?,
            ),
        ]),
        webhooks: WebhooksConfig {
            max_attempts: positive("webhooks.max_attempts", raw.webhooks.max_attempts)?.min(100)
                as u32,
            initial_backoff: duration("webhooks.initial_backoff", &raw.webhooks.initial_backoff)?,
            timeout: duration("webhooks.timeout", &raw.webhooks.timeout)?,
            allow_private: raw.webhooks.allow_private,
        },
    })
}

fn api(raw: RawApi) -> Result<ApiConfig> {
    let listen_text = raw.listen_address;
    let listen_address = listen_text.parse().map_err(|_| {
        Error::Config(format!(
            "api.listen_address = {listen_text:?} is not an address like \"0.0.0.0:4545\""
        ))
    })?;
    let admin_secret = Some(raw.admin_secret).filter(|s| !s.is_empty());
    if admin_secret.as_ref().is_some_and(|s| s.char_count() < 32) {
        return Err(Error::Config(
            "api.admin_secret must be at least 32 characters (or empty to disable)".into(),
        ));
    }
    Ok(ApiConfig {
        listen_address,
        tls: tls_files(raw.tls_cert_file, raw.tls_key_file)?,
        admin_secret,
        self_registration: raw.self_registration,
        token_ttl: duration("api.token_ttl", &raw.token_ttl)?,
        max_json_body_bytes: count("api.max_json_body_bytes", raw.max_json_body_bytes, u64::MAX)?,
        key_cache_ttl: duration("api.key_cache_ttl", &raw.key_cache_ttl)?,
        header_read_timeout: timeout("api.header_read_timeout", &raw.header_read_timeout)?,
        body_read_timeout: timeout("api.body_read_timeout", &raw.body_read_timeout)?,
        max_connections: count("api.max_connections", raw.max_connections, 1_000_000)?,
        max_connections_per_address: count(
            "api.max_connections_per_address",
            raw.max_connections_per_address,
            1_000_000,
        )?,
        write_timeout: timeout("api.write_timeout", &raw.write_timeout)?,
        max_tokens_per_client: count(
            "api.max_tokens_per_client",
            raw.max_tokens_per_client,
            1_000_000,
        )?,
        max_key_verifications: count("api.max_key_verifications", raw.max_key_verifications, 256)?,
        auth_failure_limit: count("api.auth_failure_limit", raw.auth_failure_limit, 1_000_000)?
            as u32,
    })
}

fn data_dir(raw: RawStore) -> Result<PathBuf> {
    let data_dir = PathBuf::from(raw.data_dir);
    if !data_dir.is_absolute() {
        return Err(Error::Config(format!(
            "store.data_dir = {:?} must be an absolute path",
            data_dir.display()
        )));
    }
    Ok(data_dir)
}

fn jobs(raw: RawJobs) -> Result<JobsConfig> {
    let offloader_url = raw.offloader_url;
    if !(offloader_url.starts_with("http://") || offloader_url.starts_with("https://")) {
        return Err(Error::Config(format!(
            "jobs.offloader_url = {offloader_url:?} must start with http:// or https://"
        )));
    }
    image_references("jobs.image_allowlist", &raw.image_allowlist)?;
    let max_concurrent = count("jobs.max_concurrent", raw.max_concurrent, 10_000)?;
    let max_queue_length = raw.max_queue_length.min(1_000_000) as usize;
    let queue_share = share("jobs.client_queue_share", raw.client_queue_share)?;
    let run_share = share("jobs.client_run_share", raw.client_run_share)?;
    Ok(JobsConfig {
        job_ca_cert_pem: job_ca_cert(raw.ca_cert_file)?,
        max_concurrent,
        max_queue_length,
        max_queue_per_client: ((max_queue_length as f64 * queue_share).ceil() as usize).max(1),
        max_running_per_client: ((max_concurrent as f64 * run_share).ceil() as usize).max(1),
        max_jobs_per_client: count(
            "jobs.max_jobs_per_client",
            raw.max_jobs_per_client,
            10_000_000,
        )?,
        max_input_bytes: count("jobs.max_input_bytes", raw.max_input_bytes, 64 << 20)?,
        max_artifacts_per_job: count(
            "jobs.max_artifacts_per_job",
            raw.max_artifacts_per_job,
            100_000,
        )?,
        max_job_artifact_bytes: positive(
            "jobs.max_job_artifact_bytes",
            raw.max_job_artifact_bytes,
        )?,
        stop_grace_period: duration("jobs.stop_grace_period", &raw.stop_grace_period)?,
        failed_job_retention: duration("jobs.failed_job_retention", &raw.failed_job_retention)?,
        finished_job_retention: duration(
            "jobs.finished_job_retention",
            &raw.finished_job_retention,
        )?,
        sweep_interval: timeout("jobs.sweep_interval", &raw.sweep_interval)?,
        max_artifact_bytes: positive("jobs.max_artifact_bytes", raw.max_artifact_bytes)?,
        max_log_bytes: positive("jobs.max_log_bytes", raw.max_log_bytes)?.clamp(64, 1 << 30)
            as usize,
        image_allowlist: raw.image_allowlist,
        offloader_url: offloader_url.trim_end_matches('/').to_string(),
    })
}

fn docker(raw: RawDocker) -> Result<DockerConfig> {
    let mode = match raw.mode.as_str() {
        "engine" => DockerMode::Engine,
        "swarm" => DockerMode::Swarm,
        other => {
            return Err(Error::Config(format!(
                "docker.mode = {other:?} must be \"engine\" or \"swarm\""
            )))
        }
    };
    if let Some(bad) = raw
        .swarm_constraints
        .iter()
        .find(|c| !(c.contains("==") || c.contains("!=")))
    {
        return Err(Error::Config(format!(
            "docker.swarm_constraints entry {bad:?} is not a constraint like \"node.labels.calls-jobs==true\""
        )));
    }
    if raw.network.trim().is_empty() {
        return Err(Error::Config("docker.network must not be empty".into()));
    }
    let data_mount = match raw.data_mount.as_str() {
        "volume" => DataMount::Volume,
        "tmpfs" => DataMount::Tmpfs,
        other => {
            return Err(Error::Config(format!(
                "docker.data_mount = {other:?} must be \"volume\" or \"tmpfs\""
            )))
        }
    };
    let log_max_size = raw.log_max_size;
    let size_ok = log_max_size
        .strip_suffix(['k', 'm', 'g'])
        .unwrap_or(&log_max_size)
        .parse::<u64>()
        .is_ok_and(|n| n > 0);
    if !size_ok {
        return Err(Error::Config(format!(
            "docker.log_max_size = {log_max_size:?} must be a size like \"10m\" (k, m or g)"
        )));
    }
    Ok(DockerConfig {
        mode,
        swarm_constraints: raw.swarm_constraints,
        swarm_start_timeout: duration("docker.swarm_start_timeout", &raw.swarm_start_timeout)?
            .max(Duration::from_secs(1)),
        network: raw.network,
        read_only_rootfs: raw.read_only_rootfs,
        data_mount,
        tmpfs_size_mb: positive("docker.tmpfs_size_mb", raw.tmpfs_size_mb)?,
        pids_limit: raw.pids_limit,
        log_max_size,
        log_max_files: positive("docker.log_max_files", raw.log_max_files)?.min(100),
    })
}

fn runner(job_type: JobType, raw: RawRunner) -> Result<RunnerConfig> {
    let prefix = format!("runners.{job_type}");
    if !crate::image_ref::is_valid_reference(&raw.image) {
        return Err(Error::Config(format!(
            "{prefix}.image = {:?} is not a Docker image reference (name[:tag][@digest])",
            raw.image
        )));
    }
    image_references(&format!("{prefix}.image_allowlist"), &raw.image_allowlist)?;
    if let Some(bad) = raw
        .foreign_runners
        .iter()
        .find(|p| p.trim().is_empty() || p.chars().all(|c| c == '*'))
    {
        return Err(Error::Config(format!(
            "{prefix}.foreign_runners entry {bad:?} would allow any image: name the images, e.g. \"mattermost/calls-recorder:v*\""
        )));
    }
    if let Some(bad) = raw.foreign_input_keys.iter().find(|k| {
        let reserved = calls_protocol::job_env::RESERVED
            .contains(&calls_protocol::job_env::env_name(k).as_str());
        reserved
            || k.is_empty()
            || k.starts_with(|c: char| c.is_ascii_digit())
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        return Err(Error::Config(format!(
            "{prefix}.foreign_input_keys entry {bad:?} is not an environment name ([A-Za-z_][A-Za-z0-9_]*) the offloader leaves to jobs"
        )));
    }
    let max_duration = duration(&format!("{prefix}.max_duration"), &raw.max_duration)?;
    if max_duration < Duration::from_secs(1) {
        return Err(Error::Config(format!(
            "{prefix}.max_duration must be at least 1s"
        )));
    }
    if !(0.0..=1024.0).contains(&raw.cpus) {
        return Err(Error::Config(format!(
            "{prefix}.cpus = {} must be between 0 and 1024",
            raw.cpus
        )));
    }
    if raw.memory_mb != 0 && raw.memory_mb < 6 {
        return Err(Error::Config(format!(
            "{prefix}.memory_mb = {} is below Docker's 6 MB minimum (0 = no limit)",
            raw.memory_mb
        )));
    }
    Ok(RunnerConfig {
        image: raw.image,
        image_allowlist: raw.image_allowlist,
        foreign_runners: raw.foreign_runners,
        foreign_input_keys: raw.foreign_input_keys,
        max_duration,
        cpus: raw.cpus,
        memory_mb: raw.memory_mb,
    })
}

#[cfg(test)]
mod tests;
