//! The program of `calls-test-job`, the tiny job image the offloader tests run. Its behaviour comes
//! from its environment (the offloader upper-cases `input_data` keys): `BEHAVIOUR` is one of
//! `exit0`, `exit1`, `sleep`, `upload`, `record`, `ignore_sigterm`, `hog_memory`;
//! `SLEEP_SECONDS`, `ARTIFACT_BYTES`, `ARTIFACT_NAME`, `ARTIFACT_SEED`, `DATA_DIR`, `EXIT_CODE`,
//! `FINAL_EXIT_CODE` and `HOG_MB` tune it. It talks to the offloader through the same job shell
//! as the recorder and the transcriber (`calls-job`: `POST /jobs/{id}/status` and
//! `PUT /jobs/{id}/artifacts/{name}` with the job's own bearer token), retrying for about 15 s
//! while the offloader is unreachable, because the offloader tests restart it under running jobs. It prints known lines to stdout and stderr so tests can find them in
//! `docker logs` and in failure reasons, and it never prints a secret input, only its digest.

use std::time::Duration;

use anyhow::{bail, Context};
use calls_job::settings::Settings;
use calls_job::{JobIdentity, OffloaderClient, RetryPolicy};
use calls_protocol::job_env;
use calls_protocol::jobs::{is_secret_field, JobStatusKind};
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};

use crate::artifact::ArtifactStream;

/// What the job does once it has reported `started`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Report progress and exit 0.
    Exit0,
    /// Print an explanation on stderr and exit with `EXIT_CODE` (default 1).
    Exit1,
    /// Tick once a second for `SLEEP_SECONDS`, then exit with `FINAL_EXIT_CODE` (default 0);
    /// SIGTERM ends it cleanly with 0.
    Sleep,
    /// Write `ARTIFACT_BYTES` deterministic bytes to `DATA_DIR/ARTIFACT_NAME`, upload them,
    /// report `finished` and exit 0.
    Upload,
    /// Like the recorder: tick until SIGTERM (or `SLEEP_SECONDS`), then deliver like `Upload`.
    Record,
    /// Allocate and touch `HOG_MB` MiB (to meet the container's memory limit), then exit 0.
    HogMemory,
    /// Like `Sleep`, but SIGTERM is logged and ignored, so only a kill ends it early.
    IgnoreSigterm,
}

impl Behaviour {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "exit0" => Behaviour::Exit0,
            "exit1" => Behaviour::Exit1,
            "sleep" => Behaviour::Sleep,
            "upload" => Behaviour::Upload,
            "record" => Behaviour::Record,
            "hog_memory" => Behaviour::HogMemory,
            "ignore_sigterm" => Behaviour::IgnoreSigterm,
            _ => return None,
        })
    }
}

/// Settings read from the environment.
#[derive(Debug, Clone)]
pub struct TestJobConfig {
    /// `JOB_ID`, `JOB_TOKEN`, `OFFLOADER_URL`.
    pub identity: JobIdentity,
    pub behaviour: Behaviour,
    pub sleep: Duration,
    pub artifact_bytes: u64,
    pub artifact_name: String,
    pub artifact_seed: u64,
    pub data_dir: std::path::PathBuf,
    pub exit_code: i32,
    pub final_exit_code: i32,
    pub hog_mb: u64,
}

impl TestJobConfig {
    /// Reads the settings through `get` (the process environment in production).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match get(name) {
                None => Ok(default),
                Some(text) => text
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={text:?} is not a whole number")),
            }
        };
        let behaviour_name = get("BEHAVIOUR").unwrap_or_else(|| "exit0".to_owned());
        let Some(behaviour) = Behaviour::parse(&behaviour_name) else {
            bail!(
                "unknown BEHAVIOUR {behaviour_name:?} (exit0, exit1, sleep, upload, record, ignore_sigterm, hog_memory)"
            );
        };
        let mut settings = Settings::new(&get);
        let identity = settings.identity();
        settings.finish()?;
        Ok(Self {
            identity,
            behaviour,
            sleep: Duration::from_secs(number("SLEEP_SECONDS", 3600)?),
            artifact_bytes: number("ARTIFACT_BYTES", 1024 * 1024)?,
            artifact_name: get("ARTIFACT_NAME").unwrap_or_else(|| "output.bin".to_owned()),
            artifact_seed: number("ARTIFACT_SEED", 1)?,
            data_dir: get("DATA_DIR").unwrap_or_else(|| "/data".to_owned()).into(),
            exit_code: i32::try_from(number("EXIT_CODE", 1)?).context("EXIT_CODE is too large")?,
            final_exit_code: i32::try_from(number("FINAL_EXIT_CODE", 0)?)
                .context("FINAL_EXIT_CODE is too large")?,
            hog_mb: number("HOG_MB", 1024)?,
        })
    }
}

/// The first 16 hex digits of the SHA-256 of `value`: enough to prove a secret arrived, useless to an attacker.
pub fn secret_digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..16].to_owned()
}

/// Runs the job; returns the process exit code.
pub async fn run(config: TestJobConfig) -> anyhow::Result<i32> {
    // Installed first: a stop that comes right after the container started (before the job reported
    // anything) must reach the job's handler, not end the process with the default action (exit 143).
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    let api = JobApi::new(&config)?;
    println!(
        "calls-test-job: job {} starting, behaviour {:?}",
        config.identity.job_id, config.behaviour
    );
    eprintln!(
        "calls-test-job: stderr is attached for job {}",
        config.identity.job_id
    );
    print_secret_digests();

    api.status(JobStatusKind::Started, Some("test job started"), 0.0)
        .await?;
    match config.behaviour {
        Behaviour::Exit0 => {
            api.status(JobStatusKind::Progress, Some("all work done"), 1.0)
                .await?;
            println!("calls-test-job: finished work, exiting 0");
            Ok(0)
        }
        Behaviour::Exit1 => {
            println!("calls-test-job: about to fail");
            eprintln!(
                "calls-test-job: failing on purpose with exit code {}",
                config.exit_code
            );
            Ok(config.exit_code)
        }
        Behaviour::Sleep => tick(&api, &config, &mut sigterm, true).await,
        Behaviour::IgnoreSigterm => tick(&api, &config, &mut sigterm, false).await,
        Behaviour::Upload => deliver(&api, &config).await,
        Behaviour::HogMemory => {
            println!("calls-test-job: allocating {} MiB", config.hog_mb);
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            for mib in 0..config.hog_mb {
                // Non-zero bytes so the pages are really committed.
                hoard.push(vec![1u8; 1024 * 1024]);
                if mib % 64 == 0 {
                    println!("calls-test-job: holding {mib} MiB");
                }
            }
            println!("calls-test-job: held {} MiB, exiting 0", hoard.len());
            Ok(0)
        }
        Behaviour::Record => {
            let code = tick(&api, &config, &mut sigterm, true).await?;
            if code != 0 {
                return Ok(code);
            }
            deliver(&api, &config).await
        }
    }
}

/// Writes the artifact to the data directory, uploads it, reports `finished`; returns 0.
async fn deliver(api: &JobApi, config: &TestJobConfig) -> anyhow::Result<i32> {
    let path = config.data_dir.join(&config.artifact_name);
    let sha = write_artifact(&path, config.artifact_bytes, config.artifact_seed)
        .with_context(|| format!("cannot write {}", path.display()))?;
    api.upload(&config.artifact_name, &path).await?;
    api.status(JobStatusKind::Finished, Some("artifact delivered"), 1.0)
        .await?;
    println!(
        "calls-test-job: uploaded {} ({} bytes, sha256 {sha})",
        config.artifact_name, config.artifact_bytes
    );
    Ok(0)
}

/// Writes `len` deterministic bytes to `path` in 64 KiB chunks; returns their hex SHA-256.
fn write_artifact(path: &std::path::Path, len: u64, seed: u64) -> anyhow::Result<String> {
    use std::io::Write;
    const CHUNK: u64 = 64 * 1024;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut stream = ArtifactStream::new(seed);
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    while written < len {
        let size = CHUNK.min(len - written);
        let chunk = stream.next_chunk(usize::try_from(size).expect("a chunk is at most 64 KiB"));
        hasher.update(&chunk);
        file.write_all(&chunk)?;
        written += size;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Prints the digest of every secret-looking environment variable, and of every secret file
/// under `/run/secrets` (swarm mode hands secrets over as files), so tests can check delivery.
fn print_secret_digests() {
    let mut secrets: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name != job_env::JOB_TOKEN && is_secret_field(name))
        .collect();
    let files = std::fs::read_dir(job_env::SECRETS_DIR)
        .into_iter()
        .flatten()
        .flatten();
    for entry in files {
        let name = entry.file_name().to_string_lossy().to_ascii_uppercase();
        if name == job_env::JOB_TOKEN || !is_secret_field(&name) {
            continue;
        }
        if let Ok(value) = std::fs::read_to_string(entry.path()) {
            secrets.push((name, value.trim().to_owned()));
        }
    }
    secrets.sort();
    for (name, value) in secrets {
        println!(
            "calls-test-job: secret {name} received, sha256 prefix {}",
            secret_digest(&value)
        );
    }
}

/// Ticks once a second until `config.sleep` has passed; SIGTERM ends it with 0 when `obey_sigterm`.
async fn tick(
    api: &JobApi,
    config: &TestJobConfig,
    sigterm: &mut tokio::signal::unix::Signal,
    obey_sigterm: bool,
) -> anyhow::Result<i32> {
    let duration = config.sleep;
    let deadline = tokio::time::Instant::now() + duration;
    let mut ticks = 0u64;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if tokio::time::Instant::now() >= deadline {
                    let code = config.final_exit_code;
                    println!("calls-test-job: slept {}s, exiting {code}", duration.as_secs());
                    if code != 0 {
                        eprintln!("calls-test-job: failing on purpose after sleeping, exit code {code}");
                    }
                    return Ok(code);
                }
                ticks += 1;
                // A lost progress report must not end the job: the offloader may be restarting.
                if let Err(err) = api.status_with(RetryPolicy::ONCE, JobStatusKind::Progress, None, ticks as f64).await {
                    eprintln!("calls-test-job: progress report failed: {err:#}");
                }
            }
            _ = sigterm.recv() => {
                if obey_sigterm {
                    println!("calls-test-job: received SIGTERM after {ticks} ticks, exiting cleanly");
                    return Ok(0);
                }
                println!("calls-test-job: received SIGTERM, ignoring it");
            }
        }
    }
}

/// The job side of the offloader API: the shared job shell's client, retrying every request for
/// about 15 s (30 attempts, 500 ms apart) while the offloader is unreachable or answers 5xx (it may
/// be restarting: jobs outlive it); a 4xx answer is final.
struct JobApi {
    client: OffloaderClient,
}

/// The retry policy of every request the test job makes.
const RETRY: RetryPolicy = RetryPolicy::fixed(30, Duration::from_millis(500));

impl JobApi {
    fn new(config: &TestJobConfig) -> anyhow::Result<Self> {
        Ok(Self {
            client: OffloaderClient::new(&config.identity)?,
        })
    }

    /// Reports a status with the tick counter, retrying by [`RETRY`].
    async fn status(
        &self,
        status: JobStatusKind,
        message: Option<&str>,
        ticks: f64,
    ) -> anyhow::Result<()> {
        self.status_with(RETRY, status, message, ticks).await
    }

    /// Reports a status with the tick counter, retrying by `policy`.
    async fn status_with(
        &self,
        policy: RetryPolicy,
        status: JobStatusKind,
        message: Option<&str>,
        ticks: f64,
    ) -> anyhow::Result<()> {
        self.client
            .report_with(
                policy,
                status,
                message.map(str::to_owned),
                None,
                &[("test_job_ticks", ticks)],
            )
            .await?;
        Ok(())
    }

    /// Streams the file at `path` as the artifact `name`, retrying by [`RETRY`].
    async fn upload(&self, name: &str, path: &std::path::Path) -> anyhow::Result<()> {
        self.client.upload_with(RETRY, path, name).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calls_job::settings::fixed_lookup as env;

    #[test]
    fn config_reads_defaults_and_overrides() {
        let base = [
            ("JOB_ID", "j1"),
            ("JOB_TOKEN", "t"),
            ("OFFLOADER_URL", "http://172.17.0.1:4545/"),
        ];
        let config = TestJobConfig::from_env(env(&base)).expect("valid env");
        assert_eq!(config.behaviour, Behaviour::Exit0);
        assert_eq!(config.identity.offloader_url, "http://172.17.0.1:4545");
        assert_eq!(config.artifact_bytes, 1024 * 1024);

        let mut with = base.to_vec();
        with.extend([("BEHAVIOUR", "sleep"), ("SLEEP_SECONDS", "5")]);
        let config = TestJobConfig::from_env(env(&with)).expect("valid env");
        assert_eq!(config.behaviour, Behaviour::Sleep);
        assert_eq!(config.sleep, Duration::from_secs(5));
    }

    #[test]
    fn config_errors_name_the_variable() {
        let err = TestJobConfig::from_env(env(&[("JOB_ID", "j")])).expect_err("token missing");
        assert!(err.to_string().contains("JOB_TOKEN"), "{err}");
        let bad = [
            ("JOB_ID", "j"),
            ("JOB_TOKEN", "t"),
            ("OFFLOADER_URL", "u"),
            ("BEHAVIOUR", "dance"),
        ];
        let err = TestJobConfig::from_env(env(&bad)).expect_err("unknown behaviour");
        assert!(err.to_string().contains("dance"), "{err}");
    }

    #[test]
    fn secret_digest_does_not_contain_the_secret() {
        let digest = secret_digest("hunter2-hunter2");
        assert_eq!(digest.len(), 16);
        assert!(!digest.contains("hunter2"));
    }
}
