//! The offloader start-latency benchmark: the time from the moment a client sends `POST /jobs`
//! until Docker reports the `start` event of the job's container (the container is running). Container start times come from `docker events`, the engine's own
//! clock, so the offloader's bookkeeping cannot flatter the figure.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use calls_protocol::jobs::JobState;

use crate::offloader::{test_job, Mode, Offloader, OffloaderSettings};

/// One measured scenario.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    pub scenario: String,
    /// API call → container running, per job, in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
}

impl LatencyReport {
    /// Nearest-rank percentile (`p` in 0..=100) of the sorted samples.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }
}

/// Nearest-rank percentile of sorted samples; 0 for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// `docker events` for container starts carrying `label`, as (job id, unix ns) on a channel.
struct StartEvents {
    child: std::process::Child,
    receiver: mpsc::Receiver<(String, i128)>,
}

impl StartEvents {
    fn watch(label: &str) -> anyhow::Result<Self> {
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=start",
                "--filter",
                &format!("label={label}"),
                "--format",
                "{{.TimeNano}} {{index .Actor.Attributes \"calls.job_id\"}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run docker events")?;
        let stdout = child
            .stdout
            .take()
            .context("docker events has a stdout pipe")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut parts = line.split_whitespace();
                let (Some(ns), Some(id)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if let Ok(ns) = ns.parse::<i128>() {
                    if sender.send((id.to_owned(), ns)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self { child, receiver })
    }

    /// Waits for the start events of `count` jobs, up to `timeout`.
    fn collect(&self, count: usize, timeout: Duration) -> anyhow::Result<HashMap<String, i128>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut starts = HashMap::new();
        while starts.len() < count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok((id, ns)) => {
                    starts.entry(id).or_insert(ns);
                }
                Err(_) => bail!(
                    "only {} of {count} containers started within {timeout:?}",
                    starts.len()
                ),
            }
        }
        Ok(starts)
    }
}

impl Drop for StartEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The floor: `docker run -d` of the same image straight from the CLI, one after another, timed
/// from the moment the CLI is spawned to the container's `start` event.
pub async fn docker_cli_baseline(runs: usize) -> anyhow::Result<LatencyReport> {
    crate::docker::ensure_test_job_image(&crate::offloader::bin_dir()?)?;
    let label = format!("calls.bench={}", std::process::id());
    let events = StartEvents::watch(&label)?;
    let mut latencies = Vec::new();
    for i in 0..runs {
        let job_id = format!("baseline-{i}");
        let sent = now_ns();
        // Without JOB_ID and friends the test job exits 2 at once; --rm cleans it up.
        let status = Command::new("docker")
            .args(["run", "-d", "--rm", "--init", "--label", &label, "--label"])
            .arg(format!("calls.job_id={job_id}"))
            .arg(crate::offloader::test_job_image())
            .stdout(Stdio::null())
            .status()
            .context("cannot run docker run")?;
        if !status.success() {
            bail!("docker run failed: {status}");
        }
        let starts = events.collect(1, Duration::from_secs(60))?;
        let started = starts
            .get(&job_id)
            .with_context(|| format!("a start event for {job_id} (got {starts:?})"))?;
        latencies.push((started - sent) as f64 / 1e6);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(LatencyReport {
        scenario: format!("baseline: `docker run -d` from the CLI, {runs} one at a time"),
        latencies_ms: latencies,
    })
}

/// Submits `jobs` quick jobs one after another, each once the previous container is running:
/// the start latency of an idle offloader. In swarm mode (a single-node swarm on this engine)
/// the job's container is the service task's, which carries the same labels.
pub async fn sequential(jobs: usize, mode: Mode) -> anyhow::Result<LatencyReport> {
    let settings = OffloaderSettings {
        mode,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("bench-seq", settings).await?;
    let client = offloader.register("bench").await?;
    let events = StartEvents::watch(&Offloader::label_of(&client))?;
    let mut latencies = Vec::new();
    for _ in 0..jobs {
        let sent = now_ns();
        let job = client.create_job(&test_job("exit0", &[])).await?;
        let starts = events.collect(1, Duration::from_secs(60))?;
        let started = starts
            .get(&job.id)
            .with_context(|| format!("a start event for {} (got {starts:?})", job.id))?;
        latencies.push((started - sent) as f64 / 1e6);
        client.wait_final(&job.id, Duration::from_secs(60)).await?;
    }
    latencies.sort_by(f64::total_cmp);
    Ok(LatencyReport {
        scenario: format!(
            "offloader ({} mode): {jobs} jobs one at a time",
            mode.as_str()
        ),
        latencies_ms: latencies,
    })
}

/// Submits `jobs` jobs at once with `concurrency` slots: the latency under a burst, queueing
/// included when `concurrency < jobs`.
pub async fn burst(jobs: usize, concurrency: u32) -> anyhow::Result<LatencyReport> {
    let settings = OffloaderSettings {
        max_concurrent: concurrency,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("bench-burst", settings).await?;
    let client = offloader.register("bench").await?;
    let events = StartEvents::watch(&Offloader::label_of(&client))?;
    let mut sent = HashMap::new();
    for _ in 0..jobs {
        let at = now_ns();
        let job = client.create_job(&test_job("exit0", &[])).await?;
        sent.insert(job.id, at);
    }
    let starts = events.collect(jobs, Duration::from_secs(300))?;
    let mut latencies = Vec::new();
    for (id, at) in &sent {
        let started = starts
            .get(id)
            .with_context(|| format!("a start event for {id}"))?;
        latencies.push((started - at) as f64 / 1e6);
        let job = client.wait_final(id, Duration::from_secs(120)).await?;
        if job.state != JobState::Succeeded {
            bail!(
                "benchmark job {id} ended {:?}: {:?}",
                job.state,
                job.failure_reason
            );
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(LatencyReport {
        scenario: format!("offloader: {jobs} jobs at once, {concurrency} slots"),
        latencies_ms: latencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 10.0);
        assert_eq!(percentile(&samples, 95.0), 19.0);
        assert_eq!(percentile(&samples, 100.0), 20.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[7.0], 0.0), 7.0);
    }
}
