//! Starts the real `calls-offloader` binary as a child process and talks to it over HTTP like any
//! client would. Each [`Offloader`] has its own data directory, port and log file, runs jobs from
//! `calls-test-job:latest`, and on drop kills the process and removes every container of the
//! clients it registered, so a failing test leaves nothing behind.
//!
//! The API listens on the Docker bridge address (not on every interface), which is both where the
//! test talks to it and where job containers reach it (`OFFLOADER_URL`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use calls_protocol::jobs::{
    CreateJobRequest, JobType, LoginResponse, RegisterRequest, WebhookConfig,
};

pub use crate::client::{Auth, Client, Reply};
use crate::docker;
pub use crate::swarm::Mode;
use crate::swarm::{self, SwarmSession};

/// The admin secret every test offloader is configured with.
pub const ADMIN_SECRET: &str = "e2e-admin-secret-for-tests-only-0123456789";
/// The image the test offloaders run for every job type.
/// The test job's image (`calls-test-job:$TAG`, see `docker::image`).
pub fn test_job_image() -> String {
    crate::docker::image("test-job")
}

/// The `input_data` keys the test offloaders accept for jobs running the test job: its own
/// inputs (see `test_job`) and the few the tests add as markers or fake secrets. The offloader
/// treats the test job as a foreign runner (`runners.<type>.foreign_runners`), so these replace
/// the recorder's and transcriber's inputs for it.
pub const TEST_JOB_INPUT_KEYS: &[&str] = &[
    "behaviour",
    "sleep_seconds",
    "artifact_bytes",
    "artifact_name",
    "artifact_seed",
    "data_dir",
    "exit_code",
    "final_exit_code",
    "hog_mb",
    "call_id",
    "bot_token",
    "index",
    "padding",
];

/// Settings a test may change; everything is passed as `OFFLOADER_*` environment overrides.
#[derive(Debug, Clone)]
pub struct OffloaderSettings {
    pub max_concurrent: u32,
    pub max_queue_length: u32,
    /// Default and largest max duration of both job types (`"60s"` style).
    pub max_duration: String,
    pub stop_grace_period: String,
    pub failed_job_retention: String,
    pub finished_job_retention: String,
    pub sweep_interval: String,
    pub max_json_body_bytes: u64,
    pub max_artifact_bytes: u64,
    /// Memory limit of job containers (both types).
    pub memory_mb: u64,
    /// Images a job may name as `runner` besides the per-type images.
    pub image_allowlist: Vec<String>,
    /// The per-type images (the recorder's end-to-end tests run `calls-recorder:latest`).
    pub recording_image: String,
    pub transcribing_image: String,
    /// Where jobs run (`docker.mode`); swarm mode joins a single-node swarm on this engine.
    pub mode: Mode,
    /// Further `OFFLOADER_*` overrides (full variable names), applied last.
    pub extra_env: Vec<(String, String)>,
    /// Serve the API over HTTPS with these files, and hand jobs their CA.
    pub tls: Option<TestTls>,
}

/// A local CA and a server certificate for the test stack's address, as files (removed on drop).
#[derive(Debug, Clone)]
pub struct TestTls {
    /// The CA certificate (PEM), trusted by the test's clients and handed to jobs.
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

impl TestTls {
    /// A CA and a certificate for `names` (DNS names or IP addresses), valid for a day.
    pub fn new(names: &[String]) -> anyhow::Result<TestTls> {
        let dir = tempfile::tempdir().context("cannot create the certificate directory")?;
        calls_tls::local_ca::write_stack_certificates(
            dir.path(),
            names,
            std::time::SystemTime::now(),
        )
        .context("cannot make the test certificates")?;
        let ca_file = dir.path().join(calls_tls::local_ca::CA_CERT_FILE);
        Ok(TestTls {
            ca_pem: std::fs::read_to_string(&ca_file).context("the CA reads back")?,
            ca_file,
            cert_file: dir.path().join(calls_tls::local_ca::SERVER_CERT_FILE),
            key_file: dir.path().join(calls_tls::local_ca::SERVER_KEY_FILE),
            _dir: Arc::new(dir),
        })
    }
}

impl Default for OffloaderSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_queue_length: 50,
            max_duration: "120s".into(),
            stop_grace_period: "3s".into(),
            failed_job_retention: "1h".into(),
            finished_job_retention: "1h".into(),
            sweep_interval: "1s".into(),
            max_json_body_bytes: 64 * 1024,
            max_artifact_bytes: 64 * 1024 * 1024,
            memory_mb: 256,
            image_allowlist: Vec::new(),
            recording_image: test_job_image(),
            transcribing_image: test_job_image(),
            mode: Mode::Engine,
            extra_env: Vec::new(),
            tls: None,
        }
    }
}

impl OffloaderSettings {
    /// The settings that run the transcriber image (`TAG`-aware): transcription happens between SIGTERM
    /// and SIGKILL when a job is stopped through the API, and on a shared 2-core machine under load whisper
    /// runs many times slower than real time, so the grace period and the max duration are generous.
    pub fn transcriber() -> Self {
        Self {
            transcribing_image: crate::docker::image("transcriber"),
            stop_grace_period: "900s".into(),
            memory_mb: 2048,
            max_duration: "1200s".into(),
            ..Self::default()
        }
    }
}

/// Directory of the binaries cargo built for this run (`<target>/<profile>`), found from the
/// running executable: a test (`<target>/<profile>/deps/<test>-<hash>`) or a binary of this
/// package (`<target>/<profile>/offloader-bench`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let dir = exe
        .parent()
        .context("the executable has no parent directory")?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        return dir
            .parent()
            .map(Path::to_path_buf)
            .context("deps/ has no parent directory");
    }
    Ok(dir.to_path_buf())
}

/// The offloader binary: `$CALLS_OFFLOADER_BIN`, else `calls-offloader` in [`bin_dir`].
pub fn offloader_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CALLS_OFFLOADER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = bin_dir()?.join("calls-offloader");
    if !path.is_file() {
        bail!(
            "{} is missing: build it first with `cargo build -p calls-offloader` (same CARGO_TARGET_DIR and profile)",
            path.display()
        );
    }
    Ok(path)
}

/// A running (or killed) offloader process with its data directory.
pub struct Offloader {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    log_path: PathBuf,
    listen: String,
    pub settings: OffloaderSettings,
    http: reqwest::Client,
    transcript: Arc<Mutex<Vec<String>>>,
    client_ids: Mutex<Vec<String>>,
    tag: String,
    /// Held while a swarm-mode offloader lives (declared last: dropped after the cleanup).
    _swarm: Option<SwarmSession>,
}

impl Offloader {
    /// Builds the test job image if needed, then starts an offloader on a free port of the bridge
    /// address; `tag` names the test in client ids, so containers are traceable to it.
    pub async fn start(tag: &str, settings: OffloaderSettings) -> anyhow::Result<Self> {
        docker::ensure_test_job_image(&bin_dir()?)?;
        let swarm = match settings.mode {
            Mode::Engine => None,
            Mode::Swarm => Some(
                tokio::task::spawn_blocking(SwarmSession::join)
                    .await
                    .context("the swarm join task panicked")??,
            ),
        };
        let gateway = docker::bridge_gateway();
        let port = TcpListener::bind((gateway.as_str(), 0))
            .with_context(|| format!("cannot bind {gateway}:0 (is docker0 up?)"))?
            .local_addr()
            .context("bound socket has an address")?
            .port();
        let data_dir = tempfile::Builder::new()
            .prefix("calls-offloader-e2e-")
            .tempdir()
            .context("cannot create the data directory")?;
        let log_path = data_dir.path().join("offloader.log");
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(tls) = &settings.tls {
            http = http.add_root_certificate(
                reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).context("the test CA")?,
            );
        }
        let http = http.build().context("cannot build the HTTP client")?;
        let mut offloader = Self {
            child: None,
            log_path,
            listen: format!("{gateway}:{port}"),
            data_dir,
            settings,
            http,
            transcript: Arc::default(),
            client_ids: Mutex::default(),
            tag: tag.to_owned(),
            _swarm: swarm,
        };
        offloader.spawn().await?;
        Ok(offloader)
    }

    /// `http://<bridge address>:<port>` (`https://` with [`OffloaderSettings::tls`]).
    pub fn base_url(&self) -> String {
        let scheme = if self.settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.listen)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Everything the offloader wrote to stdout and stderr, across restarts.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every answer body any client of this offloader received.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript
            .lock()
            .expect("transcript lock is never held across a panic")
            .clone()
    }

    fn env(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        // Every image a test names stands for the test job, whose inputs are its own.
        let test_job_runners = std::iter::once(test_job_image())
            .chain(s.image_allowlist.iter().cloned())
            .collect::<Vec<_>>()
            .join(",");
        let mut env: Vec<(String, String)> = vec![
            ("API_LISTEN_ADDRESS", self.listen.clone()),
            ("API_ADMIN_SECRET", ADMIN_SECRET.to_owned()),
            ("API_SELF_REGISTRATION", "false".to_owned()),
            ("API_MAX_JSON_BODY_BYTES", s.max_json_body_bytes.to_string()),
            (
                "STORE_DATA_DIR",
                self.data_dir().join("store").display().to_string(),
            ),
            ("JOBS_MAX_CONCURRENT", s.max_concurrent.to_string()),
            ("JOBS_MAX_QUEUE_LENGTH", s.max_queue_length.to_string()),
            ("JOBS_STOP_GRACE_PERIOD", s.stop_grace_period.clone()),
            ("JOBS_FAILED_JOB_RETENTION", s.failed_job_retention.clone()),
            (
                "JOBS_FINISHED_JOB_RETENTION",
                s.finished_job_retention.clone(),
            ),
            ("JOBS_SWEEP_INTERVAL", s.sweep_interval.clone()),
            ("JOBS_MAX_ARTIFACT_BYTES", s.max_artifact_bytes.to_string()),
            ("JOBS_OFFLOADER_URL", self.base_url()),
            ("DOCKER_NETWORK", "bridge".to_owned()),
            ("DOCKER_MODE", s.mode.as_str().to_owned()),
            ("RUNNERS_RECORDING_IMAGE", s.recording_image.clone()),
            ("RUNNERS_RECORDING_MAX_DURATION", s.max_duration.clone()),
            ("RUNNERS_RECORDING_MEMORY_MB", s.memory_mb.to_string()),
            ("RUNNERS_TRANSCRIBING_IMAGE", s.transcribing_image.clone()),
            ("RUNNERS_TRANSCRIBING_MAX_DURATION", s.max_duration.clone()),
            ("RUNNERS_TRANSCRIBING_MEMORY_MB", s.memory_mb.to_string()),
            ("JOBS_IMAGE_ALLOWLIST", s.image_allowlist.join(",")),
            (
                "RUNNERS_RECORDING_FOREIGN_RUNNERS",
                test_job_runners.clone(),
            ),
            (
                "RUNNERS_RECORDING_FOREIGN_INPUT_KEYS",
                TEST_JOB_INPUT_KEYS.join(","),
            ),
            ("RUNNERS_TRANSCRIBING_FOREIGN_RUNNERS", test_job_runners),
            (
                "RUNNERS_TRANSCRIBING_FOREIGN_INPUT_KEYS",
                TEST_JOB_INPUT_KEYS.join(","),
            ),
            ("WEBHOOKS_INITIAL_BACKOFF", "200ms".to_owned()),
            ("WEBHOOKS_TIMEOUT", "5s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("OFFLOADER_{k}"), v))
        .collect();
        if let Some(tls) = &s.tls {
            for (name, path) in [
                ("OFFLOADER_API_TLS_CERT_FILE", &tls.cert_file),
                ("OFFLOADER_API_TLS_KEY_FILE", &tls.key_file),
                ("OFFLOADER_JOBS_CA_CERT_FILE", &tls.ca_file),
            ] {
                env.push((name.to_owned(), path.display().to_string()));
            }
        }
        env.extend(s.extra_env.iter().cloned());
        env.push(("RUST_LOG".into(), "info".into()));
        env
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = offloader_binary()?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("cannot open the offloader log")?;
        let log_err = log.try_clone().context("cannot duplicate the log handle")?;
        // A clean environment: stray OFFLOADER_* variables of the developer must not leak in.
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            command.env("DOCKER_HOST", host);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.child = Some(child);
        self.wait_healthy(Duration::from_secs(30)).await
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("cannot poll the offloader")? {
                    bail!(
                        "the offloader exited with {status} before it was healthy; its log:\n{}",
                        self.log_text()
                    );
                }
            }
            let healthy = self
                .http
                .get(format!("{}/healthz", self.base_url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the offloader was not healthy within {timeout:?}; its log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The offloader's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// (`VmRSS`, `VmHWM`) of the offloader process in KiB: resident now and the peak so far.
    pub fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.pid().context("the offloader is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("cannot read the offloader's /proc status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// The value of one sample of `/metrics`, e.g.
    /// `calls_offloader_auth_key_checks_total{outcome="cached"}`; 0 when it is not exported yet.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        let text = self.anonymous().get("/metrics").await?.text();
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0))
    }

    /// SIGKILL: no shutdown handler runs, like a crash or `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the binary again on the same port and data directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    /// An unauthenticated client.
    pub fn anonymous(&self) -> Client {
        self.client(Auth::None, String::new())
    }

    /// A client authenticated with the admin secret.
    pub fn admin(&self) -> Client {
        self.client(Auth::Bearer(ADMIN_SECRET.to_owned()), String::new())
    }

    fn client(&self, auth: Auth, client_id: String) -> Client {
        Client::new(
            self.http.clone(),
            self.base_url(),
            auth,
            client_id,
            Arc::clone(&self.transcript),
        )
    }

    /// Registers a new client (`e2e-<tag>-<name>-<unique>`) with the admin secret and logs it in;
    /// the returned client uses the bearer token. Its containers are removed when `self` drops.
    pub async fn register(&self, name: &str) -> anyhow::Result<Client> {
        self.register_with_webhook(name, None).await
    }

    /// [`Offloader::register`] with a webhook for the client's job state changes.
    pub async fn register_with_webhook(
        &self,
        name: &str,
        webhook: Option<WebhookConfig>,
    ) -> anyhow::Result<Client> {
        let (client_id, auth_key) = self.register_credentials(name, webhook).await?;
        let body = serde_json::json!({"clientID": client_id, "authKey": auth_key});
        let login: LoginResponse = self
            .anonymous()
            .post_json("/login", &body)
            .await?
            .ok_json()?;
        Ok(self.client(Auth::Bearer(login.bearer_token), client_id))
    }

    /// A client sending `client_id:auth_key` as Basic auth (right or wrong, registered or not).
    pub fn basic(&self, client_id: &str, auth_key: &str) -> Client {
        self.client(
            Auth::Basic {
                client_id: client_id.to_owned(),
                auth_key: auth_key.to_owned(),
            },
            client_id.to_owned(),
        )
    }

    /// A client sending `token` as a bearer token (a job's `JOB_TOKEN`, say).
    pub fn bearer(&self, token: &str) -> Client {
        self.client(Auth::Bearer(token.to_owned()), String::new())
    }

    /// Registers a new client that authenticates with Basic auth on every request.
    pub async fn register_basic(&self, name: &str) -> anyhow::Result<Client> {
        let (client_id, auth_key) = self.register_credentials(name, None).await?;
        Ok(self.client(
            Auth::Basic {
                client_id: client_id.clone(),
                auth_key,
            },
            client_id,
        ))
    }

    async fn register_credentials(
        &self,
        name: &str,
        webhook: Option<WebhookConfig>,
    ) -> anyhow::Result<(String, String)> {
        let client_id = format!("e2e-{}-{name}-{}", self.tag, unique());
        let auth_key = format!("key-{}-{}-0123456789abcdefghij", name, unique());
        self.client_ids
            .lock()
            .expect("client id lock is never held across a panic")
            .push(client_id.clone());
        let body = RegisterRequest {
            client_id: client_id.clone(),
            auth_key: auth_key.clone(),
            webhook,
        };
        let reply = self.admin().post_json("/register", &body).await?;
        if !reply.status.is_success() {
            bail!("register {client_id}: {} {}", reply.status, reply.text());
        }
        Ok((client_id, auth_key))
    }

    /// Registers `client_id` for cleanup: its containers are removed when `self` drops (for
    /// clients registered by other means than [`Offloader::register`]).
    pub fn track_client(&self, client_id: &str) {
        self.client_ids
            .lock()
            .expect("client id lock is never held across a panic")
            .push(client_id.to_owned());
    }

    /// The Docker label selecting the containers of `client`.
    pub fn label_of(client: &Client) -> String {
        format!("calls.client_id={}", client.client_id)
    }
}

impl Drop for Offloader {
    fn drop(&mut self) {
        self.kill();
        let ids = self
            .client_ids
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_default();
        let sweep = |ids: &[String]| {
            for id in ids {
                let label = format!("calls.client_id={id}");
                if self.settings.mode == Mode::Swarm {
                    swarm::remove_services_with_label(&label);
                }
                docker::remove_with_label(&label);
            }
        };
        sweep(&ids);
        if !ids.is_empty() {
            // A container the killed offloader was creating can land after the first sweep (dockerd
            // finishes a create whose caller died): one was left behind in `Created`. Sweep again once
            // dockerd has had time to finish it.
            std::thread::sleep(std::time::Duration::from_millis(500));
            sweep(&ids);
        }
    }
}

/// A value unique within this machine for a while: process id and a nanosecond clock.
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}{nanos:x}", std::process::id())
}

/// A `recording` job running `calls-test-job` with `behaviour` and extra input.
pub fn test_job(behaviour: &str, extra: &[(&str, serde_json::Value)]) -> CreateJobRequest {
    let mut input_data: BTreeMap<String, serde_json::Value> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    input_data.insert("behaviour".into(), behaviour.into());
    CreateJobRequest {
        job_type: JobType::Recording,
        runner: None,
        max_duration_sec: None,
        input_data,
    }
}

/// Tests that count containers or restart offloaders run one at a time within a test binary
/// (cargo runs test binaries one after another).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
