//! Every Prometheus metric of the offloader, in one registry per instance (tests run several
//! offloaders in one process). Gauges of jobs by type and state and the queue length are read
//! from the store at scrape time, so they are right after a restart too.

use calls_protocol::jobs::{JobState, JobType};
use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::Store;

mod job_series;
pub use job_series::JobHistograms;

pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    queue_length: IntGauge,
    pub job_duration: HistogramVec,
    pub container_start_latency: HistogramVec,
    pub queue_wait: HistogramVec,
    pub api_requests: IntCounterVec,
    pub webhook_failures: IntCounterVec,
    pub job_reported: CounterVec,
    /// Counters of `calls_protocol::job_metrics::JOB_SERIES`, by reported name.
    job_series_counters: Vec<(&'static str, CounterVec)>,
    /// Histograms of `calls_protocol::job_metrics::JOB_SERIES`.
    pub job_histograms: JobHistograms,
    pub auth_key_checks: IntCounterVec,
    pub connections_refused: prometheus::IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `expect` of a metric built from constants: only a bug in those constants can fail it.
const STATIC: &str = "static metric definition is valid";

/// Registers `collector` in `registry` and hands it back for the [`Metrics`] field.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric name is registered once");
    collector
}

fn histograms(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect(STATIC)
}

fn int_counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect(STATIC)
}

impl Metrics {
    /// Every metric, registered in a registry of its own: one row per metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let job_series_counters = job_series::counters();
        for (_, counter) in &job_series_counters {
            register(r, counter.clone());
        }
        Metrics {
            jobs: register(r, IntGaugeVec::new(
                Opts::new("calls_offloader_jobs", "jobs in the store by type and state"),
                &["type", "state"],
            ).expect(STATIC)),
            queue_length: register(r, IntGauge::new(
                "calls_offloader_queue_length",
                "jobs waiting in the queue for a free slot",
            ).expect(STATIC)),
            job_duration: register(r, histograms(
                "calls_offloader_job_duration_seconds",
                "run time of finished jobs (start to end) by type and final state",
                &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0],
                &["type", "state"],
            )),
            container_start_latency: register(r, histograms(
                "calls_offloader_container_start_latency_seconds",
                "time to create and start a job's container",
                &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
                &["type"],
            )),
            queue_wait: register(r, histograms(
                "calls_offloader_queue_wait_seconds",
                "time from job creation to its container running",
                &[0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0],
                &["type"],
            )),
            api_requests: register(r, int_counters(
                "calls_offloader_api_requests_total",
                "API requests by route and status",
                &["method", "route", "status"],
            )),
            webhook_failures: register(r, int_counters(
                "calls_offloader_webhook_failures_total",
                "failed webhook attempts; gave_up=true when all retries failed",
                &["gave_up"],
            )),
            job_reported: register(r, CounterVec::new(
                Opts::new(
                    "calls_offloader_job_reported_total",
                    "counters reported by jobs through the status API, summed over jobs",
                ),
                &["type", "name"],
            ).expect(STATIC)),
            job_series_counters,
            job_histograms: register(r, JobHistograms::new()),
            auth_key_checks: register(r, int_counters(
                "calls_offloader_auth_key_checks_total",
                "client key checks (Basic auth, /login) by outcome: cached (no argon2), verified, rejected, rate_limited (refused before argon2)",
                &["outcome"],
            )),
            connections_refused: register(r, prometheus::IntCounter::new(
                "calls_offloader_api_connections_refused_total",
                "connections closed on accept because api.max_connections were open",
            ).expect(STATIC)),
            registry,
        }
    }

    /// A job reported a counter that grew by `increase` (maybe 0): the generic series grows, and the named
    /// one when it is a job series (exported from its first report on, at 0 if nothing happened yet).
    pub fn job_counter_reported(&self, job_type: JobType, name: &str, increase: f64) {
        if increase > 0.0 {
            self.job_reported
                .with_label_values(&[job_type.as_str(), name])
                .inc_by(increase);
        }
        if let Some((_, counter)) = self.job_series_counters.iter().find(|(n, _)| *n == name) {
            let counter = counter.with_label_values(&[job_type.as_str()]);
            if increase > 0.0 {
                counter.inc_by(increase);
            }
        }
    }

    /// Refreshes the store-derived gauges and renders the text exposition format.
    pub fn render(&self, store: &Store) -> crate::error::Result<String> {
        let counts = store.counts()?;
        for job_type in JobType::ALL {
            for state in JobState::ALL {
                let n = counts
                    .iter()
                    .find(|(t, s, _)| *t == job_type && *s == state)
                    .map_or(0, |(_, _, n)| *n);
                self.jobs
                    .with_label_values(&[job_type.as_str(), state.as_str()])
                    .set(n);
            }
        }
        let queued: i64 = counts
            .iter()
            .filter(|(_, s, _)| *s == JobState::Queued)
            .map(|(_, _, n)| n)
            .sum();
        self.queue_length.set(queued);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| crate::error::Error::Internal(format!("metrics encoding: {e}")))?;
        String::from_utf8(out)
            .map_err(|e| crate::error::Error::Internal(format!("metrics encoding: {e}")))
    }
}
